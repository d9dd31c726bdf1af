"""A file that mixes record formats (sources concatenated: Alpaca rows among chat rows) is read record by
record when its format was detected; a format forced with --format still rejects what does not fit it."""

from __future__ import annotations

import json

import apache_beam as beam

from lazaret.io.readers import ReadFile

ROWS = [
    {"id": "m1", "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there"},
                              {"role": "assistant", "content": "Hello."}]},
    {"id": "a1", "instruction": "Add 2 and 3.", "input": "", "output": "5"},
    {"id": "n1", "title": "no text field of any format"},
    {"id": "m2", "messages": [{"role": "user", "content": "Name a colour"},
                              {"role": "assistant", "content": "Blue."}]},
]


def _read(tmp_path, fmt: str):
    path = tmp_path / "mixed.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS), encoding="utf-8")
    records, rejects, files = [], [], []
    for out in ReadFile(fmt=fmt).process(str(path)):
        if isinstance(out, beam.pvalue.TaggedOutput):
            if out.tag != ReadFile.BLOCK:
                (rejects if out.tag == ReadFile.REJECT else files).append(out.value)
        else:
            records.append(out)
    return records, rejects, files


def _reject_rule(r) -> str:
    return (r.get("reasons") or [{}])[0].get("rule") or r.get("rule")


def test_detected_format_reads_each_record_in_the_format_it_has(tmp_path):
    records, rejects, files = _read(tmp_path, "auto")
    assert [(r["record_id"], r["format"]) for r in records] == [("m1", "messages"), ("a1", "alpaca"),
                                                                ("m2", "messages")]
    a1 = records[1]
    assert a1["prompt"].startswith("Add 2 and 3.") and a1["response"] == "5"
    # a record that fits no format is still a finding, with the file's format named
    assert len(rejects) == 1 and "file format: messages" in json.dumps(rejects[0])
    assert files[0]["records"] == 4 and files[0]["format"] == "messages"


def test_forced_format_rejects_records_of_another_format(tmp_path):
    records, rejects, _ = _read(tmp_path, "messages")
    assert [r["record_id"] for r in records] == ["m1", "m2"]
    assert len(rejects) == 2
    assert all("missing_field" in json.dumps(r) for r in rejects)
