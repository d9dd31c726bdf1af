"""Bad usage and bad configuration exit 2 with a message naming the file, line and field."""

from __future__ import annotations

import pathlib

import pytest

from helpers import run_cli, scan

ROOT = pathlib.Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "sample_data" / "chat.jsonl"


def test_missing_input_exits_2(tmp_path, capsys):
    assert scan(tmp_path / "nope.jsonl", tmp_path / "out") == 2
    assert "nope.jsonl" in capsys.readouterr().err


def test_unknown_check_exits_2(tmp_path, capsys):
    assert scan(SAMPLE, tmp_path / "out", "--checks", "pii,telepathy") == 2
    assert "telepathy" in capsys.readouterr().err


def test_policy_unknown_field_names_file_line_field(tmp_path, capsys):
    policy = tmp_path / "policy.yaml"
    policy.write_text("version: 1\npii:\n  nlp: spacy\n  score_treshold: 0.4\n")
    assert scan(SAMPLE, tmp_path / "out", "--policy", policy, "--checks", "pii") == 2
    err = capsys.readouterr().err
    assert f"{policy}:4" in err and "pii.score_treshold" in err and "unknown field" in err


def test_policy_wrong_type(tmp_path, capsys):
    policy = tmp_path / "policy.yaml"
    policy.write_text("pii:\n  score_threshold: high\n")
    assert scan(SAMPLE, tmp_path / "out", "--policy", policy, "--checks", "pii") == 2
    err = capsys.readouterr().err
    assert f"{policy}:2" in err and "expected a number" in err


def test_yaml_object_construction_refused(tmp_path, capsys):
    policy = tmp_path / "policy.yaml"
    policy.write_text("pii: !!python/object/apply:os.system ['echo pwned']\n")
    assert scan(SAMPLE, tmp_path / "out", "--policy", policy, "--checks", "pii") == 2
    assert "tag" in capsys.readouterr().err


def test_missing_policy_file(tmp_path, capsys):
    assert scan(SAMPLE, tmp_path / "out", "--policy", tmp_path / "absent.yaml") == 2
    assert "absent.yaml" in capsys.readouterr().err


def _rules_dir(tmp_path, recognizer_yaml: str) -> pathlib.Path:
    rules = tmp_path / "rules"
    (rules / "recognizers").mkdir(parents=True)
    (rules / "policy.yaml").write_text((ROOT / "rules" / "policy.yaml").read_text())
    (rules / "recognizers" / "mine.yaml").write_text(recognizer_yaml)
    return rules


def test_catastrophic_regex_reported(tmp_path, capsys):
    rules = _rules_dir(tmp_path, "recognizers:\n  - name: Evil\n    supported_entity: EVIL\n    patterns:\n"
                                 "      - name: nested\n        regex: \"(a+)+$\"\n        score: 0.5\n"
                                 "        engine: backtracking\n")  # on RE2 (the default) it is linear: accepted
    assert run_cli("rules", "check", rules) == 2
    err = capsys.readouterr().err
    assert "mine.yaml:6" in err and "catastrophic backtracking" in err
    assert scan(SAMPLE, tmp_path / "out", "--rules", rules, "--checks", "pii") == 2


def test_recognizer_unknown_field(tmp_path, capsys):
    rules = _rules_dir(tmp_path, "recognizers:\n  - name: Zip\n    supported_entity: ZIP\n    colour: red\n"
                                 "    patterns:\n      - {name: z, regex: '\\b\\d{5}\\b', score: 0.3}\n")
    assert run_cli("rules", "check", rules) == 2
    assert "mine.yaml:4" in capsys.readouterr().err


def test_default_rules_check_passes(capsys):
    assert run_cli("rules", "check", ROOT / "rules") == 0


@pytest.mark.slow
def test_custom_recognizer_used_in_scan(tmp_path):
    from helpers import findings_rows

    rules = _rules_dir(tmp_path, "recognizers:\n  - name: Ticket\n    supported_entity: TICKET\n    patterns:\n"
                                 "      - {name: t, regex: '\\bTCK-\\d{6}\\b', score: 0.9}\n")
    data = tmp_path / "d.jsonl"
    data.write_text('{"text": "Please look at TCK-123456 today."}\n')
    assert scan(data, tmp_path / "out", "--rules", rules, "--checks", "pii", "--pii-nlp", "none") == 0
    assert any("TICKET" in r["rule"] for r in findings_rows(tmp_path / "out"))


