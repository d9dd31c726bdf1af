"""The bounded-table CombineFns (lazaret.graph.combine) compute what the built-ins compute."""

from __future__ import annotations

import pathlib
import re

import apache_beam as beam
from apache_beam.testing.util import assert_that, equal_to

from lazaret.graph.combine import CountPerElement, MaxFn, MinFn, SumFn


def test_sum_min_max_count_match_the_builtins():
    data = [("a", 3), ("b", 1), ("a", -2), ("c", 7), ("b", 5), ("a", 9)]
    with beam.Pipeline() as p:
        kv = p | beam.Create(data)
        assert_that(kv | "S" >> beam.CombinePerKey(SumFn()), equal_to([("a", 10), ("b", 6), ("c", 7)]), label="sum")
        assert_that(kv | "Mi" >> beam.CombinePerKey(MinFn()), equal_to([("a", -2), ("b", 1), ("c", 7)]), label="min")
        assert_that(kv | "Ma" >> beam.CombinePerKey(MaxFn()), equal_to([("a", 9), ("b", 5), ("c", 7)]), label="max")
        assert_that(kv | "K" >> beam.Keys() | CountPerElement(), equal_to([("a", 3), ("b", 2), ("c", 1)]),
                    label="count")


def test_merge_ignores_empty_accumulators():
    assert MinFn().merge_accumulators([None, (2, "x"), (1, "y"), None]) == (1, "y")
    assert MaxFn().merge_accumulators([None, None]) is None


def test_poisoning_stage_uses_no_million_key_builtin_combines():
    """Built-in sum/min/max and Count.PerElement get a 1,000,000-key lifting table per worker (see
    lazaret/graph/combine.py); the poisoning stage's keys are n-grams, so it must use the bounded CombineFns."""
    root = pathlib.Path(__file__).resolve().parents[1] / "src" / "lazaret" / "checks" / "poisoning"
    bad = re.compile(r"CombinePerKey\((sum|min|max)\)|Count\.PerElement\(|Count\.PerKey\(")
    hits = [f"{f.name}:{i}" for f in sorted(root.glob("*.py"))
            for i, line in enumerate(f.read_text().splitlines(), 1) if bad.search(line)]
    assert hits == []
