"""The check registry (lazaret.checks): one name per check, used by --checks, the manifests and the policy;
an in-house check registered from here runs in a real scan exactly like a built-in one."""

from __future__ import annotations

import json
import os
import pathlib

import apache_beam as beam
import pytest

from helpers import findings_rows, quarantine_rows, scan, summary
from lazaret.checks import Check, CheckResult, checks, get, names, register, unregister
from lazaret.checks.findings import make_finding
from lazaret.rules.errors import ConfigError
from lazaret.scan import parse_checks

TOY = "toy_word"


class FlagWord(beam.DoFn):
    """Quarantines records whose response contains ``word``; one finding per record, score 0 when absent."""

    def __init__(self, word: str) -> None:
        self.word = word

    def process(self, record):
        responses = " ".join(text for _path, side, text in record["fields"] if side == "response")
        hit = self.word in responses.lower()
        yield make_finding(record, TOY, "word" if hit else "none", "response", 1.0 if hit else 0.0,
                           f"response contains {self.word!r}" if hit else "",
                           action="quarantine" if hit else "none")


def toy_expand(records, ctx):
    return CheckResult(records | "FlagWord" >> beam.ParDo(FlagWord(ctx.policy.get("word", "pineapple"))))


@pytest.fixture
def toy_check():
    check = register(Check(name=TOY, expand=toy_expand, aliases=("toy",)))
    try:
        yield check
    finally:
        unregister(TOY)
    assert TOY not in names()


def test_builtin_names_one_per_check():
    assert names() == ["pii", "toxicity", "dedup", "poisoning"]
    assert [c.manifest_name for c in checks()] == ["pii", "toxicity", "near_duplicate", "poisoning"]
    # the command line accepts the manifest name and the historical aliases, and stores the one name
    assert parse_checks("near_duplicate,near_duplicates,dedup,poison,pii") == ["dedup", "poisoning", "pii"]
    assert get("poisoning").needs == ("dedup",)
    with pytest.raises(ConfigError, match="choose from pii, toxicity, dedup, poisoning"):
        parse_checks("pii,spam")


@pytest.mark.parametrize("module", ["lazaret.checks.near_duplicate", "lazaret.checks.poisoning"])
def test_builtin_order_whichever_check_module_a_worker_imports_first(module):
    """A worker imports a check module first when it unpickles one of its functions (near_duplicate.row):
    the registry is still complete and in order there."""
    import subprocess
    import sys

    code = f"import {module}; from lazaret.checks import names; print(','.join(names()))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert done.stdout.decode().strip() == "pii,toxicity,dedup,poisoning"


def test_registry_refuses_taken_names_and_unknown_needs():
    with pytest.raises(ValueError, match="already taken"):
        register(Check(name="near_duplicate", expand=toy_expand))
    with pytest.raises(ValueError, match="already taken"):
        register(Check(name="other", finding_name="malformed", expand=toy_expand))
    with pytest.raises(ValueError, match="not registered before it"):
        register(Check(name="other", needs=("later",), expand=toy_expand))
    assert "other" not in names()
    with pytest.raises(ValueError, match="built in"):
        unregister("dedup")
    assert "dedup" in names()


def test_registered_name_is_known_everywhere(toy_check, tmp_path):
    record = {"doc_id": "d1", "record_id": "r1"}
    assert make_finding(record, TOY, "word")["check"] == TOY
    assert parse_checks("toy,pii") == [TOY, "pii"]
    from lazaret.rules.policy import load_policy

    policy = tmp_path / "policy.yaml"
    policy.write_text(f"incidents:\n  open_on_confirm:\n    {TOY}: high\n")
    assert load_policy(str(policy)).sections["incidents"]["open_on_confirm"][TOY] == "high"


def test_a_checks_policy_schema_is_found_beside_it(tmp_path, monkeypatch):
    """Each built-in check's section is declared by its own package (checks/<check>/policy.py); a registered
    check's schema module is validated like them: defaults filled in, unknown fields and bad values refused
    with the file's line."""
    import sys
    import types

    from lazaret.rules.policy import load_policy, section_modules
    from lazaret.rules.schema import F

    mods = section_modules()
    assert {c.name: mods[c.policy_section].__name__ for c in checks()} == {
        "pii": "lazaret.checks.pii.policy", "toxicity": "lazaret.checks.toxicity.policy",
        "dedup": "lazaret.checks.near_duplicate.policy", "poisoning": "lazaret.checks.poisoning.policy"}
    schema = types.ModuleType("toy_word_policy")
    schema.SPEC = {"word": F("str", "pineapple", "the word to flag")}
    monkeypatch.setitem(sys.modules, "toy_word_policy", schema)
    register(Check(name=TOY, expand=toy_expand, policy_section=TOY, policy_schema="toy_word_policy"))
    try:
        assert load_policy(None).sections[TOY] == {"word": "pineapple"}
        policy = tmp_path / "policy.yaml"
        policy.write_text(f"{TOY}:\n  word: mango\n")
        assert load_policy(str(policy)).sections[TOY] == {"word": "mango"}
        policy.write_text(f"pii:\n  nlp: none\n{TOY}:\n  words: mango\n")
        with pytest.raises(ConfigError, match=r"policy.yaml:4.*toy_word.words.*unknown field"):
            load_policy(str(policy))
    finally:
        unregister(TOY)
    with pytest.raises(ConfigError, match="unknown policy section"):
        load_policy(str(policy))


