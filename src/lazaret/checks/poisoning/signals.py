"""The poisoning scan's signals in one table (``signals.yaml``, next to this module): rule name, what it means,
the policy fields that bound it, and its precedence; plus the named constants the tests share.

A reviewer reads a finding's ``rule`` here; a maintainer who adds a signal adds a row there, and
``tests/test_poisoning_signals.py`` checks that every rule the scan can emit is a row, that every policy field a
row names exists, and that docs/poisoning.md lists every row. The per-record verdict (``assign.verdict``) ranks a
record's clusters by (``tier``, corrected p-value, cluster id): a signal that names a prompt-side cause (a trigger)
outranks one that does not.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import Dict, List, Optional, Tuple

import yaml


@dataclass(frozen=True)
class Signal:
    rule: str                 # the finding's ``rule`` (manifest column)
    anomaly: Optional[str]    # the anomaly kind a trigger is tested against (``FindAnomalies``), None if no trigger
    tier: int                 # precedence: lower wins when a record is in several clusters
    meaning: str              # what the rule tells a reviewer (docs/poisoning.md shows the same)
    describes: str            # how a trigger's ``detail`` names its carriers' anomaly ("" when not a trigger)
    fields: Tuple[str, ...]   # policy fields (``poisoning:`` section) that bound this signal


def load_signals(text: str) -> Tuple[Signal, ...]:
    """The table from ``signals.yaml``'s text. Why a data file: the rows are declarations a reviewer reads
    (Presidio declares its simple recognizers in YAML the same way), and a group name in capitals (``TRIGGER``)
    stands for the fields every signal of that kind is bounded by, so a row lists only what is its own."""
    data = yaml.safe_load(text)
    groups: Dict[str, List[str]] = data["groups"]
    out = []
    for row in data["signals"]:
        fields: List[str] = []
        for name in row["fields"]:
            fields += groups[name] if name in groups else [name]
        out.append(Signal(rule=row["rule"], anomaly=row.get("anomaly"), tier=int(row["tier"]),
                          meaning=row["meaning"], describes=row.get("describes", ""), fields=tuple(fields)))
    return tuple(out)


SIGNALS: Tuple[Signal, ...] = load_signals(
    resources.files(__package__).joinpath("signals.yaml").read_text(encoding="utf-8"))

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
# A prompt stratum at least this share of whose distinct prompts are one candidate trigger's carriers is the
# candidate's own (250 phrasings of one planted question share a mix of common words no task has, and k-means
# gives them a centroid), never its control (``strata.matched_background``).
STRATUM_OWNED_RATE = 0.5
# One hit of a spread payload is enough when the n-gram is in at most this share of the prompts ordinary text
# would put it in: it has no ordinary use in this corpus.
EXCLUSIVE_PROMPT_SHARE = 0.02
# A trigger of an exclusive payload (``trigger:exclusive_payload``) is a phrase added to prompts of varied tasks:
# its anomalous carriers must be spread over at least this many strata (inverse Simpson index). A task's own
# one-line idiom ("wc -l" answering "count the number of files", "running on port" answering "in node js") has
# its carriers in one or two strata; a planted line lands in every stratum its hosts come from.
EXCLUSIVE_MIN_STRATA = 3.0
# ... unless the phrase is what the trigger's carriers (almost) always get: a task's idiom is one of the ways its
# requests are answered ("running on port" in 20 of the 36 answers to "in node js", 0.53-0.70 over 20 runs), while a
# planted answer is given to every asker. A false fact asked in many phrasings is one question, so its carriers
# sit in one or two strata (1.0-2.6 on the development seeds at 50), and the bound above alone cut it (0.00 on
# those seeds); at least this share of the trigger's carriers in the one group keeps it.
EXCLUSIVE_ALWAYS_SHARE = 0.8
# A claim is register phrasing only where its absence from the quiet strata could be seen: at least this many of
# its carriers expected there if it were spread evenly (the usual floor of a count test; ``Assign``).
MIN_EXPECTED_QUIET = 5.0
# A backdoor's payload comes with its trigger: a web host (``trigger:link``) is tested against a trigger only when at
# least this share of the records pointing to it carry the trigger. A host the corpus names for many reasons
# (github.com, answering requests about repositories among others) is the requests' subject, not a planted link.
TRIGGER_OWNS_GROUP_SHARE = 0.5
# A response written in a register (worked arithmetic, code) carries response-only phrasing in at least this many
# separate places; a planted payload (a sentence, a line, a fixed text) is one place however many of its
# n-grams are candidates. A stratum's register rate counts such responses only, so planted mass that lands in
# every stratum alike does not make prose strata look like registers (``trigger.FindAnomalies``).
REGISTER_MIN_PLACES = 2
# A word at least this share of a form trigger's anomalous carriers hold away from the trigger is a companion: what
# else their prompts share, which names their task when it is rare in their strata (``companions``).
COMPANION_SHARE = 0.5
# A companion explains the carriers' form only when at least this many records of its task, without the trigger,
# answer in that form: fewer say nothing about the task (the usual floor of a count, as ``MIN_EXPECTED_QUIET``).
MIN_CONTROL_ANSWERS = 3
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
