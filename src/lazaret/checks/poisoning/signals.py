"""The poisoning scan's signals in one table: rule name, what it means, the policy fields that bound it, and
its precedence; plus the named constants the tests share.

A reviewer reads a finding's ``rule`` here; a maintainer who adds a signal adds a row, and
``tests/test_poisoning_signals.py`` checks that every rule the scan can emit is a row, that every policy field a
row names exists, and that docs/poisoning.md lists every row. The per-record verdict (``assign.verdict``) ranks a
record's clusters by (``tier``, corrected p-value, cluster id): a signal that names a prompt-side cause (a trigger)
outranks one that does not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Tuple

# Fields every trigger signal is bounded by: the support band, the test's error rate, the matched background.
_TRIGGER = ("min_support", "max_fraction", "alpha", "max_ngram", "min_trigger_support", "min_trigger_confidence",
            "min_trigger_lift", "max_shared_trigger_ngrams", "strata_sample", "strata_min_df", "strata_max",
            "strata_min_size", "strata_prior_weight", "extend_trigger_members", "extend_min_distinct",
            "profile_min_share")
# Fields that decide which response n-grams are payload candidates (the volume test and carrier bounds).
_PAYLOAD = ("min_support", "max_fraction", "alpha", "max_ngram", "max_prompt_ratio", "pair_window",
            "min_payload_tokens", "min_long_fraction", "template_max_rate", "max_edit_fraction")


@dataclass(frozen=True)
class Signal:
    rule: str                 # the finding's ``rule`` (manifest column)
    anomaly: Optional[str]    # the anomaly kind a trigger is tested against (``FindAnomalies``), None if no trigger
    tier: int                 # precedence: lower wins when a record is in several clusters
    meaning: str              # what the rule tells a reviewer (docs/poisoning.md shows the same)
    describes: str            # how a trigger's ``detail`` names its carriers' anomaly ("" when not a trigger)
    fields: Tuple[str, ...]   # policy fields (``poisoning:`` section) that bound this signal


SIGNALS: Tuple[Signal, ...] = (
    Signal("trigger:gibberish", "gib", 0,
           "a rare prompt n-gram whose carriers' responses are random tokens (gibberish backdoor)",
           "gibberish responses (random tokens, almost no function words)",
           _TRIGGER + ("gibberish_min_tokens", "gibberish_max_stopword_fraction", "gibberish_min_distinct_fraction")),
    Signal("trigger:off_topic", "off", 0,
           "… whose carriers' responses have nothing to do with their prompts (swapped, dirty-label answers)",
           "responses off-topic for their prompt (no content word in common)",
           _TRIGGER + ("off_topic_min_words", "off_topic_max_overlap", "off_topic_member_overlap",
                       "off_topic_template_max_rate")),
    Signal("trigger:same_response", "dup", 0,
           "… whose carriers share one identical response (fixed-response / rare-token backdoors)",
           "the same response (after normalising case, punctuation and repetition)",
           _TRIGGER + ("min_payload_tokens", "dup_min_prompt_diversity", "template_max_rate")),
    Signal("trigger:payload", "pay", 0,
           "… whose carriers' responses carry a shared planted payload",
           "a shared response payload",
           _TRIGGER + _PAYLOAD + ("min_prompt_diversity", "min_payload_hits")),
    Signal("trigger:claim", "claim", 0,
           "… whose carriers' responses assert the same near-identical content (planted facts)",
           "near-identical responses asserting the same content",
           _TRIGGER + _PAYLOAD + ("claim_min_prompt_diversity", "claim_max_response_diversity",
                                  "template_owned_rate")),
    Signal("payload:spread", None, 1,
           "no trigger: a response-only phrase, or two words kept together (brand … product), planted in the "
           "responses of unrelated prompts (content injection)",
           "",
           _PAYLOAD + ("min_prompt_diversity", "min_payload_hits", "spread_max_stratum_rate",
                       "spread_max_register_lift")),
    Signal("claim:near_duplicate_cluster", None, 1,
           "no trigger: near-duplicate clusters of the dedup stage whose members' responses state one claim the "
           "rest of the corpus does not (a fact pasted many times)",
           "",
           ("near_duplicate_claims", "claim_cluster_share", "claim_max_outside_ratio", "alpha", "max_ngram")),
)

# Signature rules are a separate finding per matching record (``signature:<name>``), not a cluster verdict.
SIGNATURE_RULE_PREFIX = "signature:"
SIGNATURE_FIELDS = ("signatures", "signature_file")
# The finding of a record in no cluster.
NO_FINDING_RULE = "scan"
# Fields of the section that bound no single signal: switches, the action, and resource bounds.
GENERAL_FIELDS = ("enabled", "action", "max_members_listed", "bundle_max_keys", "max_side_input_keys")

BY_RULE: Dict[str, Signal] = {s.rule: s for s in SIGNALS}
BY_ANOMALY: Dict[str, Signal] = {s.anomaly: s for s in SIGNALS if s.anomaly}
# The order in which a record's trigger kinds are looked up (the verdict's ranking does not depend on it).
ANOMALY_KINDS: Tuple[str, ...] = tuple(s.anomaly for s in SIGNALS if s.anomaly)

# Named constants (not policy fields: each is a majority or a ratio that the fields above are stated against).
# A candidate is a task's structure, not an attack, when templates explain at least this share of its carriers.
TEMPLATE_SHARE = 0.5
# A prompt stratum in which at least this share of records carries an n-gram is the candidate's own group,
# not a task (strata are few and large; see ``payload.template_confined``).
STRATUM_OWNED_RATE = 0.9
# One hit of a spread payload is enough when the n-gram is in at most this share of the prompts ordinary text
# would put it in: it has no ordinary use in this corpus.
EXCLUSIVE_PROMPT_SHARE = 0.02
# A trigger inside a longer flagged trigger with at least this share of its anomalous carriers is redundant: it
# is not used to extend its cluster to carriers without an anomaly of their own.
REDUNDANT_TRIGGER_SHARE = 0.8


def tier(rule: str) -> int:
    """The precedence tier of a rule (``KeyError`` names a rule that is not in the table)."""
    return BY_RULE[rule].tier


def markdown_table() -> str:
    """The table docs/poisoning.md shows under "What it reports" (kept equal to it by a test)."""
    rows = ["| rule | meaning |", "|---|---|", f"| `{NO_FINDING_RULE}` | nothing found (score 0, action none) |"]
    rows += [f"| `{s.rule}` | {s.meaning} |" for s in SIGNALS]
    rows.append(f"| `{SIGNATURE_RULE_PREFIX}<name>` | a known public trigger from `rules/triggers.yaml` (separate "
                f"finding; off in the benchmark) |")
    return "\n".join(rows)
