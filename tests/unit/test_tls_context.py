"""The TLS context of the calls after the switch (orchestrator/deploying/tls.py): one per
process, verifying as httpx's default does, so no verification pays for loading the CA
certificates again."""
from __future__ import annotations

import ssl

import trustme

from orchestrator.deploying.tls import verified_context


def test_every_call_after_the_switch_shares_one_context_that_verifies_certificates_and_names():
    first, second = verified_context(), verified_context()

    assert first is second
    assert first.verify_mode == ssl.CERT_REQUIRED and first.check_hostname


def test_a_changed_ssl_cert_file_gets_a_context_trusting_that_file(tmp_path, monkeypatch):
    before = verified_context()
    authority = trustme.CA()
    bundle = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(bundle))
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))

    after = verified_context()

    assert after is not before and after is verified_context()
    assert after.get_ca_certs(binary_form=True) == [
        ssl.PEM_cert_to_DER_cert(authority.cert_pem.bytes().decode())]
