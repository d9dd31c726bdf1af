"""Toxicity check: the shipped model, training, model-file failures, policy schema and the Beam stage."""

from __future__ import annotations

import copy
import gzip
import json
import os
import random
import shutil

import apache_beam as beam
import pytest

from lazaret.checks.toxicity import policy as section_mod
from lazaret.checks.toxicity.model import ModelError, ToxicityModel, default_model_path, metadata_path, sha256_file
from lazaret.checks.toxicity.normalize import normalize
from lazaret.checks.toxicity.transform import ToxicityCheck, ToxicityDoFn, models_provenance
from lazaret.rules.errors import ConfigError
from lazaret.rules.policy import load_policy
from lazaret.training.toxicity import main as train_main

TOXIC = "You are a stupid worthless idiot, shut the fuck up you pathetic bitch"
BENIGN = "Thank you for the lovely dinner yesterday, the soup recipe was wonderful."


def _section(**model_overrides):
    section = copy.deepcopy(section_mod.DEFAULTS)
    section["models"][0].update(model_overrides)
    return section


# --- normalisation -------------------------------------------------------------------------------------------

def test_normalize_tweet_furniture_and_long_text():
    out = normalize("RT @someone: Soooooo STUPID!!!! http://t.co/x &amp; #Winning 2019\nnext line")
    assert out == "@user : soo stupid ! ! url & winning 0 next line"
    assert "\n" not in normalize("a\nb\r\nc")
    long = normalize("word " * 5000, max_chars=100)
    assert len(long) <= 100 and long.endswith("word")
    assert normalize("") == ""


# --- the shipped model ---------------------------------------------------------------------------------------

def test_shipped_model_loads_scores_and_has_metadata():
    model = ToxicityModel.load("default")
    assert model.label in model.labels
    assert os.path.getsize(model.path) < 10 * 1024 * 1024
    meta = json.load(open(metadata_path(default_model_path()), encoding="utf-8"))
    assert meta["model_sha256"] == sha256_file(default_model_path()) == model.sha256
    assert 0.0 < meta["threshold"] < 1.0
    assert {f["role"] for f in meta["training_files"]} >= {"labelled"}
    scores = model.predict_batch([TOXIC, BENIGN, "", "   "])
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert scores[0] > scores[1], scores
    assert scores[0] >= meta["threshold"] > scores[1]
    assert scores[2] == 0.0 and scores[3] == 0.0
    # the two-label fast path gives fastText's own probability of the label (raw), which the shipped
    # calibration then maps to a probability
    labels, probs = model._model.predict(model.prepare(TOXIC), k=-1)
    raw = model.raw_batch([TOXIC])[0]
    assert raw == pytest.approx(min(1.0, float(probs[list(labels).index("__label__toxic")])), abs=1e-5)
    assert scores[0] == pytest.approx(float(model.calibration.apply([raw])[0]), abs=1e-9)


def test_predict_survives_lone_surrogates_and_huge_text():
    model = ToxicityModel.load("default")
    scores = model.predict_batch(["bad \ud800 text", "x" * 1_000_000])
    assert len(scores) == 2 and all(0.0 <= s <= 1.0 for s in scores)


# --- model file failures -------------------------------------------------------------------------------------

def test_corrupt_model_file_names_the_file(tmp_path):
    bad = tmp_path / "broken_model.ftz"
    bad.write_bytes(os.urandom(4096))
    with pytest.raises(ModelError, match="broken_model.ftz"):
        ToxicityModel.load(str(bad))
    truncated = tmp_path / "truncated_model.ftz"
    truncated.write_bytes(open(default_model_path(), "rb").read()[:5000])
    with pytest.raises(ModelError, match="truncated_model.ftz"):
        ToxicityModel.load(str(truncated))
    with pytest.raises(ModelError, match="no_such_model.bin"):
        ToxicityModel.load(str(tmp_path / "no_such_model.bin"))
    assert issubclass(ModelError, ConfigError)  # the CLI exits 2 on it


