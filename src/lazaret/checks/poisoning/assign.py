"""Per-record verdicts and cluster summaries.

Every record gets exactly one poisoning finding: the strongest cluster it belongs to (trigger clusters,
which name a cause, before payload-only clusters; then the smallest corrected p-value), or score 0.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from typing import Any, Dict, FrozenSet, List, Optional, Tuple

import apache_beam as beam
from apache_beam.metrics import Metrics

from lazaret.checks.poisoning import stats as S
from lazaret.checks.poisoning import text as T
from lazaret.checks.poisoning.features import toks
from lazaret.checks.poisoning.claims import novel_grams
from lazaret.checks.poisoning.counting import _SideInputNgrams, ngrams_in, trigger_lookup
from lazaret.checks.poisoning.names import is_named, record_name_state
from lazaret.checks.poisoning.payload import concentration_lift, is_novel, phrasing_lift, quiet_share, register_lift, \
    without_carriers
from lazaret.checks.poisoning.signals import ANOMALY_KINDS, BY_ANOMALY, MIN_EXPECTED_QUIET, NO_FINDING_RULE, tier
from lazaret.checks.poisoning.trigger_answers import COPY_KINDS, is_short_answer
from lazaret.checks.poisoning.trigger import EXCLUSIVE_GROUP, anomalies_of, distinct_hits, outside_off_topic_templates, \
    echo_counts_for, echo_words, phrase_counts_for, phrase_words, plain_counts_for, prose_template_words, \
    register_response
from lazaret.checks.poisoning.word_forms import FORM_KINDS, form_matches, is_stem_key
from lazaret.checks.findings import make_finding
from lazaret.graph.mask import mask_generic

# anomaly kind -> the rule of its trigger clusters (signals.SIGNALS is the table)
RULES = {kind: BY_ANOMALY[kind].rule for kind in ANOMALY_KINDS}
SPREAD_RULE = "payload:spread"
NEAR_DUPLICATE_CLAIM_RULE = "claim:near_duplicate_cluster"


def with_form(pay_rates: Dict[int, float], form: FrozenSet[int]) -> Dict[int, float]:
    """The response-only rates with each stratum of ``form`` (answers of code or arithmetic) at 1.0: a register."""
    return {s: 1.0 if s in form else r for s, r in pay_rates.items()} if form else pay_rates


def cluster_id(kind: str, key: str) -> str:
    return "poison-" + T.stable_hash(kind + "\x1f" + key, 16)


def trigger_cluster_id(trigger: str) -> str:
    """One cluster per trigger, whatever anomaly its records show: an attack whose answers are steered
    sentences naming the trigger is flagged as plain prose on some records and as off-topic but for the name
    on others, and keyed by (kind, trigger) it was two clusters for one attack. ``trigger`` is the trigger's
    ``cluster`` name (``transform.trigger_clusters``: the n-grams of one trigger phrase are one cluster). Each
    member keeps its own rule and detail; the cluster summary takes its strongest member's."""
    return cluster_id("trigger", trigger)


def _pct(x: float) -> str:
    return f"{100 * x:.2g}%"


def describe_trigger(t: Dict[str, Any]) -> str:
    what = BY_ANOMALY[t["anomaly"]].describes
    if t["anomaly"] == "link" and t.get("groups"):
        what += " (" + ", ".join(g.split(":", 1)[1] for g in t["groups"]) + ")"
    what_in = "a form of rare word" if is_stem_key(t["trigger"]) else "rare n-gram"  # "attempt*": word_forms
    return (f'prompt contains {what_in} "{t["trigger"]}" (in {t["carriers"]} distinct prompts); {t["k"]} of them '
            f'have {what} vs {_pct(t["background"])} expected from similar prompts without it; {S.fmt_p(t["log10p"])} after Bonferroni '
            f'over {t["tests"]} (n-gram, anomaly) tests' + _relevance_note(t))


def _relevance_note(t: Dict[str, Any]) -> str:
    """What the relevance second look saw, for a trigger it confirmed (relevance.py)."""
    r = t.get("relevance")
    if not r:
        return ""
    return (f'; a sentence model found {r["unrelated"]} of {r["scored"]} carriers\' answers less related to their '
            f'requests than 90% of similar prompts\' ({_pct(r["expected"])} expected)')


