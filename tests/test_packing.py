"""Packed shuffle values: exact round trip, smaller than the record, allocator settings exported."""

import os
import pickle

from lazaret.memory import tune_allocator
from lazaret.packing import pack, unpack


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
