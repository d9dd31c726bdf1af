"""Bytes crossing the shuffles of one ``lazaret scan``, per input byte, by GroupByKey (issue 23, item 4).

Why this way: a shuffle's cost (network and disk on Dataflow or Flink, memory or spill files on the local
runner) is the encoded bytes written into it. The in-process runner (FnApiRunner, what ``lazaret scan`` uses
by default) receives every encoded chunk a stage writes to a GroupByKey in a grouping buffer; this bench
counts the bytes of those chunks, by the GroupByKey they feed (``Join/CoGroupByKeyImpl/GroupByKey``,
``SpreadRecords/...``, the writers' groupings, the dedup rounds), while running the real CLI in this process.
Merges of partial buffers (``extend``) are not counted again. Side inputs and fused-stage boundaries are
not shuffles on a distributed runner and are not counted.

    .venv/bin/python bench/shuffle_bytes.py sample_data
    .venv/bin/python bench/shuffle_bytes.py --t0 5000 --checks dedup     # first 5,000 T0 records

Input bytes are the bytes of the input files as read (uncompressed JSONL for the T0 slice). Prints one line
per GroupByKey (bytes, share) and the total per input byte, plus the CPU-seconds of the run.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import gzip
import os
import pathlib
import resource
import sys
import tempfile
import threading
from typing import Dict, Iterator, List, Tuple

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

T0 = "instruct_t0_train_50k/t0_train_50k.jsonl.gz"


@contextlib.contextmanager
def counting_shuffles() -> Iterator[Dict[str, int]]:
    """Count the encoded bytes appended to every grouping buffer of the in-process runner, by the unique name
    of its GroupByKey, while the block runs."""
    from apache_beam.runners.portability.fn_api_runner import execution
    from apache_beam.runners.portability.fn_api_runner.translations import split_buffer_id

    counts: Dict[str, int] = collections.Counter()
    names: Dict[int, str] = {}
    local = threading.local()
    patched: List[Tuple[type, str, object]] = []

    def patch_class(cls: type) -> None:
        if any(c is cls for c, _n, _o in patched) or "append" not in vars(cls):
            return
        append, extend = vars(cls)["append"], vars(cls).get("extend")

        def counted_append(self, elements_data, _append=append):
            if not getattr(local, "merging", False):
                counts[names.get(id(self), "?")] += len(elements_data)
            return _append(self, elements_data)

        patched.append((cls, "append", append))
        cls.append = counted_append
        if extend is not None:
            def uncounted_extend(self, other, _extend=extend):
                local.merging = True
                try:
                    return _extend(self, other)
                finally:
                    local.merging = False

            patched.append((cls, "extend", extend))
            cls.extend = uncounted_extend

    get_buffer = execution.BundleContextManager.get_buffer

    def named_get_buffer(self, buffer_id, transform_id):
        buffer = get_buffer(self, buffer_id, transform_id)
        kind, name = split_buffer_id(buffer_id)
        if kind == "group":
            patch_class(type(buffer))
            transform = self.execution_context.pipeline_components.transforms.get(name)
            names[id(buffer)] = transform.unique_name if transform is not None else name
        return buffer

    execution.BundleContextManager.get_buffer = named_get_buffer
    try:
        yield counts
    finally:
        execution.BundleContextManager.get_buffer = get_buffer
        for cls, attr, original in reversed(patched):
            setattr(cls, attr, original)


def t0_slice(n: int, folder: pathlib.Path) -> pathlib.Path:
    from _common import need_shared

    src = need_shared() / T0
    if not src.is_file():
        sys.exit(f"skip: {src} not present")
    path = folder / f"t0_{n}.jsonl"
    with gzip.open(src, "rt", encoding="utf-8") as fh, open(path, "w", encoding="utf-8") as out:
        for _i, line in zip(range(n), fh):
            out.write(line)
    return path


def input_bytes(paths: List[pathlib.Path]) -> int:
    total = 0
    for p in paths:
        files = [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file())
        total += sum(f.stat().st_size for f in files)
    return total


def group(name: str) -> str:
    """A GroupByKey's name without Beam's inner parts, so a transform's groupings add up in one line."""
    parts = [p for p in name.split("/") if p not in ("GroupByKey", "CoGroupByKeyImpl", "ReshufflePerKey")]
    return "/".join(parts[:3]) or name


def main(argv: List[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("inputs", nargs="*", type=pathlib.Path)
    ap.add_argument("--t0", type=int, default=0, help="scan the first N records of the T0 training set")
    ap.add_argument("--checks", default=None)
    ap.add_argument("--pii-nlp", default="none", help="PII NER model (default none: this bench is about "
                                                      "shuffles, not NER)")
    ap.add_argument("--by-gbk", action="store_true", help="one line per GroupByKey, not per transform")
    args = ap.parse_args(argv)
    from lazaret.cli import main as cli_main

    with tempfile.TemporaryDirectory(prefix="shuffle-bytes-") as tmp:
        inputs = list(args.inputs)
        if args.t0:
            inputs.append(t0_slice(args.t0, pathlib.Path(tmp)))
        if not inputs:
            ap.error("give input paths or --t0 N")
        extra = ["--pii-nlp", args.pii_nlp, "--no-report"] + (["--checks", args.checks] if args.checks else [])
        before = resource.getrusage(resource.RUSAGE_SELF)
        with counting_shuffles() as counts:
            rc = cli_main(["scan", *map(str, inputs), "--out", os.path.join(tmp, "out"), "--quiet", *extra])
        after = resource.getrusage(resource.RUSAGE_SELF)
        if rc != 0:
            print(f"scan failed: exit {rc}")
            return rc
        n_in = input_bytes(inputs)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    by: Dict[str, int] = collections.Counter()
    for name, n in counts.items():
        by[name if args.by_gbk else group(name)] += n
    total = sum(by.values())
    print(f"input: {', '.join(map(str, inputs))} ({n_in:,} bytes); checks: {args.checks or 'policy default'}")
    for name, n in sorted(by.items(), key=lambda kv: -kv[1]):
        print(f"  {n:>14,}  {n / n_in:6.3f}/B  {name}")
    print(f"shuffle bytes: {total:,} = {total / n_in:.3f} per input byte; CPU {cpu:.1f} s (this process; "
          "in-process runner)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