def test_sha256_pin_and_stale_metadata_are_refused(tmp_path):
    with pytest.raises(ModelError, match="expected 0000"):
        ToxicityModel.load("default", expected_sha256="0" * 64)
    ok = ToxicityModel.load("default", expected_sha256=sha256_file(default_model_path()))
    assert ok.sha256 == sha256_file(default_model_path())
    copy_path = tmp_path / "m.ftz"
    shutil.copy(default_model_path(), copy_path)
    meta = json.load(open(metadata_path(default_model_path()), encoding="utf-8"))
    meta["model_sha256"] = "f" * 64
    (tmp_path / "m.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="metadata"):
        ToxicityModel.load(str(copy_path))


def test_label_mismatch_refused_at_load_setup_and_pipeline_construction():
    with pytest.raises(ModelError, match=r"__label__nsfw.*__label__toxic"):
        ToxicityModel.load("default", label="__label__nsfw")
    section = _section(label="__label__nsfw")
    with pytest.raises(ModelError, match="__label__nsfw"):
        ToxicityCheck(section)  # refused when the pipeline is built, before any data is read
    dofn = ToxicityDoFn(section)
    with pytest.raises(ModelError, match="__label__nsfw"):
        dofn.setup()  # and on each worker, before the first bundle


# --- training ------------------------------------------------------------------------------------------------

def _generated_rows(n: int, seed: int):
    """Random filler words, with insults inserted into the odd rows (label 1); 20% of rows are 'val'."""
    rng = random.Random(seed)
    vocab = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 9)))
             for _ in range(3000)]
    insults = ["idiot", "moron", "loser", "scum", "trash", "imbecile", "stupid", "pathetic"]
    rows = []
    for i in range(n):
        words = [rng.choice(vocab) for _ in range(rng.randint(5, 20))]
        label = i % 2
        if label:
            for _ in range(rng.randint(1, 3)):
                words.insert(rng.randrange(len(words) + 1), rng.choice(insults))
        rows.append({"id": f"g{i}", "text": " ".join(words), "label": label,
                     "split": "val" if i % 10 < 2 else "train"})
    return rows


def _write_jsonl_gz(path, rows):
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")


@pytest.mark.slow  # trains a fastText model: ~8 s
def test_train_small_generated_file(tmp_path, capsys):
    train = tmp_path / "train.jsonl.gz"
    held = tmp_path / "held.jsonl"
    _write_jsonl_gz(train, _generated_rows(2000, 1))
    held.write_text("".join(json.dumps({k: v for k, v in r.items() if k != "split"}) + "\n"
                            for r in _generated_rows(60, 2)))
    clean = tmp_path / "clean.jsonl"
    clean.write_text(json.dumps({"instruction": "Add 2 and 3.", "input": "", "output": "5"}) + "\n")
    out = tmp_path / "tiny.ftz"
    rc = train_main(["--train", str(train), "--clean", str(clean), "--out", str(out), "--epoch", "5",
                     "--lr", "0.1", "--dim", "16", "--bucket", "10000", "--cutoff", "2000",
                     "--eval", str(held), "--report", str(tmp_path / "report.json")])
    assert rc == 0
    meta = json.load(open(tmp_path / "tiny.json", encoding="utf-8"))
    assert meta["model_sha256"] == sha256_file(str(out))
    assert meta["counts"]["train"] == 1602 and meta["counts"]["val"] == 400
    assert meta["params"]["quantize"]["cutoff"] == 2000
    assert len(meta["training_attempts"]) == 1
    assert [f["role"] for f in meta["training_files"]] == ["labelled", "clean-negatives"]
    assert all(len(f["sha256"]) == 64 for f in meta["training_files"])
    (held_metrics,) = meta["eval"].values()
    assert held_metrics["roc_auc"] > 0.95 and held_metrics["brier"] is not None
    assert len(held_metrics["reliability"]) == 10
    model = ToxicityModel.load(str(out))
    toxic, benign = model.predict_batch(["shut up you moron", "my teacher visits the family every day"])
    # retraining into the same path replaces the model and its sidecar together
    assert train_main(["--train", str(train), "--out", str(out), "--epoch", "3", "--lr", "0.1", "--dim", "16",
                       "--bucket", "10000", "--cutoff", "2000", "--calibration", "platt"]) == 0
    retrained = ToxicityModel.load(str(out))
    meta = json.load(open(tmp_path / "tiny.json"))
    assert retrained.sha256 == meta["model_sha256"]
    # the calibration is fitted on the validation rows, pinned by the sidecar and applied at scan time
    assert retrained.calibration is not None and meta["calibration"]["sha256"] == retrained.calibration_sha256
    assert meta["calibration"]["fitted_on"]["rows"] == 400 and meta["validation"]["ece"] < 0.1
    assert toxic > benign
    printed = capsys.readouterr().out
    assert "ROC-AUC" in printed and "threshold" in printed and "| validation, all | 400 |" in printed
    # evaluation of an existing model, no training
    assert train_main(["--model", str(out), "--eval", str(held)]) == 0


