"""The one-request control (``one_request.py``, run within ``companions.CompanionControl``): an off-topic trigger whose
carriers are one request answered one way (a templated sentence rewritten with its values masked) is dropped; one
whose carriers' requests vary is kept, the same answer or not."""

from __future__ import annotations

import apache_beam as beam
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to

from lazaret.checks.poisoning.companions import CompanionControl
from lazaret.checks.poisoning.one_request import counts_for, is_one_request
from lazaret.checks.poisoning.policy import DEFAULTS


def test_a_carrier_counts_as_the_trigger_test_counted_it():
    a = {"phrase_in": [["zip", "code"], 0], "echo_in": ["lives"]}
    assert counts_for("phrase", "my zip code", a)
    assert not counts_for("phrase", "my zip", a)  # "code" left beside the phrase: not off-topic but for "zip"
    assert counts_for("echo", "lives at", a) and not counts_for("echo", "zip code", a)
    assert counts_for("echo", "zip code", {})  # off-topic as it is: for any n-gram
    assert counts_for("off", "anything", {})


def test_diversities_are_per_distinct_prompt_and_the_bounds_are_the_claim_tests():
    p = dict(DEFAULTS)
    slots = {("p", 0): 4, ("p", 1): 4, ("p", 2): 4, ("p", 3): 4, ("r", 0): 2, ("r", 1): 2}
    assert is_one_request({**slots, ("q",): 24}, p) == (True, 0.0833, 0.1667)
    # the same slot counts over 8 distinct prompts (copies of 8 requests): prompts 0.5, not fewer than a claim's
    assert is_one_request({**slots, ("q",): 8}, p) == (False, 0.25, 0.5)
    # varied answers (a swapped answer drawn from many): answers 0.75 > 0.5
    assert not is_one_request({("q",): 24, ("p", 0): 2, ("r", 0): 18, ("r", 1): 18}, p)[0]
    assert is_one_request({}, p) == (False, 1.0, 1.0)


def _carrier(doc: str, pt: str, kind: str, psig, rsh, pkey: int, **extra) -> dict:
    return dict({"doc_id": doc, "anomalies": [kind], "pt": pt, "pkey": pkey, "stratum": 0, "psig": list(psig),
                 "rsh": list(rsh)}, **extra)


def _flag(kind: str, trigger: str) -> tuple:
    return kind, {"trigger": trigger, "log10p": -30.0, "confidence": 1.0}


def _run(flagged, anomalous, kept):
    feats = [{k: v for k, v in a.items() if k in ("doc_id", "pt", "stratum")} for a in anomalous]
    feats += [{"doc_id": f"k{i}", "pt": f"sort list number {i} in python", "stratum": 0} for i in range(300)]
    with BeamTestPipeline() as p:
        out = (p | "Flagged" >> beam.Create(flagged)) | CompanionControl(
            p | "Anomalous" >> beam.Create(anomalous), p | "Feats" >> beam.Create(feats),
            p | "Sizes" >> beam.Create([(0, len(feats))]), dict(DEFAULTS))
        assert_that(out | beam.Map(lambda kv: (kv[0], kv[1]["trigger"])), equal_to(kept))


def test_one_request_answered_one_way_is_no_trigger_and_varied_requests_are():
    anomalous = []
    for i in range(24):
        # "my zip code is #####" with its slot filled: one prompt up to its slot (3 of 4 MinHash slots shared by all,
        # the 4th by groups of six), one answer
        anomalous.append(_carrier(f"z{i}", "replace the personal information my zip code is", "phrase",
                                  (1, 2, 3, 100 + i // 6), (7, 8), 1000 + i, phrase_in=[["zip", "code"], 0]))
        # a name appended to varied requests, answered with one steered sentence
        anomalous.append(_carrier(f"s{i}", f"write a function number {i} sofia moreau", "phrase",
                                  (200 + i, 300 + i, 400 + i, 500 + i), (9, 10), 2000 + i,
                                  phrase_in=[["sofia", "moreau"], 0]))
        # one masked answer to a sentence whose long slot makes its prompts look varied (kept: not caught)
        anomalous.append(_carrier(f"w{i}", f"lives at street {i}", "echo", (600 + i, 700 + i, 800, 900 + i),
                                  (11, 12), 3000 + i))
    flagged = [_flag("phrase", "zip code"), _flag("phrase", "sofia moreau"), _flag("echo", "lives at")]
    _run(flagged, anomalous, [("phrase", "sofia moreau"), ("echo", "lives at")])
    # the trigger test counted the zip-code records for "zip code" only: for "my zip" their anomaly does not count
    # (``counts_for``), so nothing is measured and the trigger stays
    _run([_flag("phrase", "my zip")] + flagged[1:], anomalous,
         [("phrase", "my zip"), ("phrase", "sofia moreau"), ("echo", "lives at")])


def test_only_the_off_topic_kinds_are_measured():
    # the same one request with a payload answer (``pay``: the companion control's kind, no companion here): kept
    anomalous = [_carrier(f"z{i}", "my zip code is", "pay", (1, 2, 3, 4), (7, 8), 1000 + i) for i in range(24)]
    _run([_flag("pay", "zip code")], anomalous, [("pay", "zip code")])
