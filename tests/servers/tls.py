"""A throwaway certificate authority for the local HTTPS fakes (Dropbox, Microsoft Graph).

One CA per test session: `bundle` is a PEM file clients are told to trust (the dropbox SDK's
`ca_certs=`, MSAL's `verify=`, SLUICE_CA_BUNDLE for worker processes); `server_context()` is
an ssl.SSLContext holding a certificate for 127.0.0.1 and localhost.
"""
from __future__ import annotations

import ssl
import tempfile
from functools import cache
from pathlib import Path

import trustme


class TestAuthority:
    def __init__(self, directory: Path):
        self.ca = trustme.CA()
        self.certificate = self.ca.issue_cert("127.0.0.1", "localhost")
        self.bundle = Path(directory) / "test-ca.pem"
        self.ca.cert_pem.write_to_path(str(self.bundle))

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.certificate.configure_cert(context)
        return context

    def client_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        return context


@cache
def authority() -> TestAuthority:
    """The session's one CA (its bundle lives in a temporary directory)."""
    return TestAuthority(Path(tempfile.mkdtemp(prefix="sluice-test-ca-")))
