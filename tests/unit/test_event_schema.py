"""Reading an event checks the schema it was recorded with: older shapes are upcast by
their registered upcasters, newer ones are refused with a message saying what to do."""
from __future__ import annotations

import json

import pytest

from orchestrator.core import events as ev
from orchestrator.core.errors import EventSchemaTooNew, StoreError
from orchestrator.core.events import Event, EventType
from orchestrator.core.memory_store import MemoryEventStore


def wire(event_type: str, schema: int | None, **data) -> dict[str, str]:
    fields = {"type": event_type, "data": json.dumps({"app": "hello", "at": 1.0, **data})}
    return fields if schema is None else {**fields, "schema": str(schema)}


def test_an_event_recorded_with_a_newer_schema_than_the_code_knows_is_refused_by_name():
    with pytest.raises(EventSchemaTooNew) as refused:
        Event.from_fields(wire("ChangeDetected", 2, revision="r1", trigger="poll"))

    assert str(refused.value) == ("event ChangeDetected of app 'hello' was recorded with schema 2; "
                                  "this Sluice knows ChangeDetected up to schema 1: upgrade Sluice to read it")
    assert isinstance(refused.value, StoreError)


def test_an_event_recorded_with_an_older_schema_is_upcast_step_by_step(monkeypatch):
    def v1_named_it_rev(data: dict) -> dict:
        data = dict(data)
        data["revision"] = data.pop("rev")
        return data

    def v2_had_no_trigger(data: dict) -> dict:
        return {**data, "trigger": "poll"}

    monkeypatch.setattr(ev.ChangeDetected, "schema", 3)
    monkeypatch.setitem(ev.UPCASTERS, (EventType.CHANGE_DETECTED, 1), v1_named_it_rev)
    monkeypatch.setitem(ev.UPCASTERS, (EventType.CHANGE_DETECTED, 2), v2_had_no_trigger)

    event = Event.from_fields(wire("ChangeDetected", 1, rev="r1"))

    assert event == ev.ChangeDetected(app="hello", at=1.0, revision="r1", trigger="poll")
    assert Event.from_fields(wire("ChangeDetected", 2, revision="r2")).trigger == "poll"


def test_an_upcaster_registered_by_decorator_is_the_one_reading_use(monkeypatch):
    monkeypatch.setattr(ev.AppPaused, "schema", 2)
    monkeypatch.setattr(ev, "UPCASTERS", {})

    @ev.upcaster(EventType.APP_PAUSED, from_version=1)
    def reason_was_why(data: dict) -> dict:
        return {**{k: v for k, v in data.items() if k != "why"}, "reason": data["why"]}

    assert Event.from_fields(wire("AppPaused", 1, why="rollback")).reason == "rollback"
    assert ev.UPCASTERS == {(EventType.APP_PAUSED, 1): reason_was_why}


def test_an_entry_without_a_schema_is_read_as_the_first_one():
    assert Event.from_fields(wire("AppPaused", None, reason="x")) == ev.AppPaused(app="hello", at=1.0,
                                                                                reason="x")


def test_an_event_type_this_code_does_not_know_is_kept_as_unknown_so_readers_skip_it():
    event = Event.from_fields(wire("DeploymentTeleported", 7, where="moon"))

    assert isinstance(event, ev.UnknownEvent) and event.name == "DeploymentTeleported"


def test_events_are_written_with_their_schema_and_read_back_through_a_store():
    store = MemoryEventStore()
    paused = ev.AppPaused(app="hello", at=1.0, reason="x")

    assert paused.to_fields()["schema"] == "1"
    store.append("hello", [paused], expected_version=0)
    assert store.read("hello")[0].event == paused


def test_every_event_class_is_named_by_an_event_type_and_every_type_by_a_class():
    assert set(Event.registry) == set(EventType)
    assert all(cls.__name__ == name for name, cls in Event.registry.items())