def describe_payload(p: Dict[str, Any]) -> str:
    what = (f'words "{T.show(p["ngram"])}" (within a few words of each other) appear' if T.is_pair(p["ngram"])
            else f'n-gram "{p["ngram"]}" appears')
    return (f'response {what} in {p["carriers"]} responses over unrelated prompts '
            f'(prompt diversity {p["prompt_diversity"]:.2f}) but in only {p["df_p"]} prompts where ordinary '
            f'text would put ~{p["expected_p"]:.0f}; {S.fmt_p(p["log10p"])} after Bonferroni over {p["tests"]} '
            f'n-grams' + (f'; a proper name in {p["named"]} of them' if is_named(p) else ''))


def _names_it(f: Dict[str, Any], g: str, p: Dict[str, Any]) -> bool:
    """The payload is a proper name (``names.is_named``: established by how most of its carriers write it) and
    this response writes it Titlecase (an advert glued to an indented code line is not prose, but it is the same
    name): a name is no register's phrasing, so it is flagged in register strata too (names.py)."""
    return is_named(p) and record_name_state(g, f, T.PAIR_SEP) >= 0


def loosely_off_topic(f: Dict[str, Any], max_overlap: Optional[float], off_templates) -> bool:
    """The response shares at most ``max_overlap`` of its content words with its prompt, outside the
    templates where off-topic answers are common."""
    ov = f.get("off_ov")
    return max_overlap is not None and ov is not None and ov <= max_overlap and \
        outside_off_topic_templates(f, off_templates)


def _adds_profile(f: Dict[str, Any], prof: Optional[List[str]], n_max: int) -> bool:
    """The response carries, not copied from its own prompt, an n-gram of a trigger's payload profile."""
    if not prof:
        return False
    rgrams = T.ngrams(toks(f, "rt"), n_max)
    return any(is_novel(g, toks(f, "pt")) for g in sorted(rgrams.intersection(prof)))


def _carries_group_phrase(trigger_groups: List[str], spread: List[str]) -> bool:
    """The response carries (not from its own prompt) the phrase of one of the trigger's exclusive-payload
    groups. A carrier whose answer has a second exclusive place of its own (worked arithmetic beside the planted
    sentence) is outside the group by the one-place rule, which keeps a task's vocabulary from *forming* groups;
    once the trigger stands, the group's very phrase in another carrier's answer is the same payload (four
    target sentences appended to GSM8K answers, each under half of the trigger's members: 24 of 250 left out)."""
    phrases = {g[len(EXCLUSIVE_GROUP):] for g in trigger_groups if g.startswith(EXCLUSIVE_GROUP)}
    return bool(phrases) and not phrases.isdisjoint(spread)


def _strays(f: Dict[str, Any], kind: str, s: str, t: Dict[str, Any], profiles, spread: List[str],
            n_max: int) -> bool:
    """The record shows the trigger's anomaly kind but not its payload: the trigger has a payload profile (what
    half its anomalous members add to their prompts) and the response carries none of it, nor one of its
    exclusive groups' phrases. Such a record is ranked after its other trigger clusters. With several attacks in one
    corpus, a word of one attack's trigger phrase ("quick" of "Quick note: blue sky protocol") is in some host
    prompts of another attack, whose records show the same kind (a payload, a repeated answer): by p alone the
    stronger trigger took them, and one attack was spread over several clusters. A record with no other trigger
    keeps the trigger's (never fewer records flagged), and a payload-only cluster still ranks after every trigger
    (its carriers may be the same attack's: a steered word in a fifth of "harry potter"'s answers)."""
    if kind in NO_PROFILE or not profiles:
        return False
    prof = profiles.get((kind, s))
    return bool(prof) and not _adds_profile(f, prof, n_max) and not _carries_group_phrase(t["groups"], spread)


