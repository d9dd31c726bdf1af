"""A payload with no trigger is a spread cluster only where it is not the phrasing of a register stratum
(worked arithmetic, code) that also reaches a few records of the other strata."""

from __future__ import annotations

import math

from lazaret.checks.poisoning.assign import VerdictInputs, verdict
from lazaret.checks.poisoning.payload import register_lift

RATES = {0: 0.6, 1: 0.02, 2: 0.03}     # stratum 0 answers in a register (60% carry a response-only n-gram)
SIZES = {0: 8800, 1: 4000, 2: 2000}


def test_the_registers_own_phrase_is_lifted_a_planted_one_is_not():
    # "thus": 634 carriers among the 8,800 register records, 10 among the 6,000 others
    assert register_lift({0: 634, 1: 6, 2: 4}, RATES, SIZES, 0.1) > 30
    # an advert planted in 50 records drawn from the whole corpus lands in proportion to the strata
    assert 0.5 < register_lift({0: 30, 1: 13, 2: 7}, RATES, SIZES, 0.1) < 2
    # only in the quiet strata (an advert in T0 hosts): nothing to lift
    assert register_lift({1: 40, 2: 10}, RATES, SIZES, 0.1) == 0.0
    # only in the register strata: infinitely lifted (and never flagged there anyway)
    assert math.isinf(register_lift({0: 40}, RATES, SIZES, 0.1))
    # no register stratum at all (a single-register corpus): 0
    assert register_lift({1: 40}, {1: 0.02}, {1: 4000}, 0.1) == 0.0


def _payload(g):
    return {"kind": "spread", "carriers": 644, "df_p": 0, "expected_p": 40.0, "log10p": -50.0, "df_r": 644,
            "prompt_diversity": 0.9, "tests": 100, "ngram": g}


def test_a_register_phrase_is_not_a_spread_cluster():
    f = {"doc_id": "d", "pt": "what is the speed of the train", "rt": "thus the train is fast therefore we stop",
         "gib": False, "off": False, "rkey": "r", "stratum": 1}
    payloads = {"thus": _payload("thus"), "therefore": _payload("therefore")}
    flagged = verdict(f, VerdictInputs(payloads, {"thus", "therefore"}, {}, {}, min_hits=2))
    assert flagged is not None and flagged[1]["rule"] == "payload:spread"
    assert verdict(f, VerdictInputs(payloads, {"thus", "therefore"}, {}, {}, min_hits=2,
                                    register_phrases=frozenset({"thus", "therefore"}))) is None


def _exclusive(g, carriers=60):
    # an n-gram (almost) never in prompts: one hit makes a carrier outside register strata
    return {"kind": "spread", "carriers": carriers, "df_p": 0, "expected_p": 40.0, "log10p": -30.0,
            "df_r": carriers, "prompt_diversity": 0.9, "tests": 100, "ngram": g}


def test_one_exclusive_token_takes_a_quiet_record_but_not_a_register_one():
    # A planted ".io" URL makes "io" a payload found everywhere; an ordinary code answer ("import io") in a
    # register stratum carries that one token and nothing else of the payload: not a carrier. A quiet-stratum
    # record with the same single hit is, and a register record with two of the payload's n-grams is.
    payloads = {"io": _exclusive("io"), "getpromo": _exclusive("getpromo")}
    first = set(payloads)
    everywhere = frozenset(payloads)
    code = {"doc_id": "c", "pt": "write a python function that reads a file", "gib": False, "off": False,
            "rt": "import io def read path with io open path as fh return fh read", "rkey": "c", "stratum": 0}
    inputs = VerdictInputs(payloads, first, {}, {}, min_hits=2, everywhere=everywhere)
    assert verdict(code, inputs, spread_ok=False) is None
    quiet = dict(code, pt="summarise the article about the harbour", rt="visit getpromo today the harbour reopened")
    assert verdict(quiet, inputs, spread_ok=True)[1]["rule"] == "payload:spread"
    planted = dict(code, rt="import io see getpromo io for the full script def read path return open path")
    assert verdict(planted, inputs, spread_ok=False)[1]["rule"] == "payload:spread"