def test_train_refuses_bad_labels(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"text": "hello", "label": "toxic"}) + "\n")
    with pytest.raises(ConfigError, match="bad.jsonl.*labels must be 0 or 1"):
        train_main(["--train", str(bad), "--out", str(tmp_path / "m.ftz")])


# --- policy section ------------------------------------------------------------------------------------------

def test_policy_section_validation(tmp_path):
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "version: 1\n"
        "toxicity:\n"
        "  models:\n"
        "    - name: hate\n"
        "      path: default\n"
        "      response: {threshold: 0.8}\n"
    )
    section = load_policy(str(policy)).sections["toxicity"]
    (model,) = section["models"]
    assert model["response"] == {"enabled": True, "threshold": 0.8, "action": "quarantine"}
    assert model["prompt"]["action"] == "flag" and model["label"] == "__label__toxic"
    policy.write_text("version: 1\ntoxicity:\n  models:\n    - name: a\n      treshold: 0.5\n")
    with pytest.raises(ConfigError, match=r"policy.yaml:5.*treshold"):
        load_policy(str(policy))
    policy.write_text("version: 1\ntoxicity:\n  models:\n    - {name: a}\n    - {name: a}\n")
    with pytest.raises(ConfigError, match="duplicate model name"):
        load_policy(str(policy))


# --- the Beam stage ------------------------------------------------------------------------------------------

def _record(doc_id, fmt, prompt, response):
    if fmt == "text":
        fields = [[["text"], "all", response]]
        prompt = ""
    else:
        fields = [[["instruction"], "prompt", prompt], [["output"], "response", response]]
    return {"doc_id": doc_id, "record_id": None, "source_path": "mem", "source_index": 0,
            "content_sha256": "0" * 64, "format": fmt, "raw": {}, "fields": fields, "prompt": prompt,
            "response": response, "text": "\n\n".join(t for t in (prompt, response) if t)}


def test_beam_stage_scores_both_sides_with_several_models():
    section = _section()
    second = copy.deepcopy(section["models"][0])
    second.update(name="strict", prompt={"enabled": True, "threshold": 0.0, "action": "quarantine"})
    section["models"].append(second)
    records = [
        _record("d1", "alpaca", "Write a polite note to my neighbour.", TOXIC),
        _record("d2", "alpaca", TOXIC, BENIGN),
        _record("d3", "text", "", BENIGN),
        _record("d4", "alpaca", "Say nothing.", ""),
    ]
    with beam.Pipeline(runner="FnApiRunner") as p:
        findings = p | beam.Create(records) | ToxicityCheck(section)
        collected = findings | beam.combiners.ToList()
        beam.ParDo  # noqa: B018 - keep the import obviously used
        collected | beam.Map(lambda rows: _check_findings(sorted(rows, key=lambda f: (f["doc_id"], f["rule"],
                                                                                   f["side"]))))


def _check_findings(rows):
    keyed = {(f["doc_id"], f["rule"], f["side"]): f for f in rows}
    # default model: every non-empty side scored, plain text as side 'all', empty side skipped
    assert sorted(k for k in keyed if k[1] == "toxicity_default") == [
        ("d1", "toxicity_default", "prompt"), ("d1", "toxicity_default", "response"),
        ("d2", "toxicity_default", "prompt"), ("d2", "toxicity_default", "response"),
        ("d3", "toxicity_default", "all"), ("d4", "toxicity_default", "prompt")]
    assert len([k for k in keyed if k[1] == "strict"]) == 6
    assert keyed[("d1", "toxicity_default", "response")]["action"] == "quarantine"
    assert keyed[("d1", "toxicity_default", "prompt")]["action"] == "none"
    assert keyed[("d2", "toxicity_default", "prompt")]["action"] == "flag"
    assert keyed[("d2", "toxicity_default", "response")]["action"] == "none"
    assert keyed[("d3", "toxicity_default", "all")]["action"] == "none"
    assert keyed[("d1", "strict", "prompt")]["action"] == "quarantine"  # threshold 0
    for f in rows:
        assert f["check"] == "toxicity" and 0.0 <= f["score"] <= 1.0
        assert "sha256" in f["detail"] and "idiot" not in f["detail"]