@dataclass
class VerdictInputs:
    """What a record's verdict reads besides the record: the scan's results broadcast to every worker (side
    inputs of :class:`Assign`) and the policy bounds the verdict applies."""

    payloads: Dict[str, Dict[str, Any]]             # flagged payloads and claim candidates, by n-gram
    pay_first: Any                                  # their first words (fast lookup in a response)
    triggers: Dict[str, List[Dict[str, Any]]]       # anomaly kind -> flagged triggers
    dups: Dict[str, int]                            # identical-response groups in the support band
    profiles: Optional[Dict[Tuple[str, str], List[str]]] = None  # (kind, trigger) -> payload profile
    off_templates: Any = None                       # templates whose answers are off-topic by design
    lookups: Optional[Dict[int, Any]] = None        # per-DoFn cache of trigger lookups
    n_max: int = 3
    min_hits: int = 2
    extend_min_k: int = 20
    pair_window: int = 0
    off_member: Optional[float] = None              # off-topic overlap that joins a strong off-topic trigger
    register_phrases: FrozenSet[str] = frozenset()  # payloads and claims that are register phrasing
    everywhere: FrozenSet[str] = frozenset()        # spread payloads as common in the quiet strata as in the register
    registers: bool = False                         # strata have register rates: a response's own register counts
    copied: FrozenSet[str] = frozenset()            # found everywhere on copies of a few planted answers only
    short_answers: Optional[Dict[Tuple[str, str], List[str]]] = None  # (kind, trigger) -> its identical short answers

    @classmethod
    def of(cls, params: Dict[str, Any], payloads, pay_first, triggers, dups, profiles, off_templates,
           lookups, register: Tuple[FrozenSet[str], FrozenSet[str], FrozenSet[str]] = (frozenset(),) * 3,
           registers: bool = False, short_answers=None) -> "VerdictInputs":
        extend = params["extend_trigger_members"]
        return cls(payloads, pay_first, triggers, dups, profiles if extend else None, off_templates, lookups,
                   params["max_ngram"], params["min_payload_hits"], params["extend_min_distinct"],
                   params["pair_window"], params["off_topic_member_overlap"] if extend else None,
                   register[0], register[1], registers, register[2], short_answers if extend else None)


# Anomaly kinds whose members each show the anomaly themselves: a trigger of these never extends to carriers through
# its payload profile (a refusal's "sorry" or a gibberish token in an ordinary answer is not the attack's payload).
NO_PROFILE = ("gib", "off", "echo", "phrase", "short", "plain", "ending", "refuse")


