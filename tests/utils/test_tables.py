"""kzoo.utils.tables.format_table: aligned columns, a rule under the title and the header, ragged rows."""

from kzoo.utils.tables import format_table


def test_columns_align_under_a_header():
    text = format_table("Results", [("name", "value"), ("accuracy", 0.5), ("n", 12345)])
    assert text.splitlines() == [
        "Results",
        "---------+------",
        "name     | value",
        "---------+------",
        "accuracy | 0.5",
        "n        | 12345",
        "---------+------",
    ]


def test_right_aligned_numbers_and_ragged_rows():
    lines = format_table("t", [("a", "b", "c"), ("x", 1), ("yy", 22, 333)], right_align=True).splitlines()
    assert lines[2:] == ["a  |  b |   c", "---+----+----", "x  |  1 |", "yy | 22 | 333", "---+----+----"]


def test_no_rows_is_the_title():
    assert format_table("only", []) == "only"