def test_unregistered_name_is_refused():
    with pytest.raises(ConfigError, match="unknown check 'toy_word'"):
        parse_checks(TOY)


def test_findings_named_after_another_check_are_refused_where_they_leave_it():
    from lazaret.graph.pipeline import OwnFindings

    own = OwnFindings("dedup", ("near_duplicate", "malformed", "rule"))
    for name in ("near_duplicate", "malformed"):
        finding = make_finding({"doc_id": "d1"}, name, "x")
        assert list(own.process(finding)) == [finding]
    with pytest.raises(ValueError, match="check 'dedup' emitted a finding named 'pii'"):
        list(own.process(make_finding({"doc_id": "d1"}, "pii", "x")))


def test_finding_names_travel_with_the_pickled_step(toy_check):
    """A fresh interpreter, where the toy check was never registered, unpickles the step that checks the toy
    check's findings and accepts them (what a worker process does)."""
    import subprocess
    import sys

    from apache_beam.internal import pickler

    from lazaret.graph.pipeline import OwnFindings

    blob = pickler.dumps(OwnFindings(TOY, (TOY, "malformed", "rule")))
    code = ("import sys; from apache_beam.internal import pickler; from lazaret.checks import names; "
            "from lazaret.checks.findings import make_finding; own = pickler.loads(sys.stdin.buffer.read()); "
            f"assert {TOY!r} not in names(); "
            f"print(len(list(own.process(make_finding({{'doc_id': 'd1'}}, {TOY!r}, 'word')))))")
    done = subprocess.run([sys.executable, "-c", code], input=blob, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert done.stdout.decode().strip() == "1"


@pytest.mark.slow
def test_toy_check_registered_here_lands_in_the_manifests(toy_check, tmp_path):
    data = tmp_path / "d.jsonl"
    rows = [{"id": f"r{i}", "prompt": f"question {i}", "response": "I like Pineapple." if i in (2, 5) else "fine"}
            for i in range(6)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    assert scan(data, out, "--checks", "toy", "--no-report") == 0
    s = summary(out)
    assert s["checks"] == [TOY] and s["conservation"]["holds"]
    assert s["actions"]["quarantine"] == 2 and s["actions"]["clean"] == 4
    assert s["reasons"] == {f"{TOY}:word": 2}
    held = sorted(r["record_id"] for r in quarantine_rows(out))
    assert held == ["r2", "r5"]
    found = findings_rows(out)
    assert {f["check"] for f in found} == {TOY} and len(found) == 6
    assert sorted(f["record_id"] for f in found if f["rule"] == "word") == ["r2", "r5"]


@pytest.mark.slow
def test_toy_check_findings_reach_the_manifests_from_worker_processes(toy_check, tmp_path, monkeypatch):
    """The registry is per process: the toy check is registered here, not in the two worker processes of
    multi_processing, which unpickle its DoFn (importing this module, which registers nothing). What a worker
    needs to know about the check travels with the pickled transforms."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(pathlib.Path(__file__).parent),
                                                                    os.environ.get("PYTHONPATH")])))
    data = tmp_path / "d.jsonl"
    rows = [{"id": f"r{i}", "prompt": f"question {i}", "response": "I like Pineapple." if i in (1, 4) else "fine"}
            for i in range(6)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    assert scan(data, out, "--checks", "toy", "--no-report", "--runner=DirectRunner",
                "--direct_running_mode=multi_processing", "--direct_num_workers=2") == 0
    s = summary(out)
    assert s["checks"] == [TOY] and s["conservation"]["holds"]
    assert sorted(r["record_id"] for r in quarantine_rows(out)) == ["r1", "r4"]
    found = findings_rows(out)
    assert {f["check"] for f in found} == {TOY} and len(found) == 6
