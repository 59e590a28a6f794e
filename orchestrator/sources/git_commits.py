"""A Git commit's author and message, read through the repository's open `git cat-file
--batch` (GitPython keeps one per repository): no process of its own, as the history shows
who made each deployed revision and why."""
from __future__ import annotations

import re

import git

AUTHOR = re.compile(rb"^author (?P<name>.*?) <(?P<email>[^>]*)> \d+ [+-]\d{4}$", re.MULTILINE)
ENCODING = re.compile(rb"^encoding (\S+)$", re.MULTILINE)


def commit_object(repo: git.Repo, revision: str) -> bytes | None:
    """The commit's raw object; None when the repository holds no such commit."""
    try:
        _, _, _, data = repo.git.get_object_data(f"{revision}^{{commit}}")
    except ValueError:      # cat-file answered "missing" (or "ambiguous")
        return None
    return data


def commit_details(data: bytes) -> tuple[str, str, str]:
    """(author name, author email, message) of a raw commit object, decoded as its
    `encoding` header says (UTF-8 by default), undecodable bytes replaced."""
    headers, _, message = data.partition(b"\n\n")
    named = ENCODING.search(headers)
    encoding = named.group(1).decode("ascii", "replace") if named else "utf-8"
    author = AUTHOR.search(headers)

    def text(raw: bytes) -> str:
        try:
            return raw.decode(encoding, "replace")
        except LookupError:         # an encoding Python does not know
            return raw.decode("utf-8", "replace")
    name, email = (author.group("name"), author.group("email")) if author else (b"", b"")
    return text(name), text(email), text(message).strip()