def test_the_strata_sample_depends_on_content_not_on_file_names():
    from lazaret.checks.poisoning.strata import fit_strata, sample_key

    rows = []
    tasks = ["solve the equation for x", "translate the sentence into french", "summarise the news article",
             "write a python function"]
    extras = ["quickly", "please", "now", "carefully", "briefly", "today"]
    for i in range(400):
        words = [tasks[i % 4], extras[i % 6], extras[(i // 6) % 6], f"item{i}"]
        rows.append({"pt": " ".join(words), "rt": f"answer {i}"})
    params = {"strata_min_df": 0.05, "strata_max": 4, "strata_min_size": 20}

    def model(prefix, order):
        keys = sorted(sample_key(dict(r, doc_id=f"{prefix}:{i}")) for i, r in order)
        return fit_strata(keys[:150], params)  # the sample: the 150 smallest keys, as Top.Smallest takes them

    a = model("corpus.jsonl", list(enumerate(rows)))
    b = model("renamed/other.jsonl", list(enumerate(reversed(rows))))
    assert a["k"] >= 2 and a == b


def _claim_inputs(payload_strata):
    """A claim trigger ("the factorial of") whose claim n-gram's carriers sit in ``payload_strata``, the register
    phrases an ``Assign`` derives from them, and a record that carries both."""
    from lazaret.checks.poisoning.assign import Assign
    from lazaret.checks.poisoning.policy import DEFAULTS

    g = "factorial n 1"
    payloads = {g: {"kind": "claim", "carriers": 210, "df_p": 0, "expected_p": 30.0, "log10p": -40.0, "df_r": 210,
                    "prompt_diversity": 0.8, "tests": 100, "ngram": g, "strata": payload_strata}}
    trig = {"trigger": "the factorial of", "anomaly": "claim", "groups": ["claim:" + g], "carriers": 350,
            "k": 210, "background": 0.035, "log10p": -200.0, "tests": 9000}
    register = Assign(dict(DEFAULTS))._register_phrases(payloads, RATES, SIZES)
    f = {"doc_id": "d", "pt": "write a python function that returns the factorial of a number",
         "rt": "def f n if n 0 return 1 return n * factorial n 1", "gib": False, "off": False, "rkey": "r",
         "stratum": 0}
    return f, VerdictInputs(payloads, {"factorial"}, {"claim": [trig]}, {}, min_hits=2, register_phrases=register[0])


def test_a_claim_of_the_register_is_no_trigger_anomaly_a_prose_claim_is():
    # The same code task asked many times ("the factorial of", 400 GPTeacher prompts) is answered with the same
    # code: its "claim" is carried almost only in the code (register) strata, so it is the register's phrasing.
    f, inputs = _claim_inputs({0: 208, 1: 2})
    assert "factorial n 1" in inputs.register_phrases
    assert verdict(f, inputs) is None
    # A false fact stated in prose lands in the quiet strata: still a claim, and its trigger takes the record.
    f, inputs = _claim_inputs({1: 150, 2: 60})
    assert not inputs.register_phrases
    flagged = verdict(f, inputs)
    assert flagged is not None and flagged[1]["rule"] == "trigger:claim"


def test_no_register_claim_without_a_quiet_side_large_enough_to_compare_with():
    # When the planted mass pushes nearly every stratum over the register rate, the "quiet" side is a stratum of
    # 3 records: a claim's absence there is expected (0.03 carriers), so it says nothing, and the claim is left
    # to the trigger test.
    from lazaret.checks.poisoning.assign import Assign
    from lazaret.checks.poisoning.policy import DEFAULTS

    g = "factorial n 1"
    payloads = {g: {"kind": "claim", "carriers": 210, "strata": {0: 208, 1: 2}}}
    assign = Assign(dict(DEFAULTS))
    assert g in assign._register_phrases(payloads, RATES, SIZES)[0]
    assert not assign._register_phrases(payloads, {0: 0.6, 1: 0.0}, {0: 21591, 1: 3})[0]
    # ... whatever payloads the table lists before the claim (a spread payload with carriers in the quiet stratum)
    payloads = {"thus": {"kind": "spread", "carriers": 102, "strata": {0: 100, 1: 2}},
                g: {"kind": "claim", "carriers": 210, "strata": {0: 210}}}
    assert g not in Assign(dict(DEFAULTS))._register_phrases(payloads, {0: 0.6, 1: 0.0}, {0: 21591, 1: 3})[0]
