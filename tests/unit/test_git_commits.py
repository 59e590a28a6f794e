"""A Git commit object's author and message, as the history shows them."""
from __future__ import annotations

from orchestrator.sources.git_commits import commit_details

TREE = b"tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\n"


def test_the_author_and_the_whole_message_are_read_from_a_commit_object():
    data = (TREE + b"author Ann Lee <ann@example.com> 1700000000 +0100\n"
            b"committer CI <ci@example.com> 1700000100 +0000\n\nFix the login\n\nBecause.\n")

    assert commit_details(data) == ("Ann Lee", "ann@example.com", "Fix the login\n\nBecause.")


def test_a_commit_in_another_encoding_is_decoded_as_its_header_says():
    data = (TREE + "author Zoë <zoe@example.com> 1700000000 +0000\n".encode("latin-1")
            + b"encoding ISO-8859-1\n\n" + "Traduction: été".encode("latin-1"))

    assert commit_details(data) == ("Zoë", "zoe@example.com", "Traduction: été")


def test_a_commit_without_an_author_line_or_with_an_unknown_encoding_still_reads():
    data = TREE + b"encoding x-nonsense\n\nmessage \xff\n"

    assert commit_details(data) == ("", "", "message \ufffd")