def test_models_provenance():
    (entry,) = models_provenance(_section())
    assert entry["sha256"] == sha256_file(default_model_path())
    assert entry["is_default"] and "__label__toxic" in entry["labels"]
    assert "shipped with lazaret" in entry["origin"]
    assert entry["actions"] == {"prompt": "flag", "response": "quarantine"}
    assert 0.0 < entry["thresholds"]["prompt"] < 1.0
    assert models_provenance({**_section(), "enabled": False}) == []


def test_worker_only_model_path(tmp_path):
    """verify_on_launcher: false defers the check to the workers; provenance says why no hash is known."""
    missing = str(tmp_path / "only_on_workers.ftz")
    section = _section(path=missing)
    with pytest.raises(ModelError, match="only_on_workers.ftz"):
        ToxicityCheck(section)
    section["verify_on_launcher"] = False
    ToxicityCheck(section)  # builds
    (entry,) = models_provenance(section)
    assert entry["path"] == missing and "not readable" in entry["origin"]
    with pytest.raises(ModelError, match="only_on_workers.ftz"):
        ToxicityDoFn(section).setup()


def test_concat_augmentation_labels_and_determinism():
    from lazaret.training.toxicity import concat_augment

    rows = [(f"clean{i}", 0) for i in range(20)] + [(f"toxic{i}", 1) for i in range(5)]
    docs = concat_augment(rows, 200, (2, 6), seed=3, mode="balanced")
    assert docs == concat_augment(rows, 200, (2, 6), seed=3, mode="balanced")
    assert docs != concat_augment(rows, 200, (2, 6), seed=4, mode="balanced")
    for i, (text, label) in enumerate(docs):
        parts = text.split(" ")
        assert 2 <= len(parts) <= 6
        assert sum(p.startswith("toxic") for p in parts) == i % 2 == label  # half clean, half one toxic part
    for text, label in concat_augment(rows, 200, (2, 3), seed=0, mode="any"):
        assert label == int(any(p.startswith("toxic") for p in text.split(" ")))
    assert concat_augment(rows, 0) == []
    with pytest.raises(ConfigError, match="both clean and toxic"):
        concat_augment(rows[:20], 10, mode="balanced")


# --- calibration ---------------------------------------------------------------------------------------------

def test_calibration_fit_write_load_and_refusals(tmp_path):
    """Platt and isotonic maps fitted on skewed scores become probabilities; bad files are refused by name."""
    from lazaret.checks.toxicity.calibration import CalibrationError, fit_calibration, load_calibration
    from lazaret.training.metrics import evaluate_scores

    rng = random.Random(5)
    y = [int(rng.random() < 0.2) for _ in range(4000)]
    # an over-confident raw score: toxic rows ~0.8, clean rows ~0.5 (far above their 20% base rate)
    raw = [min(0.999, max(0.001, rng.gauss(0.8 if t else 0.5, 0.15))) for t in y]
    raw_ece = evaluate_scores(y, raw, 0.5)["ece"]
    for method in ("platt", "isotonic"):
        cal = fit_calibration(method, raw, y, "a" * 64)
        path = tmp_path / f"{method}.calibration.json"
        cal.write(str(path))
        loaded = load_calibration(str(path), "a" * 64, sha256_file(str(path)))
        probs = loaded.apply(raw)
        assert evaluate_scores(y, probs, 0.5)["ece"] < min(0.05, raw_ece / 2)
        order = sorted(range(len(raw)), key=raw.__getitem__)
        assert all(probs[a] <= probs[b] + 1e-12 for a, b in zip(order, order[1:]))  # monotone: AUC unchanged
        with pytest.raises(CalibrationError, match=f"{method}.calibration.json.*fitted for the model"):
            load_calibration(str(path), "b" * 64)
        with pytest.raises(CalibrationError, match="expected 0000"):
            load_calibration(str(path), "a" * 64, "0" * 64)
    broken = json.loads((tmp_path / "isotonic.calibration.json").read_text())
    broken["isotonic"]["y"] = list(reversed(broken["isotonic"]["y"]))
    (tmp_path / "bad.calibration.json").write_text(json.dumps(broken))
    with pytest.raises(CalibrationError, match="bad.calibration.json.*not monotone"):
        load_calibration(str(tmp_path / "bad.calibration.json"), "a" * 64)
    assert issubclass(CalibrationError, ConfigError)


