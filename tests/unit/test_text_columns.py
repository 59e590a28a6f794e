"""Text columns fit to a width (observe/text_columns.py)."""
from __future__ import annotations

from orchestrator.observe.text_columns import columns


def test_columns_are_as_wide_as_their_widest_line_and_a_cell_of_several_lines_makes_its_row_taller():
    shown = columns(("A", "B", "C"), [["one", "x\nlonger line", "z"], ["2", "y", ""]])

    assert shown.splitlines() == ["A    B            C",
                                  "one  x            z",
                                  "     longer line",
                                  "2    y"]


def test_too_wide_the_column_with_most_to_give_wraps_first_and_one_that_may_not_never_does():
    shown = columns(("ID", "TEXT", "MORE"), [["20261202-160528-e9abbf", "a few words of text here", "short"]],
                    width=40, least=(None, 4, 4))

    assert shown.splitlines() == ["ID                      TEXT       MORE",
                                  "20261202-160528-e9abbf  a few      short",
                                  "                        words of",
                                  "                        text here"]


def test_what_cannot_narrow_further_overflows_rather_than_fold_an_id():
    shown = columns(("ID",), [["20261202-160528-e9abbf"]], width=10, least=(None,))

    assert "20261202-160528-e9abbf" in shown.splitlines()