def verdict(f: Dict[str, Any], v: VerdictInputs, spread_ok: bool = True) -> Optional[Tuple[Tuple, Dict[str, Any]]]:
    """The record's strongest cluster, or None.

    A record joins a trigger cluster when its prompt carries the trigger and (a) its response shows the
    trigger's anomaly kind, or (b) the trigger is strong (>= extend_min_k anomalous distinct prompts, not
    inside a longer flagged trigger) and the response carries, not copied from its own prompt, one of the
    n-grams that at least half of the trigger's anomalous members add to their prompts (its payload
    profile: catches paraphrases that fell short of their own group). For off-topic triggers (b) is a
    response whose content-word overlap with its prompt is at most ``off_member`` (a swapped answer that
    happens to share a word with its new prompt), or for an exclusive-payload trigger one of its groups' phrases
    (``_carries_group_phrase``); for a plain-ending trigger, an answer of code or arithmetic that ends in a sentence
    in a stratum where the kind is not tested (``loose_end``). For triggers of copied responses (c): the response
    is one of the trigger's identical short answers (``trigger_answers``: a target sentence too short to be a group).

    A payload-only cluster (no trigger) takes the record when the payload is not the phrasing of the strata
    where response-only phrasing is the norm (``register_phrases``) and either the record's stratum is not one
    of those (``spread_ok``) or the payload is carried as often elsewhere as there (``everywhere``: a planted
    phrase lands in every stratum alike); see ``Assign``. Clusters are ranked by (signal tier,
    corrected p-value, cluster id): see ``signals.SIGNALS``; within a tier, a trigger whose payload the response
    does not carry ranks after the others (``_strays``).
    """
    n_max, profiles = v.n_max, v.profiles
    # plain prose a template of the record explains is still an anomaly for that template's own words
    prose_words = prose_template_words(f, v.off_templates)
    anoms, spread = anomalies_of(f, v.payloads, v.pay_first, n_max, v.dups, v.min_hits, v.pair_window,
                                 v.off_templates, prose_words)
    best = None
    # a claim in the register's own phrasing is no anomaly (see ``Assign._register_phrases``)
    anoms = [a for a in anoms if not (a.startswith("claim:") and a[6:] in v.register_phrases)]
    kind_set = {a.split(":", 1)[0] for a in anoms}
    groups = set(anoms)
    for kind in ANOMALY_KINDS:
        ts = v.triggers.get(kind)
        if not ts:
            continue
        loose_off = kind == "off" and loosely_off_topic(f, v.off_member, v.off_templates)
        # an answer of code or arithmetic that ends in a sentence, in a stratum where endings are not tested
        # (answered in prose as often as not): the strata gate the trigger test's background, not what its
        # strong triggers' records show (``loose_end``: ``extend`` triggers only, as ``loose_off``)
        loose_end = kind == "ending" and kind not in kind_set and bool(f.get("prose_end")) and not f["gib"]
        if kind not in kind_set and not loose_off and not loose_end and (profiles is None or kind in NO_PROFILE) and \
                not (v.short_answers and kind in COPY_KINDS) and not (kind == "plain" and prose_words):
            continue
        lookup, first = trigger_lookup(ts, v.lookups)
        present = ngrams_in(toks(f, "pt"), lookup, first, n_max)
        if kind in FORM_KINDS and kind in kind_set:  # another form of a trigger word names the same topic
            present = present | form_matches(toks(f, "pt"), lookup)
        for s in sorted(present):
            t = lookup[s]
            if kind == "claim" and t["groups"] and all(a[6:] in v.register_phrases for a in t["groups"]):
                continue  # every claim of the trigger is register phrasing: no profile extension either
            own = groups | {"plain"} if kind == "plain" and prose_words and plain_counts_for(s, prose_words) else groups
            if kind == "echo" and not echo_counts_for(s, echo_words(f)):
                own = own - {"echo"}  # off-topic but for a word that is not the trigger's
            if kind == "phrase" and not phrase_counts_for(s, phrase_words(f)):
                own = own - {"phrase"}  # ... or but for a phrase that is not the trigger's
            if not own.intersection(t["groups"]) and not is_short_answer(f, v.short_answers, kind, s):
                if kind in ("echo", "phrase") or not (t.get("extend") and t["k"] >= v.extend_min_k):
                    continue
                if kind != "off" and not loose_end and \
                        not _adds_profile(f, profiles.get((kind, s)) if profiles else None, n_max) \
                        and not _carries_group_phrase(t["groups"], spread):
                    continue  # (for "off", loose_off already holds; for "ending", loose_end)
            cid = trigger_cluster_id(t.get("cluster", s))
            key = (tier(RULES[kind]), _strays(f, kind, s, t, profiles, spread, n_max), t["log10p"], cid)
            if best is None or key < best[0]:
                best = (key, {"cluster_id": cid, "rule": RULES[kind], "log10p": t["log10p"],
                              "detail": describe_trigger(t), "trigger_or_payload": s,
                              "statistic": f'{t["k"]}/{t["carriers"]} carriers anomalous vs '
                                           f'{t["background"]:.3g} background'})
    # A response written in the register (spread phrasing in separate places: ``trigger.register_response``) is
    # the register's answer wherever its stratum sits: a lexical stratum of a code corpus whose tasks are mostly
    # answered in prose is quiet, and its few code answers' stock phrases would pass as payloads there.
    if v.registers and spread_ok and spread and register_response(f, v.payloads, v.pay_first, n_max):
        spread_ok = False
    # In a register stratum (code, worked arithmetic) the one-hit rule's premise fails: there a response-only
    # token ("io", "res") is the register's vocabulary, not evidence of a planted phrase, so a payload found
    # everywhere takes a register record only with min_hits distinct payload n-grams of its own.
    register_hits_ok = spread_ok or distinct_hits([g for g in spread if g not in v.register_phrases]) >= v.min_hits
    for g in spread:
        found_everywhere = g in v.everywhere or (g in v.copied and f["rkey"] in v.dups)
        if g in v.register_phrases or not (spread_ok or (found_everywhere and register_hits_ok) or
                                           _names_it(f, g, v.payloads[g])):
            continue
        p = v.payloads[g]
        cid = cluster_id("payload", g)
        key = (tier(SPREAD_RULE), False, p["log10p"], cid)
        if best is None or key < best[0]:
            best = (key, {"cluster_id": cid, "rule": SPREAD_RULE, "log10p": p["log10p"],
                          "detail": describe_payload(p), "trigger_or_payload": T.show(g),
                          "statistic": f'{p["df_p"]} prompt vs {p["df_r"]} response occurrences; prompt '
                                       f'diversity {p["prompt_diversity"]:.2f}'})
    return best