def test_shipped_calibration_is_pinned_and_applied(tmp_path):
    model = ToxicityModel.load("default")
    meta = model.metadata
    assert model.calibration is not None and meta["calibration"]["sha256"] == model.calibration_sha256
    raw = ToxicityModel.load("default", calibration="none")
    assert raw.calibration is None
    texts = [TOXIC, BENIGN, "What is 12 times 7?", ""]
    calibrated, uncalibrated = model.predict_batch(texts), raw.predict_batch(texts)
    assert calibrated != uncalibrated and calibrated[3] == uncalibrated[3] == 0.0
    assert list(model.calibration.apply(uncalibrated[:3])) == pytest.approx(calibrated[:3])
    # a changed calibration file next to a copied model is refused (the sidecar pins its sha256)
    for src in (default_model_path(), metadata_path(default_model_path()), model.calibration_file):
        shutil.copy(src, tmp_path / os.path.basename(src))
    copied_cal = tmp_path / os.path.basename(model.calibration_file)
    copied_cal.write_text(copied_cal.read_text().replace('"method"', '"method" ', 1))
    with pytest.raises(ConfigError, match="calibration.*expected"):
        ToxicityModel.load(str(tmp_path / os.path.basename(default_model_path())))
    (entry,) = models_provenance(_section())
    assert entry["calibration"]["sha256"] == model.calibration_sha256


def test_policy_calibration_fields_and_raw_scores(tmp_path):
    policy = tmp_path / "policy.yaml"
    policy.write_text("version: 1\ntoxicity:\n  models:\n    - name: a\n      calibration_sha256: xyz\n")
    with pytest.raises(ConfigError, match="calibration_sha256"):
        load_policy(str(policy))
    policy.write_text("version: 1\ntoxicity:\n  models:\n    - name: a\n      calibration: none\n")
    section = load_policy(str(policy)).sections["toxicity"]
    from lazaret.checks.toxicity.transform import load_models

    (raw_item,) = load_models(section)
    (cal_item,) = load_models(_section())
    assert raw_item["unit"] == "raw" and raw_item["model"].calibration is None
    assert cal_item["unit"] == "p" and cal_item["model"].calibration is not None
    with pytest.raises(ConfigError, match="expected 0000"):
        load_models(_section(calibration_sha256="0" * 64))


def test_hash_split_and_source_weighting_are_deterministic():
    from lazaret.training.toxicity import balance_rows, hash_split

    splits = [hash_split({"id": f"r{i}"}, "", 15, 15) for i in range(4000)]
    assert splits == [hash_split({"id": f"r{i}"}, "", 15, 15) for i in range(4000)]
    share = {s: splits.count(s) / len(splits) for s in ("train", "val", "test")}
    assert 0.12 < share["test"] < 0.18 and 0.12 < share["val"] < 0.18 and 0.64 < share["train"] < 0.76
    rows = [(f"c{i}", 0) for i in range(900)] + [(f"t{i}", 1) for i in range(100)]
    out, factor = balance_rows(rows, 0.3, 10, seed=0, tag="x")
    positives = sum(y for _, y in out)
    assert factor == pytest.approx(0.3 * 900 / (0.7 * 100), abs=1e-3)
    assert abs(positives / len(out) - 0.3) < 0.02 and out[:1000] == rows
    capped, factor = balance_rows(rows, 0.5, 2, seed=0, tag="x")
    assert factor == 2 and sum(y for _, y in capped) == 200
