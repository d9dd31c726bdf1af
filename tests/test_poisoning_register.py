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
