"""Packed shuffle values: exact round trip, smaller than the record, allocator settings exported."""

import os
import pickle

from lazaret.graph.packing import pack, unpack
from lazaret.runners.memory import tune_allocator


def test_pack_round_trips_a_record_exactly():
    text = "Write a poem about Paris. " * 40
    record = {"doc_id": "ab" * 16, "raw": {"prompt": text, "n": [1, 2.5, None]}, "prompt": text,
              "text": text, "fields": [("prompt", text)], "lone": "\ud800", "nul": "\x00"}
    packed = pack(record)
    assert isinstance(packed, bytes)
    assert unpack(packed) == record
    # the text repeats (raw, fields, sides): compression must fold it, or packing costs memory
    assert len(packed) < len(pickle.dumps(record)) / 3


def test_tune_allocator_exports_thresholds_to_child_processes(monkeypatch):
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    tune_allocator()
    assert os.environ["MALLOC_MMAP_THRESHOLD_"] == str(128 * 1024)
    assert os.environ["MALLOC_TRIM_THRESHOLD_"] == str(128 * 1024)
    assert os.environ["MALLOC_ARENA_MAX"] == "2"


def test_tune_allocator_leaves_user_settings_alone(monkeypatch):
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "65536")
    monkeypatch.setenv("MALLOC_ARENA_MAX", "8")
    assert tune_allocator() is False
    assert os.environ["MALLOC_MMAP_THRESHOLD_"] == "65536"
    assert os.environ["MALLOC_ARENA_MAX"] == "8"



class _Log:
    """Appends each record's (path, index) to a file, in the order this stage sees the records."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __call__(self, record):
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(f"{record['source_path']} {record['source_index']}\n")
        return record["source_index"]


def _runs(path) -> int:
    """Runs of consecutive indices of one file in the logged order."""
    seen = [(a, int(b)) for a, b in (line.split() for line in open(path, encoding="utf-8"))]
    return 1 + sum(1 for x, y in zip(seen, seen[1:]) if y != (x[0], x[1] + 1))


def _spread(transform, log: str):
    import apache_beam as beam
    from apache_beam.testing.util import assert_that, equal_to

    with beam.Pipeline() as p:
        out = (p | beam.Create(["a.jsonl", "b.jsonl"])
               | beam.FlatMap(lambda f: ({"source_path": f, "source_index": i, "text": "x" * (i % 7)}
                                         for i in range(300)))
               | transform
               | beam.Map(_Log(log)))
        assert_that(out, equal_to(list(range(300)) * 2))


def test_spread_in_blocks_keeps_every_record_and_file_order_within_a_block(tmp_path):
    """Same records out as in; consecutive records of a file share a key and, on the in-process runner,
    reach the next stage in file order (what keeps the PII sentence cache's hit rate independent of the
    size of the scan; ``beam.Reshuffle`` delivered all 55,185 T0 records to the PII stage as 55,185 runs of one
    record, interleaved from ~55 parts of the file, measured on the real scan)."""
    from lazaret.graph.packing import SpreadInBlocks, block_key

    key = lambda path, i: block_key({"source_path": path, "source_index": i}, 100)
    assert key("a", 0) == key("a", 99) != key("a", 100)
    assert key("a", 1) != key("b", 1)
    _spread(SpreadInBlocks(block=100), str(tmp_path / "blocks"))
    assert _runs(tmp_path / "blocks") <= 6  # at most one run per block: 2 files x 3 blocks


def test_pack_per_key_lists_every_value_once_whatever_the_bounds(monkeypatch):
    """PackPerKey (decisions and evidence on their way to the mix): every value of a key reaches it in exactly
    one list, whatever the list size and the bound on what a bundle holds open."""
    import collections

    from lazaret.graph.packing import PackPerKey

    pairs = [(k % 7, (f"d{k}", k)) for k in range(500)]
    for max_values, max_pending in ((1, 20000), (3, 20000), (1000, 20000), (1000, 11)):
        monkeypatch.setattr(PackPerKey, "MAX_PENDING_VALUES", max_pending)
        fn = PackPerKey(max_values)
        fn.start_bundle()
        out = [kv for pair in pairs for kv in fn.process(pair)] + [w.value for w in fn.finish_bundle()]
        got = collections.defaultdict(list)
        for key, listed in out:
            values = unpack(listed)
            assert 0 < len(values) <= max_values
            got[key].extend(values)
        want = collections.defaultdict(list)
        for key, value in pairs:
            want[key].append(value)
        assert {k: sorted(v) for k, v in got.items()} == {k: sorted(v) for k, v in want.items()}


def test_pack_columns_gives_back_every_value_in_its_order_within_a_length():
    from lazaret.io.writers import batch_values, pack_columns

    values = [("a", 1, None, [1, 2]), ("d", 7), ("b", 2.5, ("x",), []), ("e", 8), ("c", -1, "z", None)]
    got = list(batch_values(pack_columns(values)))
    assert [v for v in got if len(v) == 4] == [v for v in values if len(v) == 4]
    assert [v for v in got if len(v) == 2] == [v for v in values if len(v) == 2]
    assert len(got) == len(values)
    assert list(batch_values(pack_columns([]))) == []