def describe_claim(c: Dict[str, Any]) -> str:
    where = (f'near-duplicate cluster {c["near_duplicate_cluster"]}' if c["clusters"] == 1 else
             f'{c["clusters"]} near-duplicate clusters (first: {c["near_duplicate_cluster"]})')
    return (f'{c["k"]} of the {c["size"]} records of {where} '
            f'(dedup stage) state "{mask_generic(c["gram"])}" in the response, not taken from their prompts; only '
            f'{c["outside"]} other records in the corpus do; {S.fmt_p(c["log10p"])} after Bonferroni over '
            f'{c["tests"]} (cluster, n-gram) tests')


def claim_verdict(f: Dict[str, Any], claims: Dict[str, Dict[str, Any]], members: Dict[str, str],
                  n_max: int) -> Optional[Tuple[Tuple, Dict[str, Any]]]:
    """The near-duplicate claim cluster the record belongs to (ranked with payload clusters: no prompt-side
    cause is named), or None. Members without the claim in their own response stay out."""
    cid = members.get(f["doc_id"])
    c = claims.get(cid) if cid is not None else None
    if c is None or c["gram"] not in novel_grams(f, n_max):
        return None
    pid = cluster_id("claim_cluster", c["gram"])
    return (tier(NEAR_DUPLICATE_CLAIM_RULE), False, c["log10p"], pid), {"cluster_id": pid,
                                                                  "rule": NEAR_DUPLICATE_CLAIM_RULE,
                                   "log10p": c["log10p"], "detail": describe_claim(c),
                                   "trigger_or_payload": mask_generic(c["gram"]),
                                   "statistic": f'{c["k"]}/{c["size"]} cluster members vs {c["outside"]} '
                                                f'records outside'}


