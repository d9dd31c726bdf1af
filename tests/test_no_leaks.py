"""No leaks: a corpus full of personal data is scanned; no manifest, report, log line or error message
holds any of the original values in clear."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pyarrow.dataset as ds
import pytest

PII_VALUES = {
    "email": ["maria.garcia@example.com", "j.smith42@example.org"],
    "phone": ["(212) 555-0147", "415-555-0132"],
    "ssn": ["536-22-1234", "219-09-9999"],
    "card": ["4111 1111 1111 1111", "5555555555554444"],
    "iban": ["DE89370400440532013000", "GB82WEST12345698765432"],
    "ip": ["203.0.113.42", "198.51.100.23"],
    "name": ["John Smith", "Maria Garcia"],
}


def corpus() -> list:
    rows = []
    flat = [v for vals in PII_VALUES.values() for v in vals]
    for i in range(40):
        a, b, c = flat[i % len(flat)], flat[(i * 3 + 1) % len(flat)], flat[(i * 7 + 2) % len(flat)]
        rows.append(json.dumps({"id": f"r{i}", "instruction": f"Contact John Smith at {a} about {b}.",
                                "input": "", "output": f"Sure, Maria Garcia will write to {c} today."}))
    # malformed lines carrying personal data too
    rows.append('{"id": "bad1", "instruction": "John Smith card 4111 1111 1111 1111')
    rows.append('{"id": "bad2", "instruction": 5, "output": "mail maria.garcia@example.com"}')
    return rows


@pytest.mark.slow
def test_no_personal_data_in_manifests_reports_or_logs(tmp_path):
    data = tmp_path / "pii.jsonl"
    data.write_text("\n".join(corpus()) + "\n")
    out = tmp_path / "out"
    res = subprocess.run([sys.executable, "-m", "lazaret", "scan", str(data), "--out", str(out)],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    texts = {"stdout": res.stdout, "stderr": res.stderr}
    for kind in ("quarantine", "findings", "clusters"):
        table = ds.dataset(out / kind, format="parquet").to_table()
        texts[kind] = json.dumps(table.to_pylist(), ensure_ascii=False)
    for name in ("summary.json", "provenance.json", "report.html"):
        if (out / name).exists():
            texts[name] = (out / name).read_text(encoding="utf-8")
    for extra in sorted(out.glob("report*.html")):
        texts[extra.name] = extra.read_text(encoding="utf-8")
    assert "report.html" in texts
    leaks = [(where, value) for where, text in texts.items() for vals in PII_VALUES.values() for value in vals
             if value in text]
    assert not leaks, f"personal data in clear: {leaks[:10]}"
    # the scan did find and hold the data (the test would pass trivially on an empty manifest otherwise)
    assert "pii" in texts["quarantine"] and "CREDIT_CARD" in texts["findings"]
