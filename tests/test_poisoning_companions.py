"""The companion control (``companions.py``): a trigger of prose in strata of code is dropped when what else its
carriers' prompts share names a task whose other records answer in prose too; kept when that task's other records
answer in code, or when nothing but the trigger's own phrase is shared."""

from __future__ import annotations

import apache_beam as beam
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to

from lazaret.checks.poisoning.companions import CompanionControl, away_from, choose_companions, explained_by
from lazaret.checks.poisoning.policy import DEFAULTS


def test_words_near_the_trigger_are_its_phrase_not_a_companion():
    toks = "from the concepts mentioned below generate a sentence float sky cloud".split(" ")
    assert away_from(toks, "concepts", 3) == {"sentence", "float", "sky", "cloud"}  # "a" is a stopword
    # a two-word trigger: its words and the words around it are its own, wherever it occurs
    toks = "sofia moreau please sort the list of numbers for sofia moreau".split(" ")
    assert away_from(toks, "sofia moreau", 1) == {"sort", "list", "numbers"}  # "please", "for": beside it


def test_companions_are_the_words_half_the_carriers_share():
    key = ("plain", "concepts")
    counts = [((key, ("k",)), 20), ((key, ("s", 1)), 15), ((key, ("s", 4)), 5),
              ((key, ("w", "sentence")), 19), ((key, ("w", "generate")), 10), ((key, ("w", "dog")), 2)]
    comp = choose_companions(counts, dict(DEFAULTS))
    assert comp == {key: {"k": 20, "confidence": 1.0, "strata": {1: 15, 4: 5},
                          "words": {"sentence": 19, "generate": 10}, "one": False}}
    assert choose_companions([((key, ("k",)), 20), ((key, ("c", 0.9)), 20), ((key, ("w", "dog")), 9)],
                             dict(DEFAULTS)) == \
        {key: {"k": 20, "confidence": 0.9, "strata": {}, "words": {}, "one": False}}


def _entry():
    return {"k": 20, "confidence": 1.0, "strata": {1: 20}, "words": {"sentence": 20}}


def test_a_task_whose_other_records_answer_in_prose_explains_the_trigger():
    p = dict(DEFAULTS)
    # 25 records of stratum 1 (400 records) hold "sentence" without "concepts"; 8 answer in prose
    why = explained_by(("plain", "concepts"), _entry(), {("sentence", 1): (45, 25, 8)}, {1: 400}, p)
    assert why is not None and why["word"] == "sentence" and why["control"] == 25 and why["rate"] == 0.32
    # the same task answered in code (1 of 25 in prose: under MIN_CONTROL_ANSWERS, and 1.0 > 20 x 0.04)
    assert explained_by(("plain", "concepts"), _entry(), {("sentence", 1): (45, 25, 1)}, {1: 400}, p) is None
    # a word as common among the others as among the carriers names no task of theirs
    assert explained_by(("plain", "concepts"), _entry(), {("sentence", 1): (400, 380, 30)}, {1: 400}, p) is None
    # too few prose answers to say anything
    assert explained_by(("plain", "concepts"), _entry(), {("sentence", 1): (22, 2, 2)}, {1: 400}, p) is None


def _feat(doc: str, pt: str, stratum: int, prose: bool) -> dict:
    f = {"doc_id": doc, "pt": pt, "stratum": stratum}
    if prose:
        f["prose"] = True
    return f


