"""kzoo.data.problems: counts by kind, the first places of each, one warning per kind."""

import logging

from kzoo.data.problems import EXAMPLES, ProblemCounter


def test_counts_examples_and_warnings(caplog):
    problems = ProblemCounter({"missing": "files missing (skipped)", "bad": "bad boxes (dropped)"}, ("images",))
    assert problems.counts == {"images": 0, "missing": 0, "bad": 0}
    for index in range(5):
        problems.add("missing", f"a{index}.png")
    problems.add("bad", 7, count=2)
    problems.counts["images"] += 3
    assert problems.counts == {"images": 3, "missing": 5, "bad": 2}
    assert problems.examples["missing"] == [f"a{index}.png" for index in range(EXAMPLES)]
    log = logging.getLogger("kzoo.tests.problems")
    with caplog.at_level(logging.WARNING, logger=log.name):
        problems.warn(log, "set.json")
    assert caplog.messages == [
        "set.json: 5 files missing (skipped), e.g. ['a0.png', 'a1.png', 'a2.png']",
        "set.json: 2 bad boxes (dropped), e.g. [7]",
    ]
    assert problems.dropped() == [
        "5 files missing (skipped), e.g. ['a0.png', 'a1.png', 'a2.png']",
        "2 bad boxes (dropped), e.g. [7]",
    ]


def test_nothing_counted_nothing_warned(caplog):
    problems = ProblemCounter({"missing": "files missing"})
    with caplog.at_level(logging.WARNING):
        problems.warn(logging.getLogger("kzoo.tests.problems"), "set.json")
    assert not caplog.messages and problems.dropped() == []