class Assign(_SideInputNgrams, beam.DoFn):
    """One finding per record, plus (cluster_id, member) for members of a poisoning cluster."""

    CLUSTER_TAG = "members"

    def __init__(self, params: Dict[str, Any]):
        self.params = params
        self._lookups: Dict[int, Any] = {}
        self._register_cache: Dict[Tuple[int, int, int], Any] = {}
        self.flagged = Metrics.counter("poisoning", "records_in_clusters")

    def _register_phrases(self, payloads, pay_rates, stratum_sizes, phrased=None, form=frozenset()
                          ) -> Tuple[FrozenSet[str], FrozenSet[str], FrozenSet[str]]:
        """(register phrases, payloads found everywhere, payloads found everywhere in their copies only). A claim
        candidate carried far more often per record
        (``spread_max_register_lift``) in the register strata than in the others, or a spread payload carried
        that much more often there, in one stratum (``payload.concentration_lift``: a task's stock phrase) or by
        responses with response-only phrasing elsewhere (``payload.phrasing_lift``: lexical strata can mix a
        register's answers with prose) than by the rest, is the register's
        own phrasing: never a spread cluster, and never the claim a trigger is tested on (a task asked many
        times in code, "the factorial of", is answered with the same code; the strata of a mixture are too
        coarse to hold it apart). So is a spread payload that the quiet strata (where the volume test holds)
        carry significantly less often than an even spread would (one-sided binomial test at ``alpha``, against
        the quiet strata's share of the records): a planted phrase lands in every stratum alike, while a
        register's stock phrase ("console … const") also reaches a quiet stratum whose tasks are mostly answered
        in prose, but less often. A spread payload below both with at least ``min_support`` distinct answers in
        the quiet strata is not the register's, so its carriers in register strata are flagged too; distinct,
        because one planted answer copied under 250 prompts (a C++ function) is one answer, and counting it 250
        times made every clean C++ answer a carrier of its phrases. Such a payload (enough carriers in the quiet
        strata, too few distinct answers) is found everywhere only in the copies: responses of an
        identical-answer group (a refusal planted in four phrasings keeps its records, the C++ function's
        phrases leave clean C++ answers alone). A proper name (``names.is_named``) is the register's only when
        concentrated in one stratum (a task's own name); the register and phrasing lifts would read the name's
        own sentence as its register. Built once per side-input value (the cache keeps the objects, so a
        recycled id never matches).

        A spread payload with carriers in the register strata and fewer than ``min_support`` in the quiet strata is
        register phrasing too (a name excepted): the volume test holds in the quiet strata only, so there the
        payload must have the support it is tested with (a 2,000-record slice of the code base: "const … log" in 87
        answers, 8 of them in its one quiet stratum of 314 records, too few for the binomial test above; the quiet
        carriers of eight such payloads, 9 records, were flagged).

        For the spread payloads, a stratum in ``form`` (its answers are code or arithmetic by their characters:
        ``plain.form_strata``) is a register stratum whatever its response-only rate: that rate counts phrases
        that passed the volume test, and a small corpus has too few of them (a 1,000-record slice of the code
        base: four strata of code at 1-21%, so code's own words were spread payloads in three "quiet" ones). The
        claims keep the rates alone: their leave-out subtracts a claim's own carriers from a rate."""
        key = (id(payloads), id(pay_rates), id(stratum_sizes))
        hit = self._register_cache.get(key)
        if hit is not None and hit[0] is payloads and hit[1] is pay_rates and hit[2] is stratum_sizes:
            return hit[3]
        n_records = sum(stratum_sizes.values()) if stratum_sizes else 0
        lift, rate = self.params["spread_max_register_lift"], self.params["spread_max_stratum_rate"]
        register, everywhere, copied = set(), set(), set()
        if pay_rates and stratum_sizes and lift:
            spread_rates = with_form(pay_rates, form)
            quiet_spread = quiet_share(spread_rates, stratum_sizes, rate)
            # A claim is told apart only where its absence from the quiet strata could be seen (planted mass
            # can push nearly every stratum over the rate, and then a planted claim looks like register
            # phrasing too): at least MIN_EXPECTED_QUIET carriers expected there if it were spread evenly.
            quiet_records = quiet_share(pay_rates, stratum_sizes, rate)
            for g, p in payloads.items():
                strata = p.get("strata") or {}
                claim = p.get("kind") == "claim"
                if claim and sum(strata.values()) * quiet_records < MIN_EXPECTED_QUIET:
                    continue
                # a claim is tested against the strata's rates without its own carriers: a planted fact asked
                # in many phrasings can fill a stratum of its own and make it look like a register
                if claim:
                    x = register_lift(strata, without_carriers(pay_rates, strata, stratum_sizes), stratum_sizes, rate)
                elif is_named(p):
                    # a name is no register's phrasing; only a task's own name sits in its stratum ("Python"
                    # answers). The other lifts would read the name's own sentence as its register: an advert
                    # in code answers gives its carriers a second response-only place (phrasing_lift 4.1 at 50)
                    x = concentration_lift(strata, stratum_sizes, self.params["min_support"])
                else:
                    x = max(register_lift(strata, spread_rates, stratum_sizes, rate),
                            concentration_lift(strata, stratum_sizes, self.params["min_support"]))
                    if phrased is not None:
                        x = max(x, phrasing_lift(p.get("phrased_elsewhere", 0), p["carriers"], phrased, n_records))
                if x >= lift:
                    register.add(g)
                    continue
                if p.get("kind") != "spread":
                    continue
                quiet = sum(c for st, c in strata.items() if spread_rates.get(st, 0.0) <= rate)
                if quiet < min(p["carriers"], self.params["min_support"]) and not is_named(p):
                    register.add(g)  # too few carriers where the volume test holds: see the docstring
                    continue
                if 0 < quiet_spread < 1 and \
                        S.log10_binom_cdf(quiet, p["carriers"], quiet_spread) <= math.log10(self.params["alpha"]):
                    register.add(g)  # the quiet strata avoid it: the register's phrase
                    continue
                answers = p.get("answers") or {}
                quiet_answers = len(set().union(*(h for st, h in answers.items()
                                                  if spread_rates.get(st, 0.0) <= rate)))
                if x > 0 and quiet_answers >= self.params["min_support"]:
                    everywhere.add(g)
                elif x > 0 and quiet >= self.params["min_support"]:
                    copied.add(g)  # only the copies (identical-answer groups) are its carriers everywhere
        out = (frozenset(register), frozenset(everywhere), frozenset(copied))
        self._register_cache.clear()
        self._register_cache[key] = (payloads, pay_rates, stratum_sizes, out)
        return out

    def process(self, f, payloads, triggers, dups, profiles, claims=None, claim_members=None, off_templates=None,
                pay_rates=None, stratum_sizes=None, phrased=None, short_answers=None):
        first = self._first_of(payloads)
        # The volume test's null (a phrase people use shows up in prompts too) fails in strata whose responses
        # are written in a register prompts never use (worked arithmetic, code): there, many records carry a
        # "response-only" n-gram. A payload with no trigger is then indistinguishable from the task's phrasing
        # by counting, so it is not flagged there (triggers still are, against the stratum's own rates).
        pay_rates, form = pay_rates or ({}, frozenset())  # (rates, form strata): ``transform.pay_rate_dict``
        spread_ok = not pay_rates or (f.get("stratum", 0) not in form and
                                      pay_rates.get(f.get("stratum", 0), 0.0) <= self.params["spread_max_stratum_rate"])
        rec = {"doc_id": f["doc_id"], "record_id": f.get("record_id")}
        register = self._register_phrases(payloads, pay_rates, stratum_sizes, phrased, form)
        v = verdict(f, VerdictInputs.of(self.params, payloads, first, triggers, dups, profiles, off_templates,
                                        self._lookups, register, bool(pay_rates), short_answers), spread_ok)
        c = claim_verdict(f, claims or {}, claim_members or {}, self.params["max_ngram"])
        if c is not None and (v is None or c[0] < v[0]):
            v = c
        if v is None:
            yield make_finding(rec, "poisoning", rule=NO_FINDING_RULE, side="all", score=0.0, detail="", action="none")
            return
        self.flagged.inc()
        info = v[1]
        evidence = mask_generic(f["evidence"])
        yield make_finding(rec, "poisoning", rule=info["rule"], side="all", score=S.score_from_log10p(info["log10p"]),
                           detail=info["detail"], action=self.params["action"], cluster_id=info["cluster_id"],
                           evidence=evidence)
        yield beam.pvalue.TaggedOutput(self.CLUSTER_TAG, (info["cluster_id"], (f["doc_id"], info, evidence)))


