"""Hostile input, round 2 (issue 19): the input is never touched, outputs are never read as input, no
record, compressed stream, file or rule file can stop a scan or grow its memory past the configured bound."""

from __future__ import annotations

import gzip
import json
import os
import pathlib

import pytest

from helpers import quarantine_rows, scan, summary

FAST = ["--checks", "pii", "--pii-nlp", "none"]


def _corpus(folder: pathlib.Path, n: int = 3, name: str = "a.jsonl") -> pathlib.Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text("".join(json.dumps({"text": f"record {i} of {name}"}) + "\n" for i in range(n)))
    return path


def _snapshot(folder: pathlib.Path):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# -- item 1: --out equal to, above or inside an input -----------------------------------------------------
@pytest.mark.parametrize("where", ["same", "parent", "inside", "inside_file_parent"])
def test_out_overlapping_an_input_exits_2_and_touches_nothing(tmp_path, capsys, where):
    corpus = tmp_path / "corpus"
    data = _corpus(corpus)
    (tmp_path / "unrelated.txt").write_text("keep me")
    before = _snapshot(tmp_path)
    out, inputs = {"same": (corpus, corpus), "parent": (tmp_path, corpus),
                   "inside": (corpus / "out", corpus), "inside_file_parent": (corpus, data)}[where]
    assert scan(inputs, out, "--overwrite", *FAST) == 2
    err = capsys.readouterr().err
    assert "--out" in err and "input" in err
    assert _snapshot(tmp_path) == before
    assert not list(tmp_path.rglob("*.lazaret-staging-*"))


def test_overwrite_refuses_a_folder_that_is_not_a_lazaret_output(tmp_path, capsys):
    data = _corpus(tmp_path / "corpus")
    home = tmp_path / "home"
    (home / "docs").mkdir(parents=True)
    (home / "docs" / "thesis.tex").write_text("years of work")
    assert scan(data, home, "--overwrite", *FAST) == 2
    assert "not" in capsys.readouterr().err
    assert (home / "docs" / "thesis.tex").read_text() == "years of work"


def test_outputs_and_staging_folders_inside_an_input_are_not_read(tmp_path):
    corpus = tmp_path / "corpus"
    _corpus(corpus, n=4)
    old = corpus / "previous_out"  # a previous scan's output moved into the corpus
    (old / "clean").mkdir(parents=True)
    (old / "summary.json").write_text("{}")
    (old / "provenance.json").write_text("{}")
    with gzip.open(old / "clean" / "part-00000.jsonl.gz", "wt") as fh:
        fh.write(json.dumps({"text": "already scanned"}) + "\n")
    staging = corpus / "x.lazaret-staging-0123abcd"  # a killed run's leftovers
    _corpus(staging, n=5, name="held.jsonl")
    out = tmp_path / "out"
    assert scan(corpus, out, *FAST) == 0
    s = summary(out)
    assert s["records_in"] == 4 and s["conservation"]["holds"]
    assert {r["source_path"] for r in quarantine_rows(out)} <= {str(corpus / "a.jsonl")}