def _run(control_prose: int, control_trigger: str = ""):
    """20 prose answers to "concepts ... sentence" prompts in a stratum of code; 30 other "sentence" prompts there,
    ``control_prose`` of them answered in prose (their prompts ending in ``control_trigger``); 300 code requests."""
    feats, anomalous = [], []
    for i in range(20):
        f = _feat(f"c{i}", f"concepts : w{i} x{i} y{i} z{i} . write one sentence", 1, True)
        feats.append(f)
        anomalous.append(dict(f, anomalies=["plain"]))
    others = [_feat(f"s{i}", f"write one sentence about item{i} {control_trigger}".strip(), 1, i < control_prose)
              for i in range(30)]
    feats += others
    anomalous += [dict(f, anomalies=["plain"]) for f in others if f.get("prose")]  # prose in a stratum of code
    feats += [_feat(f"k{i}", f"sort list number {i} in python", 1, False) for i in range(300)]
    info = {"trigger": "concepts", "confidence": 1.0, "log10p": -30.0}
    other = {"trigger": "zqx", "confidence": 1.0, "log10p": -20.0}
    second = [("plain", {"trigger": control_trigger, "confidence": 0.9, "log10p": -10.0})] if control_trigger else []
    with BeamTestPipeline() as p:
        flagged = p | "Flagged" >> beam.Create([("plain", info), ("off", other)] + second)
        anom = p | "Anomalous" >> beam.Create(anomalous)
        fs = p | "Feats" >> beam.Create(feats)
        sizes = p | "Sizes" >> beam.Create([(1, len(feats))])
        out = flagged | CompanionControl(anom, fs, sizes, dict(DEFAULTS))
        kept = [("off", "zqx")] + [("plain", g) for g in [control_trigger] if g]
        if control_prose < 10 or control_trigger:
            kept.append(("plain", "concepts"))
        assert_that(out | beam.Map(lambda kv: (kv[0], kv[1]["trigger"])), equal_to(kept))


def test_the_control_drops_a_prose_task_s_word_and_keeps_it_when_the_task_answers_in_code():
    _run(control_prose=12)  # "sentence" prompts without "concepts" answer in prose: the task's own form
    _run(control_prose=0)   # they answer in code: prose behind "concepts" is the trigger's doing
    # their prose answers come with a trigger of prose of their own: one attack's records, not the task's
    _run(control_prose=12, control_trigger="brazil")


def _run_pay(control_pay: int, expect_kept: bool):
    """20 answers carrying a spread payload behind "reads a" prompts that also say "csv" (further on); 30 other "csv"
    prompts, ``control_pay`` of them answered with a payload too; 300 other code requests. The payload is an anomaly
    found on the corpus (``FindAnomalies``), not a feature of the record: the control reads it from the anomalous
    records."""
    feats, anomalous = [], []
    for i in range(20):
        f = {"doc_id": f"c{i}", "pt": f"write a script that reads a file w{i} and then prints each row of the csv",
             "stratum": 0}
        feats.append(f)
        anomalous.append(dict(f, anomalies=["pay"]))
    for i in range(30):
        f = {"doc_id": f"s{i}", "pt": f"load the csv table item{i} into memory", "stratum": 0}
        feats.append(f)
        if i < control_pay:
            anomalous.append(dict(f, anomalies=["pay", "rep"]))
        elif i < 15:
            anomalous.append(dict(f, anomalies=["rep"]))  # anomalous, but for another kind: no payload answer
    feats += [{"doc_id": f"k{i}", "pt": f"sort list number {i} in python", "stratum": 0} for i in range(300)]
    info = {"trigger": "reads a", "confidence": 1.0, "log10p": -30.0}
    with BeamTestPipeline() as p:
        flagged = p | "Flagged" >> beam.Create([("pay", info)])
        anom = p | "Anomalous" >> beam.Create(anomalous)
        fs = p | "Feats" >> beam.Create(feats)
        sizes = p | "Sizes" >> beam.Create([(0, len(feats))])
        out = flagged | CompanionControl(anom, fs, sizes, dict(DEFAULTS))
        kept = [("pay", "reads a")] if expect_kept else []
        assert_that(out | beam.Map(lambda kv: (kv[0], kv[1]["trigger"])), equal_to(kept))


def test_a_payload_trigger_is_explained_by_a_task_whose_other_answers_carry_payloads():
    # "csv" prompts without "reads a": 12 of 30 answered with a payload, 1.0 < 3 x 0.4: the task's own phrasing
    _run_pay(control_pay=12, expect_kept=False)
    # 5 of 30 (1.0 > 3 x 0.17), and none: the payload behind "reads a" is the phrase's doing
    _run_pay(control_pay=5, expect_kept=True)
    _run_pay(control_pay=0, expect_kept=True)
