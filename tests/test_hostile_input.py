"""Hostile input: fuzzed corpora, huge lines, broken streams. The scan finishes, conservation holds
exactly, every bad record is a reject naming its problem, and the good records around it are scanned."""

from __future__ import annotations

import gzip
import io
import json
import pathlib
import resource
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import clean_records, quarantine_rows, scan, summary

FAST = ["--checks", "pii", "--pii-nlp", "none"]

# (kind, expected reject rule or None for a good record)
BAD_LINES = {
    "invalid_json": (b'{"instruction": "unterminated', "invalid_json"),
    "invalid_utf8": (b'{"instruction": "caf\xe9", "output": "x"}', "invalid_utf8"),
    "lone_surrogate": (b'{"instruction": "a \\udc80 b", "output": "x"}', "lone_surrogate"),
    "nul_byte": (b'{"instruction": "a\x00b", "output": "x"}', "invalid_json"),
    "deep": (b'{"instruction": "x", "output": "y", "z": ' + b"[" * 5000 + b"]" * 5000 + b"}", "too_deeply_nested"),
    "number_text": (b'{"instruction": 12, "output": "x"}', "wrong_type"),
    "null_text": (b'{"instruction": null, "output": "x"}', "wrong_type"),
    "array": (b"[1, 2, 3]", "not_an_object"),
    "no_text": (b'{"id": "x", "title": "none"}', "missing_field"),
    "empty_text": (b'{"instruction": " ", "output": ""}', "empty_text"),
}


def good_line(i: int, text: str) -> bytes:
    return json.dumps({"id": f"good-{i}", "instruction": f"Question {i}: {text}", "input": "",
                       "output": f"Answer {i}."}, ensure_ascii=False).encode("utf-8")


lines_strategy = st.lists(
    st.one_of(st.tuples(st.just("good"), st.text(min_size=1, max_size=40)),
              st.tuples(st.sampled_from(sorted(BAD_LINES)), st.just(""))),
    min_size=1, max_size=25)


@pytest.mark.slow
@settings(max_examples=5, deadline=None, suppress_health_check=list(HealthCheck))
@given(items=lines_strategy, bom=st.booleans(), crlf=st.booleans(), dup_ids=st.booleans())
def test_fuzzed_jsonl_corpus(tmp_path_factory, items, bom, crlf, dup_ids):
    tmp = tmp_path_factory.mktemp("fuzz")
    lines, expected = [], []
    for i, (kind, text) in enumerate(items):
        if kind == "good":
            lines.append(good_line(0 if dup_ids else i, text))
            expected.append(None)
        else:
            lines.append(BAD_LINES[kind][0])
            expected.append(BAD_LINES[kind][1])
    # the first good line goes first so the file's format (alpaca) is detected from it
    lines.insert(0, good_line(999, "first"))
    expected.insert(0, None)
    sep = b"\r\n" if crlf else b"\n"
    data = (b"\xef\xbb\xbf" if bom else b"") + sep.join(lines) + sep
    path = tmp / "fuzz.jsonl"
    path.write_bytes(data)
    out = tmp / "out"
    assert scan(path, out, *FAST) == 0
    s = summary(out)
    assert s["conservation"]["holds"]
    assert s["records_in"] == len(lines)
    rows = {r["source_index"]: r for r in quarantine_rows(out)}
    for index, rule in enumerate(expected):
        if rule is None:
            assert index not in rows or rows[index]["action"] != "reject", rows.get(index)
        else:
            assert rows[index]["action"] == "reject"
            assert rows[index]["reasons"][0]["rule"] == rule
    assert len(clean_records(out)) == s["actions"]["clean"]


@pytest.mark.slow
def test_broken_files_each_one_finding(tmp_path):
    corpus = tmp_path / "corpus"  # --out may not lie inside an input (issue 19)
    corpus.mkdir()
    good = b"\n".join(good_line(i, "fine") for i in range(5)) + b"\n"
    (corpus / "ok.jsonl").write_bytes(good)
    (corpus / "empty.jsonl").write_bytes(b"")
    many = b"\n".join(good_line(i, "fine " * (i % 7)) for i in range(400)) + b"\n"
    gz = gzip.compress(many, mtime=0)
    (corpus / "cut.jsonl.gz").write_bytes(gz[: len(gz) // 2])
    (corpus / "garbage.jsonl.gz").write_bytes(b"\x1f\x8b\x08\x00" + b"\x00garbage" * 20)
    zs = zstandard.ZstdCompressor().compress(good * 50)
    (corpus / "cut.jsonl.zst").write_bytes(zs[: len(zs) // 2])
    pq.write_table(pa.table({"a": [1, 2], "b": [True, False]}), corpus / "odd.parquet")
    (corpus / "notparquet.parquet").write_bytes(b"PAR1 this is not parquet")
    out = tmp_path / "out"
    assert scan(corpus, out, *FAST) == 0
    s = summary(out)
    assert s["conservation"]["holds"]
    rules = {}
    for r in quarantine_rows(out):
        if r["action"] == "reject":
            rules.setdefault(pathlib.Path(r["source_path"]).name, set()).add(r["reasons"][0]["rule"])
    assert rules["empty.jsonl"] == {"empty_file"}
    assert rules["cut.jsonl.gz"] == {"truncated_stream"}
    assert rules["garbage.jsonl.gz"] <= {"corrupt_stream", "truncated_stream"}
    assert rules["cut.jsonl.zst"] == {"truncated_stream"}
    assert rules["odd.parquet"] == {"unknown_format"}
    assert rules["notparquet.parquet"] == {"unreadable_file"}
    assert "ok.jsonl" not in rules
    # the good lines before the cut in the gzip file were read
    assert s["actions"]["clean"] >= 5 + 100


@pytest.mark.slow
def test_huge_single_line_rejected_with_bounded_memory(tmp_path):
    """A 50 MB line is rejected as record_too_large without being held: the reader keeps at most
    --max-record-bytes (8 MiB default) of one line plus a 1 MiB read chunk."""
    good = [good_line(i, "fine") for i in range(3)]
    huge = b'{"instruction": "' + b"A" * (50 * 1024 * 1024) + b'", "output": "x"}'
    small = tmp_path / "small.jsonl"
    small.write_bytes(b"\n".join(good) + b"\n")
    big = tmp_path / "big.jsonl"
    big.write_bytes(b"\n".join([good[0], huge, good[1], good[2]]) + b"\n")

    def peak(path, out):
        code = ("import resource,sys; from lazaret.cli import main; rc=main(sys.argv[1:]); "
                "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); sys.exit(rc)")
        res = subprocess.run([sys.executable, "-c", code, "scan", str(path), "--out", str(out), "--quiet", *FAST],
                             capture_output=True, text=True, check=True)
        return int(res.stdout.strip().splitlines()[-1]) / 1024

    base = peak(small, tmp_path / "o1")
    with_huge = peak(big, tmp_path / "o2")
    rows = {r["source_index"]: r for r in quarantine_rows(tmp_path / "o2")}
    assert rows[1]["reasons"][0]["rule"] == "record_too_large"
    assert summary(tmp_path / "o2")["actions"]["clean"] == 3
    assert with_huge - base < 40, f"peak RSS grew {with_huge - base:.0f} MB on a 50 MB line"
