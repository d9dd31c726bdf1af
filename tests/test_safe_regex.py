"""User regexes run in bounded time by construction (issue 19 item 6): RE2 by default, refused at validation
when RE2 cannot compile them, and an opted-in backtracking pattern that runs out of budget is a finding."""

from __future__ import annotations

import json
import pathlib
import shutil
import time

import pytest

from helpers import findings_rows, quarantine_rows, run_cli, scan, summary

ROOT = pathlib.Path(__file__).resolve().parent.parent
HOSTILE = "q" * 60 + "x"  # (q|qz?)+y backtracks 2^n ways on this before failing


def _rules(tmp_path, regex: str, engine: str = "") -> pathlib.Path:
    rules = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", rules)
    extra = f"\n        engine: {engine}" if engine else ""
    (rules / "recognizers" / "user.yaml").write_text(
        "recognizers:\n"
        "  - name: UserRecognizer\n"
        "    supported_entity: CUSTOMER_CODE\n"
        "    patterns:\n"
        "      - name: code\n"
        f"        regex: {json.dumps(regex)}\n"
        f"        score: 0.9{extra}\n", encoding="utf-8")
    return rules


def test_re2_runs_the_nested_quantifier_in_linear_time():
    from lazaret.rules.safe_regex import SafeRegex

    compiled = SafeRegex(r"(q|qz?)+y")
    t = time.process_time()
    assert list(compiled.finditer("q" * 200_000 + "x")) == []
    assert list(compiled.finditer("a qqzqy b")) == [(2, 7)]
    assert time.process_time() - t < 2.0  # a backtracking engine would not finish the first text at all


def test_backtracking_pattern_out_of_budget_raises():
    from lazaret.rules.safe_regex import RegexBudgetExceeded, SafeRegex

    compiled = SafeRegex(r"(q|qz?)+y", engine="backtracking", budget=0.05)
    with pytest.raises(RegexBudgetExceeded):
        list(compiled.finditer(HOSTILE))
    assert list(compiled.finditer("a qqy")) == [(2, 5)]


def test_look_around_refused_without_opt_in(tmp_path, capsys):
    rules = _rules(tmp_path, r"(?<=code )\d+")
    assert run_cli("rules", "check", rules) == 2
    err = capsys.readouterr()
    text = err.out + err.err
    assert "user.yaml:6" in text and "recognizers[0].patterns[0].regex" in text and "RE2" in text
    rules = _rules(tmp_path / "b", r"(?<=code )\d+", engine="backtracking")
    assert run_cli("rules", "check", rules) == 0


def test_unknown_engine_refused(tmp_path, capsys):
    rules = _rules(tmp_path, r"\d+", engine="perl")
    assert run_cli("rules", "check", rules) == 2
    assert "engine" in capsys.readouterr().err


def test_engine_reports_a_timeout_as_a_finding():
    from lazaret.checks.pii.engine import REGEX_TIMEOUT, PiiEngine
    from lazaret.rules.policy import load_policy

    section = dict(load_policy(str(ROOT / "rules" / "policy.yaml")).section("pii"))
    section["nlp"] = "none"
    spec = {"name": "UserRecognizer", "supported_entity": "CUSTOMER_CODE", "supported_language": "en",
            "patterns": [{"name": "code", "regex": r"(q|qz?)+y", "score": 0.9, "engine": "backtracking"}],
            "context": [], "deny_list": [], "deny_list_score": 1.0}
    engine = PiiEngine(section, [spec]).load()
    # the trailing "qy" keeps the one-pass RE2 prefilter (checks/pii/prefilter.py) from ruling the recognizer out:
    # the backtracking engine then meets the 2^n prefix first and runs out of its budget
    found = engine.analyze_many([f"hello {HOSTILE} there qy", "a qqy here", f"hello {HOSTILE} there"])
    assert [f[2] for f in found[0]] == [REGEX_TIMEOUT]
    assert [f[2] for f in found[1]] == ["CUSTOMER_CODE"]
    # a text where the pattern cannot match at all is ruled out by the linear prefilter: no backtracking
    assert found[2] == []
    assert engine.stats["regex_timeouts"] == 1


@pytest.mark.slow
def test_hostile_record_quarantined_with_reason(tmp_path):
    data = tmp_path / "in.jsonl"
    data.write_text("\n".join(json.dumps({"text": t}) for t in
                              (f"order {HOSTILE} done qy", "nothing to see", "code qqzy here")) + "\n")
    out = tmp_path / "out"
    rules = _rules(tmp_path, r"(q|qz?)+y", engine="backtracking")
    assert scan(data, out, "--checks", "pii", "--pii-nlp", "none", "--rules", rules) == 0
    rows = quarantine_rows(out)
    timed_out = [r for r in rows if any(x["rule"] == "REGEX_TIMEOUT" for x in r["reasons"])]
    assert len(timed_out) == 1 and timed_out[0]["source_index"] == 0
    assert summary(out)["conservation"]["holds"] is True
    assert any(f["rule"] == "CUSTOMER_CODE" for f in findings_rows(out))
    # the same pattern on RE2 (the default): linear, no timeout, the record is scanned and passes
    out2 = tmp_path / "out2"
    rules2 = _rules(tmp_path / "re2", r"(q|qz?)+y")
    assert scan(data, out2, "--checks", "pii", "--pii-nlp", "none", "--rules", rules2) == 0
    assert not any(x["rule"] == "REGEX_TIMEOUT" for r in quarantine_rows(out2) for x in r["reasons"])
