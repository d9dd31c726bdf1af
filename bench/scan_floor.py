"""The floor the scan's design sets: ``lazaret scan`` with a check that does no work, so what is measured is the
read, the decisions and the writers of every record (the mix reading each input again, clean/ and the indexes,
findings/ when the check writes a row per record), start-up included.

Two do-nothing checks are registered here the way ``tests/test_checks_registry.py`` registers its toy check:

  floor_none     emits no finding at all: read -> mix -> clean/, nothing decided
  floor_row      one ``none`` finding per record (score 0, action none), as the near-duplicate check writes for a
                 record without a duplicate: the floor of a check with per-record findings/ rows

Any other argument is passed to ``lazaret scan`` unchanged, so the command is the issue-23 one with another
``--checks`` (``--checks ""`` runs no check at all)::

    taskset -c 0 /usr/bin/time -v .venv/bin/python bench/scan_floor.py \
        ../shared/data/instruct_t0_train_50k/t0_train_50k.jsonl.gz --out OUT --checks floor_row --no-report --quiet
"""

from __future__ import annotations

import os
import sys

import apache_beam as beam

from lazaret.checks import Check, CheckResult, register
from lazaret.checks.findings import make_finding


def _nothing(_record):
    return ()


def _none_row(record):
    yield make_finding(record, "floor_row", "none", "all", 0.0, "", action="none")


def _expand_none(records, _ctx):
    return CheckResult(records | "Nothing" >> beam.FlatMap(_nothing))


def _expand_row(records, _ctx):
    return CheckResult(records | "NoneRow" >> beam.FlatMap(_none_row))


register(Check(name="floor_none", expand=_expand_none))
register(Check(name="floor_row", expand=_expand_row))

if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from lazaret.cli import main

    raise SystemExit(main(["scan", *sys.argv[1:]]))
