"""Webhook parsing and verification on the real payloads in tests/fixtures."""
import base64
import hashlib
import hmac
import json
from urllib.parse import urlencode

import pytest

from orchestrator.triggers.webhooks import (
    BadDelivery,
    basic_auth_valid,
    decide,
    github_signature_valid,
    hub_signature_valid,
    parse_azure_devops,
    parse_bitbucket,
    parse_github,
)
from tests.helpers import FIXTURES


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def test_the_published_github_signature_vector_verifies():
    sig = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    assert hub_signature_valid("It's a Secret to Everybody", b"Hello, World!", sig)
    assert not hub_signature_valid("It's a Secret to Everybody", b"Hello, World?", sig)
    assert not hub_signature_valid("another secret", b"Hello, World!", sig)
    assert not hub_signature_valid("s", b"x", None) and not hub_signature_valid("s", b"x", "md5=00")


def test_github_falls_back_to_the_legacy_sha1_header_only_when_sha256_is_absent():
    body = b"{}"
    sha1 = "sha1=" + hmac.new(b"k", body, hashlib.sha1).hexdigest()
    assert github_signature_valid("k", body, {"x-hub-signature": sha1})
    assert not github_signature_valid("k", body, {"x-hub-signature": sha1,
                                                  "x-hub-signature-256": "sha256=00"})


def test_a_github_branch_creation_push_names_the_new_head():
    d = parse_github({"x-github-event": "push", "x-github-delivery": "g-1"},
                     fixture("github/push_with-new-branch.payload.json"))
    assert decide(d, "master") == ("6113728f27ae82c7b1a177c8d03f9e96e0adf246", "push to 'master'")
    assert d.delivery_id == "g-1"


def test_a_github_tag_deletion_deploys_nothing():
    d = parse_github({"x-github-event": "push"}, fixture("github/push_1.payload.json"))
    revision, reason = decide(d, "master")
    assert revision is None and "tag 'simple-tag'" in reason


def test_a_github_ping_deploys_nothing():
    revision, reason = decide(parse_github({"x-github-event": "ping"}, fixture("github/ping_payload.json")), "master")
    assert revision is None and reason.startswith("ping")


def test_form_encoded_github_deliveries_carry_the_json_in_payload():
    body = urlencode({"payload": fixture("github/push_with-new-branch.payload.json").decode()}).encode()
    d = parse_github({"x-github-event": "push", "content-type": "application/x-www-form-urlencoded"}, body)
    assert decide(d, "master")[0] == "6113728f27ae82c7b1a177c8d03f9e96e0adf246"


def test_a_branch_deletion_deploys_nothing():
    doc = json.loads(fixture("github/push_with-new-branch.payload.json"))
    doc.update(after="0" * 40, deleted=True, head_commit=None)
    d = parse_github({"x-github-event": "push"}, json.dumps(doc).encode())
    assert decide(d, "master") == (None, "branch 'master' was deleted; nothing to deploy")


def test_bitbucket_pushes_name_each_changed_branch():
    d = parse_bitbucket({"x-event-key": "repo:push", "x-request-uuid": "b-1"}, fixture("bitbucket/repo-push.json"))
    assert decide(d, "name-of-branch")[0] == "709d658dc5b6d6afcd46049c2f332ee3f515a67d"
    assert decide(d, "master")[0] is None and d.delivery_id == "b-1"


def test_azure_devops_pushes_name_the_new_object_id():
    d = parse_azure_devops({}, fixture("azure-devops/git.push.json"))
    assert decide(d, "master")[0] == "33b55f7cb7e7e245323987634f960cf4a6e6bc74"


def test_minimal_azure_devops_payloads_are_tolerated():
    d = parse_azure_devops({}, b'{"eventType": "git.push", "resource": {}}')
    assert decide(d, "master")[0] is None


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]"])
def test_bodies_that_are_not_json_objects_are_bad_deliveries(body):
    with pytest.raises(BadDelivery):
        parse_bitbucket({"x-event-key": "repo:push"}, body)


def test_basic_auth_needs_both_parts_right():
    good = "Basic " + base64.b64encode(b"hook:pa:ss").decode()
    assert basic_auth_valid("hook", "pa:ss", good)
    assert not basic_auth_valid("hook", "other", good)
    assert not basic_auth_valid("other", "pa:ss", good)
    assert not basic_auth_valid("hook", "pa:ss", "Basic !!!") and not basic_auth_valid("hook", "x", None)


@pytest.mark.parametrize("revision", ["HEAD~1", "master^", "709d658", "g" * 40,
                                      "709d658dc5b6d6afcd46049c2f332ee3f515a67d~1"])
def test_a_pushed_revision_that_is_not_a_full_commit_id_is_a_bad_delivery(revision):
    doc = json.loads(fixture("azure-devops/git.push.json"))
    doc["resource"]["refUpdates"][0]["newObjectId"] = revision
    with pytest.raises(BadDelivery, match="not a full commit id"):
        parse_azure_devops({}, json.dumps(doc).encode())


def test_full_commit_ids_are_taken_in_either_case_sha1_or_sha256():
    for revision in ("709D658DC5B6D6AFCD46049C2F332EE3F515A67D", "ab" * 32):
        doc = {"ref": "refs/heads/master", "after": revision}
        d = parse_github({"x-github-event": "push"}, json.dumps(doc).encode())
        assert decide(d, "master")[0] == revision.lower()
