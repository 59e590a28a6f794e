"""HTTP Basic auth (RFC 7617): the Authorization header a client sends, and what a server
reads from it."""
from __future__ import annotations

import base64
import binascii


def header(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def credentials(value: str | None) -> tuple[str, str] | None:
    """(user, password) from an Authorization header, or None without one. Unreadable
    credentials (another scheme, bad base64 or UTF-8, no ':') come back as ("", ""), which
    match no one and count as a failed attempt."""
    if value is None:
        return None
    scheme, _, encoded = value.partition(" ")
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return "", ""
    user, colon, password = decoded.partition(":")
    return (user, password) if scheme.lower() == "basic" and colon else ("", "")
