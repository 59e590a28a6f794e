"""Requests generated from /openapi.json (schemathesis) never make the API fail with a 5xx.

Runs against create_app(services) with real Redis and the real worker: one app deployed
from a git repository, one manual app. Generated path parameters are often those apps and
that deployment, so the requests reach past the 404s; the token is sent, so they reach past
the 401s. Kept short: a few examples per operation.
"""
from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from orchestrator.api import create_app
from tests.helpers import FUNCTION_APP, git_app
from tests.integration.flow import sync_and_wait

TOKEN = "t0ken-for-properties"
STREAMING = r"^/api/events"          # never ends by itself: not for generated requests
# Basic auth with deployment credentials (the built-in Git, Kudu's API): a generated request
# never has them, so it meets only the login throttle, whose waits grow with each failure
# until a request outlasts the test (their own tests drive them with real credentials).
BASIC_AUTH = r"^/(git|scm)/"


@pytest.fixture
def api_schema(workspace):
    repo = workspace.repo()
    repo.commit(FUNCTION_APP)
    services = workspace.configure(
        {"hello": git_app(repo, workspace.target("hello")),
         "manual": {"target": str(workspace.target("manual"))}},
        api={"token": TOKEN, "hosts": ["testserver"]})      # the Host schemathesis's ASGI client sends
    deployed = sync_and_wait(services, "hello")
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(services))

    @schema.hook
    def flatmap_path_parameters(context, path_parameters):
        known = {"app": ["hello", "manual"], "deployment_id": [deployed.id]}
        names = [n for n in path_parameters or {} if n in known]
        if not names:
            return st.just(path_parameters)
        choices = {n: st.sampled_from([path_parameters[n], *known[n]]) for n in names}
        return st.fixed_dictionaries(choices).map(lambda chosen: {**path_parameters, **chosen})

    return schema.exclude(path_regex=STREAMING).exclude(path_regex=BASIC_AUTH)


# Hypothesis drives schemathesis's strategies directly: schemathesis's own pytest plugin
# (from_fixture) relies on a pytest internal that pytest 9 no longer has.
@pytest.mark.parametrize("mode,examples", [(GenerationMode.POSITIVE, 8), (GenerationMode.NEGATIVE, 4)])
def test_no_generated_request_gets_a_server_error(api_schema, mode, examples):
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 10

    for operation in operations:
        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=examples, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def never_a_server_error(case):
            case.call_and_validate(headers={"Authorization": f"Bearer {TOKEN}"},
                                   checks=[not_a_server_error])

        try:
            never_a_server_error()
        except Unsatisfiable:
            # nothing to make invalid (no parameters, no body): covered by the positive run
            assert mode is GenerationMode.NEGATIVE