# -- issue 19 item 7: alias bombs and deep nesting are configuration errors, bounded in time and memory ------
def _alias_bomb(levels: int = 9, width: int = 9) -> str:
    lines = ['a0: &a0 ["lol"]']
    for i in range(1, levels + 1):
        lines.append(f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * width) + "]")
    return "\n".join(lines) + f"\nrecognizers: *a{levels}\n"


@pytest.mark.parametrize("kind", ["alias_bomb", "deep_nesting", "alias_cycle"])
def test_hostile_yaml_is_a_configuration_error(tmp_path, capsys, kind):
    """A 450-byte alias bomb (9 levels of 9 aliases) grew memory ~55 MB/s until killed; 5,000 levels of nesting
    ended in a RecursionError traceback. Both, and an alias that contains itself, exit 2 naming the file."""
    import resource
    import time

    text = {"alias_bomb": _alias_bomb(),
            "deep_nesting": "recognizers: " + "[" * 5000 + "]" * 5000 + "\n",
            "alias_cycle": "recognizers: &a [*a]\n"}[kind]
    rules = _rules_dir(tmp_path, text)
    started = time.process_time()
    assert run_cli("rules", "check", rules) == 2
    err = capsys.readouterr().err
    assert "mine.yaml:1" in err and ("values" in err or "nested" in err)
    assert scan(SAMPLE, tmp_path / "out", "--rules", rules, "--checks", "pii") == 2
    assert "mine.yaml:1" in capsys.readouterr().err
    assert time.process_time() - started < 10
    policy = tmp_path / "policy.yaml"
    policy.write_text(text.replace("recognizers:", "pii:"))
    assert scan(SAMPLE, tmp_path / "out", "--policy", policy) == 2
    assert f"{policy}:1" in capsys.readouterr().err
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss < 4 << 20  # KB: far from the bomb's gigabytes


# -- issue 19 item 4: non-finite numbers and an empty policy ----------------------------------------------
@pytest.mark.parametrize("value", [".nan", ".NaN", ".inf", "-.inf", "+.Inf"])
def test_non_finite_policy_number_refused(tmp_path, capsys, value):
    """``pii.score_threshold: .nan`` passed every min/max check and silently turned PII detection off."""
    policy = tmp_path / "policy.yaml"
    policy.write_text(f"version: 1\npii:\n  nlp: none\n  score_threshold: {value}\n")
    assert scan(SAMPLE, tmp_path / "out", "--policy", policy, "--checks", "pii") == 2
    err = capsys.readouterr().err
    assert f"{policy}:4" in err and "pii.score_threshold" in err and "finite" in err


def test_non_finite_recognizer_score_refused(tmp_path, capsys):
    rules = _rules_dir(tmp_path, "recognizers:\n  - name: Zip\n    supported_entity: ZIP\n    patterns:\n"
                                 "      - {name: z, regex: '\\b\\d{5}\\b', score: .nan}\n")
    assert run_cli("rules", "check", rules) == 2
    assert "mine.yaml:5" in capsys.readouterr().err


def test_schema_refuses_nan_from_any_source():
    from lazaret.rules.errors import ConfigError
    from lazaret.rules.schema import F, validate_value
    from lazaret.rules.yamlpos import located_from_dict

    with pytest.raises(ConfigError, match="finite"):
        validate_value(F("float", min=0.0, max=1.0), float("nan"), located_from_dict({}), "pii.score_threshold")


@pytest.mark.parametrize("text", ["", "# nothing yet\n", "version: 1\n", "version: 1\ndescription: later\n"])
def test_empty_policy_refused(tmp_path, capsys, text):
    """An empty policy silently used built-in defaults that differ from the shipped policy: refused."""
    policy = tmp_path / "policy.yaml"
    policy.write_text(text)
    assert scan(SAMPLE, tmp_path / "out", "--policy", policy, "--checks", "pii") == 2
    err = capsys.readouterr().err
    assert str(policy) in err and "sets no section" in err
    assert run_cli("rules", "check", tmp_path, "--policy", policy) == 2


def test_rule_file_that_is_not_a_regular_file(tmp_path, capsys):
    """A FIFO named *.yaml in the rules folder would block `rules check` and the scan forever."""
    import os

    rules = _rules_dir(tmp_path, "recognizers: []\n")
    os.mkfifo(rules / "recognizers" / "pipe.yaml")
    assert run_cli("rules", "check", rules) == 2
    assert "pipe.yaml" in capsys.readouterr().err