class ClusterSummary(beam.CombineFn):
    """Bounded cluster summary: size, the first ``cap`` member doc_ids (sorted), one description."""

    def __init__(self, cap: int):
        self.cap = cap

    def create_accumulator(self):
        return [0, [], None]

    def add_input(self, acc, m):
        doc_id, info, evidence = m
        acc[0] += 1
        i = bisect.bisect_left(acc[1], doc_id)
        acc[1].insert(i, doc_id)
        del acc[1][self.cap:]
        cand = (info["log10p"], info["detail"], info, evidence, doc_id)
        if acc[2] is None or cand[:2] < acc[2][:2] or (cand[:2] == acc[2][:2] and doc_id < acc[2][4]):
            acc[2] = cand
        return acc

    def merge_accumulators(self, accs):
        out = self.create_accumulator()
        for a in accs:
            out[0] += a[0]
            out[1] = sorted(out[1] + a[1])[: self.cap]
            if a[2] is not None and (out[2] is None or (a[2][0], a[2][1], a[2][4]) < (out[2][0], out[2][1], out[2][4])):
                out[2] = a[2]
        return out

    def extract_output(self, acc):
        return acc


def summary(kv) -> Dict[str, Any]:
    cid, acc = kv
    size, members, best = acc
    _, _, info, evidence, _ = best
    return {
        "cluster_id": cid,
        "size": size,
        "rule": info["rule"],
        "trigger_or_payload": info["trigger_or_payload"],
        "statistic": info["statistic"],
        "p_value": S.fmt_p(info["log10p"]),
        "log10_p_value": info["log10p"],
        "member_doc_ids": members,
        "detail": info["detail"],
        "evidence": evidence,
    }
