"""CPU-seconds per fused stage of one ``lazaret scan`` on the in-process FnApiRunner, and the rest of the process.

Wraps ``FnApiRunner._execute_bundle`` with ``time.process_time()`` (the runner executes bundles one at a time in
this process, so the difference is the stage's own CPU, its Beam coding included) and prints the stages by CPU
after the scan. Registers the do-nothing checks of ``bench/scan_floor.py`` too, so the floor can be split::

    taskset -c 0 .venv/bin/python bench/scan_stages.py \
        ../shared/data/instruct_t0_train_50k/t0_train_50k.jsonl.gz --out OUT --checks dedup --no-report --quiet
"""

from __future__ import annotations

import collections
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import scan_floor  # noqa: E402,F401  (registers floor_none, floor_row)
from apache_beam.runners.portability.fn_api_runner import fn_runner  # noqa: E402

_cpu: "collections.Counter[str]" = collections.Counter()
_bundles: "collections.Counter[str]" = collections.Counter()
_original = fn_runner.FnApiRunner._execute_bundle


def _timed(self, ctx, manager, bundle_input):
    start = time.process_time()
    try:
        return _original(self, ctx, manager, bundle_input)
    finally:
        name = manager.stage.name
        _cpu[name] += time.process_time() - start
        _bundles[name] += 1


def main() -> int:
    fn_runner.FnApiRunner._execute_bundle = _timed
    from lazaret.cli import main as cli_main

    code = cli_main(["scan", *sys.argv[1:]])
    total = time.process_time()
    staged = sum(_cpu.values())
    print(f"{'CPU-s':>7} {'bundles':>7}  stage", file=sys.stderr)
    for name, cpu in _cpu.most_common():
        if cpu >= 0.05:
            print(f"{cpu:7.2f} {_bundles[name]:7d}  {name[:150]}", file=sys.stderr)
    print(f"{staged:7.2f}          all stages\n{total - staged:7.2f}          outside the stages\n"
          f"{total:7.2f}          process total", file=sys.stderr)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
