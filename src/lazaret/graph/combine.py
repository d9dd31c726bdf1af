"""Small CombineFns used instead of ``CombinePerKey(sum|min|max)`` and ``Count.PerElement``.

Why: Beam's Python SDK lifts a per-key combine into a pre-combining table inside the producing stage
(``PGBKCVOperation``), flushed after a key *count*: 1,000,000 keys for the built-ins ``sum``/``min``/``max``
and ``CountCombineFn``, 100,000 for any other CombineFn. With tuple keys (an n-gram per trigger, a response
n-gram) a million entries is 250-350 MB per worker, and the table only reaches that size on large corpora:
it was the worker peak of the 4x soak (+360 MB in one bundle of the poisoning profile stage). The same
arithmetic as a CombineFn subclass keeps the table at 100,000 keys on every runner that uses the SDK's
combiner lifting (DirectRunner, Dataflow, Flink, Spark).
"""

from __future__ import annotations

from typing import Any, Iterable

import apache_beam as beam


class SumFn(beam.CombineFn):
    """Sum of numbers (0 for none)."""

    def create_accumulator(self) -> Any:
        return 0

    def add_input(self, acc: Any, x: Any) -> Any:
        return acc + x

    def merge_accumulators(self, accs: Iterable[Any]) -> Any:
        return sum(accs)

    def extract_output(self, acc: Any) -> Any:
        return acc


class SumTuplesFn(beam.CombineFn):
    """Element-wise sum of equal-length tuples of numbers (None for none)."""

    def create_accumulator(self) -> Any:
        return None

    def add_input(self, acc: Any, x: Any) -> Any:
        return tuple(x) if acc is None else tuple(a + b for a, b in zip(acc, x))

    def merge_accumulators(self, accs: Iterable[Any]) -> Any:
        out = None
        for a in accs:
            if a is not None:
                out = self.add_input(out, a)
        return out

    def extract_output(self, acc: Any) -> Any:
        return acc


class _Extreme(beam.CombineFn):
    """Least or greatest input. ``None`` marks "no input yet" (it survives encoding between stages, unlike
    a sentinel object), so None itself is not a valid input. Subclasses set ``pick``."""

    def create_accumulator(self) -> Any:
        return None

    def add_input(self, acc: Any, x: Any) -> Any:
        return x if acc is None else self.pick(acc, x)

    def merge_accumulators(self, accs: Iterable[Any]) -> Any:
        vals = [a for a in accs if a is not None]
        return self.pick(vals) if vals else None

    def extract_output(self, acc: Any) -> Any:
        if acc is None:
            raise ValueError("no input to combine")
        return acc


class MinFn(_Extreme):
    """Least input (by Python ordering)."""

    pick = staticmethod(min)


class MaxFn(_Extreme):
    """Greatest input (by Python ordering)."""

    pick = staticmethod(max)


class CountFn(beam.CombineFn):
    """Number of inputs."""

    def create_accumulator(self) -> int:
        return 0

    def add_input(self, acc: int, _x: Any) -> int:
        return acc + 1

    def merge_accumulators(self, accs: Iterable[int]) -> int:
        return sum(accs)

    def extract_output(self, acc: int) -> int:
        return acc


class CountPerElement(beam.PTransform):
    """``Count.PerElement`` with the 100,000-key table: (element, count)."""

    def expand(self, pcoll):
        return (pcoll | "PairWithOne" >> beam.Map(lambda x: (x, None))
                | "CountPerKey" >> beam.CombinePerKey(CountFn()))
