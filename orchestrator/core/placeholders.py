"""`{name}` placeholders in what an app's config sends after the switch (an `activate` call's
URL and headers, the `health` probe's URL, headers and expected body): the release they are
about, filled in when the call is made. The config refuses a name outside NAMES, so a typo
is an error at load time, not a literal `{revison}` sent to the host."""
from __future__ import annotations

import re
from collections.abc import Mapping

NAMES = ("app", "deployment", "revision", "release", "previous_release", "target", "host")
# Any identifier in braces, so an unknown one is found; JSON such as {"a": 1} is not one.
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def unknown(text: str) -> list[str]:
    """The placeholders in `text` that are not NAMES, as written ({revison})."""
    return [m.group(0) for m in _PLACEHOLDER.finditer(text) if m.group(1) not in NAMES]


def fill(text: str, values: Mapping[str, str]) -> str:
    """`text` with each known placeholder replaced by its value; anything else left as is."""
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)] if m.group(1) in NAMES else m.group(0), text)
