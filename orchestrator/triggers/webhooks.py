"""Webhook deliveries from GitHub, Bitbucket and Azure DevOps: verify, parse, decide.

Pure functions over headers and the raw body; the HTTP layer (orchestrator/api) maps their
outcome to status codes. A verified push is only a trigger: the signature covers the body but
not the delivery id, so an old push can be replayed, and deliveries arrive out of order. What
is deployed is the tracked branch's head when the source is asked (deploying.sync), never the
revision a delivery names; that revision only has to look like one (a full object id).
"""
from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qs

from orchestrator.core import basic_auth

ZERO = "0" * 40
FULL_ID = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")    # SHA-1 or SHA-256 object ids


class BadDelivery(ValueError):
    """The body is not what the provider sends (400)."""


@dataclass(frozen=True)
class PushedRef:
    """A branch or tag a delivery says was pushed (git's own `old new ref` line of a push
    to a built-in repository is git_hooks.RefUpdate)."""
    kind: str                  # "branch" | "tag"
    name: str                  # branch or tag name, without refs/heads/
    revision: str | None       # None: the ref was deleted


@dataclass(frozen=True)
class Delivery:
    provider: str
    event: str                 # "push", "ping", or what the provider called it
    delivery_id: str | None
    updates: list[PushedRef] = field(default_factory=list)


def hub_signature_valid(secret: str, body: bytes, header: str | None, algorithm: str = "sha256") -> bool:
    """`X-Hub-Signature[-256]: <algorithm>=<hex HMAC of the raw body>`, compared in constant time."""
    if not header or not header.startswith(algorithm + "="):
        return False
    expected = hmac.new(secret.encode(), body, getattr(hashlib, algorithm)).hexdigest()
    return hmac.compare_digest(expected, header.split("=", 1)[1].strip().lower())


def github_signature_valid(secret: str, body: bytes, headers: Mapping[str, str]) -> bool:
    if headers.get("x-hub-signature-256"):
        return hub_signature_valid(secret, body, headers["x-hub-signature-256"])
    return hub_signature_valid(secret, body, headers.get("x-hub-signature"), "sha1")


def basic_auth_valid(username: str, password: str, header: str | None) -> bool:
    given = basic_auth.credentials(header)
    if given is None:
        return False
    user, secret = given
    # both compared, always, so the time taken does not tell which one was wrong
    return hmac.compare_digest(user, username) & hmac.compare_digest(secret, password)


def header_valid(expected: str, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(expected, given)


def parse_github(headers: Mapping[str, str], body: bytes) -> Delivery:
    event = headers.get("x-github-event", "")
    doc = _json(_github_payload(headers, body))
    updates = []
    if event == "push":
        ref, after = doc.get("ref", ""), doc.get("after")
        kind, name = _split_ref(ref)
        deleted = bool(doc.get("deleted")) or after == ZERO
        updates.append(PushedRef(kind, name, None if deleted else _full_id(after)))
    return Delivery("github", event, headers.get("x-github-delivery"), updates)


def parse_bitbucket(headers: Mapping[str, str], body: bytes) -> Delivery:
    event = headers.get("x-event-key", "")
    doc = _json(body)
    updates = []
    if event == "repo:push":
        for change in (doc.get("push") or {}).get("changes") or []:
            new, old = change.get("new"), change.get("old")
            ref = new or old or {}
            updates.append(PushedRef(ref.get("type", "branch"), ref.get("name", ""),
                                     _full_id(((new or {}).get("target") or {}).get("hash"))))
    event = "push" if event == "repo:push" else event
    return Delivery("bitbucket", event, headers.get("x-request-uuid") or headers.get("x-hook-uuid"),
                    updates)


def parse_azure_devops(headers: Mapping[str, str], body: bytes) -> Delivery:
    doc = _json(body)
    event = doc.get("eventType", "")
    updates = []
    if event == "git.push":
        for ref in (doc.get("resource") or {}).get("refUpdates") or []:
            kind, name = _split_ref(ref.get("name", ""))
            new = ref.get("newObjectId")
            updates.append(PushedRef(kind, name, None if not new or new == ZERO else _full_id(new)))
    event = "push" if event == "git.push" else event
    return Delivery("azure-devops", event, doc.get("id") or headers.get("x-vss-activityid"), updates)


def decide(delivery: Delivery, branch: str) -> tuple[str | None, str]:
    """The revision pushed to the tracked branch, or None and why nothing is deployed."""
    if delivery.event == "ping":
        return None, "ping: the hook works; nothing to deploy"
    if delivery.event != "push":
        return None, f"event {delivery.event or '(none)'!r} is not a push"
    for update in delivery.updates:
        if update.kind == "branch" and update.name == branch:
            if update.revision is None:
                return None, f"branch {branch!r} was deleted; nothing to deploy"
            return update.revision, f"push to {branch!r}"
    pushed = ", ".join(f"{u.kind} {u.name!r}" for u in delivery.updates) or "nothing"
    return None, f"push to {pushed}, not to the tracked branch {branch!r}"


def _full_id(revision: object) -> str | None:
    """A pushed revision: a full hexadecimal object id, never an expression (`HEAD~1`)."""
    if revision is None:
        return None
    if not isinstance(revision, str) or not FULL_ID.fullmatch(revision.lower()):
        raise BadDelivery(f"revision {str(revision)[:80]!r} is not a full commit id "
                          "(40 or 64 hexadecimal digits)")
    return revision.lower()


def _github_payload(headers: Mapping[str, str], body: bytes) -> bytes:
    if headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        payload = parse_qs(body.decode(errors="replace")).get("payload")
        if not payload:
            raise BadDelivery("form-encoded delivery without a 'payload' field")
        return payload[0].encode()
    return body


def _json(body: bytes) -> dict:
    try:
        doc = json.loads(body)
    except ValueError as exc:
        raise BadDelivery(f"body is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise BadDelivery("body is not a JSON object")
    return doc


def _split_ref(ref: str) -> tuple[str, str]:
    for prefix, kind in (("refs/heads/", "branch"), ("refs/tags/", "tag")):
        if ref.startswith(prefix):
            return kind, ref[len(prefix):]
    return "other", ref
