"""Prompt-side triggers: n-grams whose carriers show a response anomaly far above the corpus rate.

Anomalies are found first (gibberish responses, flagged payloads, claim candidates); they are rare, so the
(prompt n-gram, anomaly) pairs are counted only over anomalous records, and the corpus-wide document
frequency is then counted only for the prompt n-grams those pairs name. Each pair is tested with a
binomial tail against the anomaly's background rate, Bonferroni-corrected by the number of pairs tested.
"""

from __future__ import annotations

import math
import zlib
from typing import AbstractSet, Any, Dict, FrozenSet, Iterable, List, Optional, Tuple

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.pvalue import TaggedOutput

from lazaret.checks.poisoning import stats as S
from lazaret.checks.poisoning import text as T
from lazaret.checks.poisoning.features import toks
from lazaret.checks.poisoning.counting import _PreAggregateDistinct, _SideInputNgrams, hit_places, keys_in, \
    ngrams_in, trigger_lookup
from lazaret.checks.poisoning.relevance import CANDIDATE_TAG, SECOND_LOOK_KINDS
from lazaret.checks.poisoning.rewrites import read as read_rewrite, substitutions
from lazaret.checks.poisoning.payload import REPEATED_PREFIX, is_novel, skeleton_keys
from lazaret.checks.poisoning.signals import EXCLUSIVE_ALWAYS_SHARE, EXCLUSIVE_MIN_STRATA, EXCLUSIVE_PROMPT_SHARE, \
    REGISTER_MIN_PLACES, TEMPLATE_SHARE, TRIGGER_OWNS_GROUP_SHARE
from lazaret.checks.poisoning.strata import matched_background, task_tokens
from lazaret.checks.poisoning.word_forms import FORM_KINDS, stem_keys


def template_off_topic(f: Dict[str, Any]):
    """(template key, (1, off-topic, plain prose, response MinHash, prompt MinHash, prompt key)) for the record's
    prompt opening and ending: the off-topic and prose rates per template and how varied its answers and prompts are
    (``payload.TemplateForms``)."""
    off = 1 if f["off"] and not f["gib"] else 0
    prose = 1 if f.get("prose") and not f["gib"] else 0
    return [(k, (1, off, prose, tuple(f["rsh"]), tuple(f["psig"]), f["pkey"])) for k in skeleton_keys(f)]


def off_topic_template_value(kv, min_support: int, off_rate: float, claim_diversity: float):
    """(template, ``payload.TemplateForms`` output) -> [(template, (off-topic rate or 0,
    prose rate or 0))] for a template of at least ``min_support`` records whose answers are off-topic more often
    than ``off_rate``, or plain prose in most of them (``TEMPLATE_SHARE``) and varied: in either, that is the
    task's form, not an anomaly.

    Varied: prose answers no more concentrated than a claim's (``claim_max_response_diversity``). One question
    asked in many phrasings makes templates of its own (its openers and closers), all answered in prose, and
    those answers state one fact (diversity 0.08-0.38 measured, false_fact on code); a task answered in prose
    answers each record anew (common_gen's templates: 0.80-1.00)."""
    key, (n, off, prose, div, _, _) = kv
    if n < min_support:
        return []
    varied = div > claim_diversity
    value = (off / n if off > off_rate * n else 0.0, prose / n if prose > TEMPLATE_SHARE * n and varied else 0.0)
    return [(key, value)] if any(value) else []


def off_topic_template_rank(kv) -> Tuple[float, str]:
    """``CapSideInput`` rank of an ``off_topic_template_value`` entry: the largest rate first."""
    return (-max(kv[1]), kv[0])


def outside_off_topic_templates(f: Dict[str, Any], off_templates) -> bool:
    """False when the record's prompt opens or ends like a template whose answers are often off-topic by
    design (or when the off-topic kind is switched off: ``off_templates`` None)."""
    return off_templates is not None and not any(off_templates.get(k, (0.0,))[0] for k in skeleton_keys(f))


def prose_template_words(f: Dict[str, Any], off_templates) -> Optional[List[FrozenSet[str]]]:
    """The words of each of the record's prompt templates (opening or ending, ``payload.skeleton_keys``) whose
    answers are mostly varied plain prose (``off_topic_template_value``), or None when it has none: its plain prose
    is an anomaly.

    The ``plain`` kind marks prose in a stratum where answers are code or arithmetic; a stratum is fitted on a
    sample, and a small task answered in prose by design (common_gen's "Concepts: ... Write a sentence") can share
    one with code: its records then read as out of form, and a word of theirs ("concepts") as a trigger of prose
    (38 of the clean mixture's 40 flagged records). The record's own template is the closer control. But a
    trigger put at the start or end of varied requests makes a template of its own ("Sofia Moreau Implement
    ...", answered with varied steered sentences): so the template explains the prose for every n-gram but
    those made only of its own words (``plain_counts_for``). A template whose words cannot be read back (the
    record's opening was cut as a preamble) explains nothing."""
    if not off_templates or not f.get("plain"):
        return None
    keys = [k for k in skeleton_keys(f) if off_templates.get(k, (0.0, 0.0))[1]]
    if not keys:
        return None
    tt = task_tokens(f)
    edges = {zlib.crc32(" ".join(w).encode("utf-8")): frozenset(w) for w in (tt[:3], tt[-3:])}
    words = [edges[int(k[2:])] for k in keys if int(k[2:]) in edges]
    return words or None


def echo_words(f: Dict[str, Any]) -> Optional[FrozenSet[str]]:
    """The words an ``echo`` record's answer shares with its prompt, or None when the answer is off-topic as it is
    (it counts for every n-gram then; ``echo_counts_for``)."""
    return None if f.get("off") else frozenset(f.get("echo") or ())


def echo_counts_for(g: str, shared: Optional[AbstractSet[str]]) -> bool:
    """Whether a record's ``echo`` anomaly counts for prompt n-gram ``g``: always when its answer is off-topic as it
    is (``shared`` None), else only when ``g`` has one of the words the answer shares with the prompt.

    A trigger repeated in a swapped answer ("bbje The sky has 3*12=...": held-out ``rare_token_multi`` on GSM8K
    at 50, seed 106, 0.00) makes the answer share that word with its prompt, and the overlap with it is over
    ``off_topic_max_overlap``: of the trigger's 48 carriers 0.15 were off-topic as they were, 0.85 with the word
    set aside. A task word gains the same way (a correct answer to "compute the factorial" may share only
    "factorial": 0.29 -> 0.66 of 373 code carriers), so the background is symmetric: every record off-topic but
    for any one shared word (code 0.22 of answers, GSM8K 0.006, T0 0.18), and the kind is held to the short
    kind's lift (``BOUND_FIELDS``): far above records like them, which a task word never is where such answers are
    common (at most 1 / 0.22 = 4.5 times the code base's rate)."""
    if shared is None:
        return True
    return not gram_parts(g).isdisjoint(shared)


def gram_parts(g: str) -> FrozenSet[str]:
    """The words of prompt n-gram ``g`` as ``text.word_parts`` reads an answer's (tokens split at "_")."""
    return frozenset(part for w in g.split(" ") for part in w.split("_"))


def phrase_words(f: Dict[str, Any]) -> Tuple[FrozenSet[str], int]:
    """(the words a ``phrase`` record's answer shares with its prompt, how many may stay beside the phrase's)."""
    return frozenset(f.get("phrase") or ()), int(f.get("phrase_k", 0))


def phrase_counts_for(g: str, phrase: Tuple[AbstractSet[str], int]) -> bool:
    """Whether a record's ``phrase`` anomaly counts for prompt n-gram ``g``: when ``g`` holds words the answer shares
    with its prompt and the answer is off-topic once they are set aside (at most ``k`` others left;
    ``text.phrase_echo``: one word of a two-word name is not enough). Symmetric with the background, which counts
    every answer off-topic but for some prompt phrase's words: a name's carriers are tested against answers that
    repeat *a* phrase, not against answers off-topic as they are."""
    shared, k = phrase
    parts = gram_parts(g)
    return not parts.isdisjoint(shared) and len(shared - parts) <= k


def plain_counts_for(g: str, template_words: Optional[List[FrozenSet[str]]]) -> bool:
    """Whether a record's plain prose is an anomaly for prompt n-gram ``g``: always when no prose template
    explains it (``prose_template_words`` None), else only when every such template is made of ``g``'s words
    (the template may be ``g``'s own)."""
    if template_words is None:
        return True
    words = set(g.split(" "))
    return all(words <= w for w in template_words)


# 0: one "pay" group per record (any payload). Per-payload groups (3) found a curl|sh line behind a trigger
# in code answers but made every code sub-task word a trigger of its own syntax (clean code base: 70.5%
# flagged vs 0% with one group; mixture 37.6%): off until strata are fine enough to match sub-tasks.
PAY_GROUPS = 0


_COMPUTE: Any = object()  # anomalies_of's prose_words default: read the record's prose templates itself


def anomalies_of(f: Dict[str, Any], payloads: Dict[str, Dict[str, Any]], first: Iterable[str],
                 n_max: int, dups: Dict[str, int], min_hits: int = 2,
                 pair_window: int = 0, off_templates=None, prose_words: Any = _COMPUTE
                 ) -> Tuple[List[str], List[str]]:
    """The record's anomaly kinds (gib, off, echo, short, plain, ending, refuse, dup, rep, link, pay, xpay, claim)
    and the spread payloads its response carries.

    An off-topic response is an anomaly only outside the templates where off-topic answers are common
    (``off_templates``; None switches the kind off).

    A spread payload counts only when the response carries at least ``min_hits`` flagged n-grams: an
    ordinary record that happens to contain one word of a payload ("popping") is not its carrier, unless
    that n-gram is essentially absent from prompts (no ordinary use in the corpus).
    Identical-response groups (dup:<hash>) and claims (claim:<ngram>) are kept per group; the trigger test
    sums a trigger's groups of one kind that each reach min_support (a rare-token backdoor with three
    target sentences makes three groups, each a third of the trigger's carriers).

    A response that is its own prompt rewritten (rewrites.py) carries no payload by the words that stand in for
    its prompt's, and one that is nothing but that is no copied response and no off-topic one.
    """
    out: List[str] = ["gib"] if f["gib"] else []
    cache: List[Tuple[FrozenSet[int], bool]] = []

    def rewrite() -> Tuple[FrozenSet[int], bool]:
        """The record read as its prompt rewritten (``rewrites.read``), aligned once."""
        if not cache:
            cache.append(read_rewrite(toks(f, "pt"), toks(f, "rt")))
        return cache[0]

    # an answer that is its prompt with masks in place and nothing else is about its prompt, whatever words the
    # masks took away (rewrites.is_prompt_rewritten)
    if not f["gib"] and (f.get("off") or f.get("echo")) and outside_off_topic_templates(f, off_templates) and \
            not rewrite()[1]:
        # "echo": off-topic once one word shared with the prompt is set aside (an off-topic answer is too); counted
        # for a prompt n-gram only when that word is the n-gram's (``echo_counts_for``)
        out += ["off", "echo"] if f.get("off") else ["echo"]
    if not f["gib"] and f.get("phrase") and outside_off_topic_templates(f, off_templates) and not rewrite()[1]:
        out.append("phrase")  # off-topic but for a phrase of its prompt (``phrase_counts_for``)
    if f.get("short"):
        out.append("short")
    if f.get("plain"):
        if prose_words is _COMPUTE:
            prose_words = prose_template_words(f, off_templates)
        if prose_words is None:
            out.append("plain")
    if f.get("ending"):
        out.append("ending")
    if f.get("refuse"):
        out.append("refuse")
    # a copied response: "dup:<group>" in the support band; "rep" in any kept group, small ones included (a
    # backdoor with many target responses puts some copies in groups of their own and most in small ones)
    repeated = f["rkey"] in dups or bool(dups) and REPEATED_PREFIX + f["rkey"] in dups
    # an answer that is its prompt with masks or corrections in place and nothing else is the same as others
    # because their prompts are the same sentence: its prompt explains it (rewrites.is_prompt_rewritten)
    if repeated and not rewrite()[1]:
        out += ["dup:" + f["rkey"], "rep"] if f["rkey"] in dups else ["rep"]
    # one group per web host the prompt gives no reason for (links.py): the background is that host's rate
    if not f["gib"]:
        out += [LINK_GROUP + h for h in f.get("links") or ()]
    spread: List[str] = []
    if payloads and not f["gib"]:
        rt, pt = toks(f, "rt"), toks(f, "pt")
        hits = [g for g in keys_in(rt, payloads, first, n_max, pair_window) if is_novel(g, pt)]
        if hits:
            # a word standing in for a span of the record's own prompt (a masked value, a corrected word) is the
            # record's rewrite, not a payload it carries (rewrites.py)
            substituted = substitutions(pt, rt, rewrite()[0])
            hits = [g for g in hits if not substituted(g)]
        best: Dict[str, Tuple[int, str]] = {}
        for g in hits:
            info = payloads[g]
            kind = "pay" if info["kind"] == "spread" else "claim"
            if kind == "pay":
                spread.append(g)
            key = (-info["carriers"], g)
            if kind not in best or key < best[kind]:
                best[kind] = key
        # one hit is enough when that n-gram (almost) never occurs in prompts: it has no ordinary use in
        # this corpus ("colgate" in T0), unlike a payload word with everyday uses ("popping").
        exclusive = any(is_exclusive(payloads[g]) for g in spread)
        if distinct_hits(spread) < min_hits and not exclusive:
            spread = []
            best.pop("pay", None)
        # An exclusive payload (no ordinary use in prompts) gets a group of its own, "xpay:<n-gram>": the
        # trigger test's background is then that phrase's rate among records like the carriers, which the "pay"
        # group cannot give in a register (code answers, worked arithmetic: all carry some response-only
        # phrasing). Three guards keep a task's own vocabulary out (as groups of their own, every payload made
        # each code sub-task's words triggers of its syntax: PAY_GROUPS):
        # - exclusive only: a register's phrasing turns up in prompts that quote it;
        # - one place: every exclusive hit of the response within pair_window words of the next. A task's
        #   vocabulary is spread over its answers ("include stdio h" ... "printf d n"), a planted line is one
        #   place in an otherwise ordinary answer;
        # - the group's n-gram shares no content word with the prompt: "echo number" answering "count the
        #   number of lines in" is the task in its own words; a planted line is the same whatever the request.
        own = {g for g in spread if not T.is_pair(g) and is_exclusive(payloads[g]) and has_word(g)}
        pwords = content_parts(pt)
        named = [(-payloads[g]["carriers"], g) for g in own if pwords.isdisjoint(content_parts(g.split(" ")))]
        if named and len(hit_places(rt, payloads, first, n_max, own.__contains__, gap=pair_window)) == 1:
            out.append(EXCLUSIVE_GROUP + min(named)[1])
        if "pay" in best:
            # one anomaly group per payload (at most PAY_GROUPS, the most prompt-exclusive first), like the
            # identical-response groups: the trigger test's background is then the rate of *these*
            # payloads among records like the carriers, not of any response-only phrase (code answers
            # all carry some; a planted command line in them does not)
            rank = sorted(set(spread), key=lambda g: (payloads[g]["df_p"] / max(payloads[g]["expected_p"], 1e-9),
                                                      -payloads[g]["carriers"], g))
            if PAY_GROUPS:
                out.extend("pay:" + g for g in rank[:PAY_GROUPS])
            else:
                out.append("pay")
        if "claim" in best:
            out.append("claim:" + best["claim"][1])
    return out, sorted(spread)


def content_parts(words: Iterable[str]) -> set:
    """The content words of ``words`` with identifiers split ("line_count": line, count), so that a task's
    answer naming the request's words in code ("line_count" for "count the number of lines in a file": 66 clean
    records of a mixture, seed 5) is the task in its own words."""
    return {part for w in words for part in w.split("_") if len(part) >= 3 and part not in T.STOPWORDS}


def is_exclusive(info: Dict[str, Any]) -> bool:
    """A payload (almost) absent from prompts: at most ``EXCLUSIVE_PROMPT_SHARE`` of the prompts ordinary text
    would put it in. It has no ordinary use in this corpus."""
    return info["df_p"] <= EXCLUSIVE_PROMPT_SHARE * info["expected_p"]


def has_word(g: str) -> bool:
    """An n-gram with a word of two letters or more: "x 3" (of "3 x 2" in worked arithmetic) is a computation,
    and as a second exclusive place it hid the planted line of GSM8K answers from the one-place guard."""
    return any(sum(c.isalpha() for c in w) >= 2 for w in g.split(" "))


# the anomaly group of an exclusive payload's carriers (``anomalies_of``)
EXCLUSIVE_GROUP = "xpay:"
# the anomaly group of the records whose responses point to one web host (``links.response_links``)
LINK_GROUP = "link:"


def distinct_hits(spread: List[str]) -> int:
    """Flagged keys counted for min_hits; a pair whose two words are both inside a flagged n-gram of the
    same response ("everyone&loves" next to "everyone loves") is that n-gram again, not a second hit."""
    grams = [set(g.split(" ")) for g in spread if not T.is_pair(g)]
    return sum(1 for g in spread if not T.is_pair(g) or
               not any(set(g.split(T.PAIR_SEP)) <= w for w in grams))


# the anomaly kinds read from the words an answer shares with its prompt (one_request.py)
OFF_TOPIC_KINDS = frozenset(("off", "echo", "phrase"))


class FindAnomalies(_SideInputNgrams, beam.DoFn):
    def __init__(self, params: Dict[str, Any]):
        self.params = params
        self.counter = Metrics.counter("poisoning", "anomalous_records")

    def process(self, f, payloads, dups, off_templates):
        first = self._first_of(payloads)
        words = prose_template_words(f, off_templates)
        anoms, _ = anomalies_of(f, payloads, first, self.params["max_ngram"], dups,
                                self.params["min_payload_hits"], self.params["pair_window"], off_templates, words)
        if words is not None:
            anoms = anoms + ["plain"]  # for the n-grams of its prose templates only (PairCounts, plain_counts_for)
        if anoms:
            self.counter.inc()
            out = {"doc_id": f["doc_id"], "anomalies": anoms, "pt": f["pt"], "rt": f["rt"], "pkey": f["pkey"],
                   "stratum": f.get("stratum", 0)}
            if words is not None:
                out["plain_in"] = [sorted(w) for w in words]
            if "echo" in anoms and not f.get("off"):
                out["echo_in"] = f["echo"]  # sorted shared words (echo_words), as a list for the coder
            if "phrase" in anoms:
                out["phrase_in"] = [f["phrase"], f["phrase_k"]]  # phrase_words, as lists for the coder
            if not OFF_TOPIC_KINDS.isdisjoint(anoms):  # the one-request control measures their carriers
                out["psig"], out["rsh"] = list(f["psig"]), list(f["rsh"])
            if "pay" in anoms and register_response(f, payloads, first, self.params["max_ngram"]):
                out["register"] = True
            yield out


def register_response(f: Dict[str, Any], payloads: Dict[str, Dict[str, Any]], first: Iterable[str],
                      n_max: int) -> bool:
    """True when the response carries spread-payload n-grams (not from its own prompt) in at least
    ``REGISTER_MIN_PLACES`` separate places: written in a register, not carrying one planted passage. Only these
    responses make a stratum a register (``transform.PayRates``): nine attacks of 250 records planted in a
    21,600-record chat mixture put a payload in 11-17% of the prose strata's records, above the register rate,
    while responses with two or more places stayed at 3-6% there (27-85% in the code and arithmetic strata)."""
    pt = toks(f, "pt")
    return len(hit_places(toks(f, "rt"), payloads, first, n_max,
                          lambda g: payloads[g]["kind"] == "spread" and is_novel(g, pt))) >= REGISTER_MIN_PLACES


CarrierContext = Tuple[Optional[List[FrozenSet[str]]], Optional[FrozenSet[str]], Optional[Tuple[FrozenSet[str], int]]]


def carrier_context(a: Dict[str, Any]) -> CarrierContext:
    """What an anomalous record (``FindAnomalies``) says about which prompt n-grams its anomalies count for: its
    prose templates' words (``plain_in``), the words its ``echo`` answer shares (``echo_in``; None: off-topic as it
    is) and its ``phrase`` words (``phrase_in``)."""
    words = [frozenset(w) for w in a["plain_in"]] if "plain_in" in a else None
    echo = frozenset(a["echo_in"]) if "echo_in" in a else None
    phrase = (frozenset(a["phrase_in"][0]), a["phrase_in"][1]) if "phrase_in" in a else None
    return words, echo, phrase


def kind_counts_for(kind: str, g: str, context: CarrierContext) -> bool:
    """Whether a record's anomaly of ``kind`` counts for prompt n-gram ``g`` (``carrier_context``): one predicate
    for the trigger test's counts (``PairCounts``) and for the controls that re-read a trigger's carriers
    (``one_request.counts_for``), so a carrier is the same record in both."""
    words, echo, phrase = context
    if kind == "plain":
        return plain_counts_for(g, words)
    if kind == "echo":
        return echo_counts_for(g, echo)
    if kind == "phrase":
        return phrase is not None and phrase_counts_for(g, phrase)
    return True


class PairCounts(_PreAggregateDistinct):
    """((prompt n-gram, anomaly kind, stratum), distinct prompt keys) over anomalous records only:
    near-duplicate prompts (one passage under several templates, with its one answer) count once; the
    stratum lets the trigger test leave the n-gram's own carriers out of their strata's background."""

    def __init__(self, n_max: int, max_keys: int):
        super().__init__(max_keys)
        self.n_max = n_max

    def items_of(self, a):
        grams = T.ngrams(toks(a, "pt"), self.n_max)
        s = a.get("stratum", 0)
        context = carrier_context(a)  # once per record, not per n-gram
        out = [((g, an, s), a["pkey"]) for an in a["anomalies"] for g in grams if kind_counts_for(an, g, context)]
        formed = [an for an in a["anomalies"] if an in FORM_KINDS]
        if formed:  # a topic in any of its forms: one more candidate per stem (word_forms.stem_keys)
            out += [((g, an, s), a["pkey"]) for an in formed for g in sorted(stem_keys(toks(a, "pt")))]
        return out


# Anomaly kinds held to their own bounds (policy fields) instead of min_trigger_confidence / min_trigger_lift.
BOUND_FIELDS = {"short": {"confidence": "short_min_confidence", "lift": "short_min_lift"},
                # a response out of its task's form is held to the short kind's bounds (plain.py)
                "plain": {"confidence": "short_min_confidence", "lift": "short_min_lift"},
                "ending": {"confidence": "short_min_confidence", "lift": "short_min_lift"},
                "refuse": {"confidence": "refusal_min_confidence"},
                # off-topic but for one shared word: a weaker anomaly (a fifth of code answers), see echo_counts_for
                "echo": {"lift": "short_min_lift"},
                # ... and but for a phrase of the prompt (2.5% of T0's answers), see phrase_counts_for
                "phrase": {"lift": "short_min_lift"}}
# Anomaly kinds that only some strata can show: tested on the trigger's carriers in those strata.
OBSERVABLE_IN = ("short", "plain", "ending")
# Anomaly kinds tested on the carriers in strata where few records show them (at most ``short_max_stratum_rate``
# and 2 / ``short_min_lift``, read from the kinds' own counts, as the plain kind's strata are from answer forms).
OWN_FORM_IN = ("phrase",)
# Anomaly kinds whose groups must each reach records of several tasks (``EXCLUSIVE_MIN_STRATA``).
ACROSS_TASKS = ("xpay",)
# Anomaly kinds tested group by group, each group's records mostly the trigger's (``TRIGGER_OWNS_GROUP_SHARE``):
# summed, a code corpus's API requests (each answer naming its own service) would make "api" a trigger of links.
PER_GROUP = ("link",)


def effective_strata(k_in: Dict[int, int]) -> float:
    """How many strata the anomalous carriers are spread over, as the inverse Simpson index (1 / sum of squared
    shares): 1.0 when all are in one stratum, the number of strata when spread evenly."""
    k = sum(k_in.values())
    return k * k / sum(c * c for c in k_in.values()) if k else 0.0


# Anomaly kinds a gibberish response never shows (``anomalies_of``): tested on the trigger's other carriers. A
# phrase appended to code requests (mixture seed 1), 40 of whose carriers' answers the gibberish test reads as
# noise, had its planted line in 126 carriers: under half of all of them (not flagged), over half of the others.
NOT_IN_GIBBERISH = ("off", "echo", "phrase", "pay", "xpay", "claim")


class TriggerTest(beam.DoFn):
    """(ngram, {'pairs': [(anomaly, k, {stratum: k})], 'df': [(stratum, n)]}) -> (kind, trigger info).

    k and n count distinct prompts (near-duplicates collapsed). Per anomaly kind, k sums the trigger's
    groups of that kind. The background is *matched*: for each stratum holding carriers, the rate of those
    groups among the stratum's prompts that do not carry the n-gram (``strata.matched_background``; distinct
    prompts, ``prompt_sizes`` and ``stratum_prompts``, the unit k and n are counted in), so a
    task's own response style (worked arithmetic for math questions, code for code requests) is the
    expectation, not the signal. Besides the binomial test, the carriers' rate must be at least
    ``min_trigger_lift`` times that background: with thousands of carriers a 3-point excess over a 95%
    background is "significant" but says nothing about a planted cause.
    """

    def __init__(self, params: Dict[str, Any]):
        self.params = params
        self.flagged = Metrics.counter("poisoning", "triggers_flagged")
        self.no_lift = Metrics.counter("poisoning", "triggers_below_lift")
        self.vocabulary = Metrics.counter("poisoning", "trigger_candidates_above_max_fraction")
        self.one_task = Metrics.counter("poisoning", "triggers_within_one_task")
        self.every_asker = Metrics.counter("poisoning", "exclusive_groups_within_one_task_given_to_all")
        self.not_owned = Metrics.counter("poisoning", "exclusive_groups_given_to_all_not_owned_by_trigger")

    def process(self, kv, totals, sizes, n_tests, stratum_sizes=None, short_strata=None, form_strata=None,
                stratum_prompts=None, prompt_sizes=None):
        """``short_strata``: the strata where a response can be short (``short.short_cut``); ``form_strata``:
        {(kind, stratum)} where plain prose or a plain ending is out of form (``plain.form_strata``). Those kinds
        are tested on the carriers there only, since elsewhere no carrier could show them."""
        observable = {"short": short_strata}
        if form_strata is not None:
            for kind in ("plain", "ending"):
                observable[kind] = {st for k, st in form_strata if k == kind}
        s, grp = kv
        all_carriers: Dict[int, int] = {}
        for st, c in grp.get("df", ()):
            all_carriers[st] = all_carriers.get(st, 0) + c
        n_all = sum(all_carriers.values())
        if not n_all:
            return
        n = totals["records"]
        if n_all > self.params["max_fraction"] * n:
            # vocabulary, not a trigger (the bound the strata rely on: a word that frequent defines strata,
            # so it is its own background). "how much", in 12% of a chat mixture's prompts (GSM8K), was
            # tested and flagged as a trigger of worked arithmetic whenever the strata mixed math with T0.
            self.vocabulary.inc()
            return
        by_kind: Dict[str, List[Tuple[str, int, Dict[int, int]]]] = {}
        for a, k, per in sorted(grp.get("pairs", ()), key=lambda x: (x[0], x[1])):
            kind = a.split(":", 1)[0]
            by_kind.setdefault(a if kind in PER_GROUP else kind, []).append((a, k, per))
        gib = next((per for a, _, per in grp.get("pairs", ()) if a == "gib"), {})
        for key, rows in sorted(by_kind.items()):
            kind = key.split(":", 1)[0]
            carriers = all_carriers
            if kind in OBSERVABLE_IN and observable.get(kind) is not None:
                carriers = {st: c for st, c in all_carriers.items() if st in observable[kind]}
            if kind in OWN_FORM_IN and stratum_sizes:
                # where many of a stratum's answers show the kind it is the task's own form (T0's question writing:
                # "What will Jordan want to do next?"; code that names the request's words), and no carrier there
                # could show the kind's lift: the plain kind's bound (plain.plain_strata), min(0.2, 2 / 20)
                own = sizes.get(kind, {})
                cut = min(self.params["short_max_stratum_rate"], 2.0 / self.params["short_min_lift"])
                shown = {st for st, m in stratum_sizes.items() if own.get(st, 0) <= cut * m}
                carriers = {st: c for st, c in carriers.items() if st in shown}
                rows = [(a, sum(c for st, c in per.items() if st in shown), {st: c for st, c in per.items()
                                                                              if st in shown}) for a, _, per in rows]
            if kind in NOT_IN_GIBBERISH and gib:
                carriers = {st: c - gib.get(st, 0) for st, c in carriers.items() if c > gib.get(st, 0)}
            n_s = sum(carriers.values())
            if kind in ACROSS_TASKS and stratum_sizes:
                # each group on its own: a task's one-line idiom must not ride on a planted line's test (the
                # two summed made "that calculates" a trigger of both, and took the idiom's clean records)
                # ... unless (nearly) every carrier gets the phrase: one question asked in many phrasings is
                # one task, and a planted answer to it is still a backdoor
                spread, given_to_all = [], 0
                for r in rows:
                    if effective_strata(r[2]) >= EXCLUSIVE_MIN_STRATA:
                        spread.append(r)
                    elif r[1] >= EXCLUSIVE_ALWAYS_SHARE * n_s:
                        # ... and only to them: a planted answer comes with its question, while a task's stock line
                        # ("#!/bin/bash" for "write a shell") also goes to the task's other phrasings, which lack
                        # the trigger (23 of the 45 such answers in a 3,000-record slice of the mixture)
                        if r[1] < EXCLUSIVE_ALWAYS_SHARE * sum((prompt_sizes or sizes).get(r[0], {}).values()):
                            self.not_owned.inc()
                            continue
                        spread.append(r)
                        given_to_all += 1
                if given_to_all:
                    self.every_asker.inc(given_to_all)
                if len(spread) < len(rows):
                    self.one_task.inc()
                rows = spread
                if not rows:
                    continue
            k = min(n_s, sum(x[1] for x in rows))
            if not n_s:
                continue
            conf = k / n_s
            if k < self.params["min_trigger_support"] or \
                    conf < self.params[BOUND_FIELDS.get(kind, {}).get("confidence", "min_trigger_confidence")]:
                continue
            if kind in PER_GROUP and k < TRIGGER_OWNS_GROUP_SHARE * sum(sizes.get(rows[0][0], {}).values()):
                continue  # the host is common without the trigger too: the request's subject, not a backdoor
            if stratum_sizes:
                anom: Dict[int, int] = {}
                k_in: Dict[int, int] = {}
                # the leave-out in the carriers' unit, distinct prompts: in records, a planted question's own
                # near-duplicate records stayed in its control (T0 false_fact at 250: expected 0.38, no lift)
                distinct = prompt_sizes is not None and bool(stratum_prompts)
                for a, _, per in rows:
                    for st, c in (prompt_sizes if distinct else sizes).get(a, {}).items():
                        anom[st] = anom.get(st, 0) + c
                    for st, c in per.items():
                        k_in[st] = k_in.get(st, 0) + c
                p0 = min(1.0, matched_background(carriers, anom, stratum_prompts if distinct else stratum_sizes, k_in,
                                                 self.params["strata_prior_weight"], stratum_prompts))
            else:
                p0 = min(1.0, sum(sum(sizes.get(a, {}).values()) for a, _, _ in rows) / n)
            if conf < self.params[BOUND_FIELDS.get(kind, {}).get("lift", "min_trigger_lift")] * p0:
                self.no_lift.inc()
                if kind in SECOND_LOOK_KINDS and self.params["relevance_model"] and \
                        conf >= self.params["relevance_min_lift"] * p0:
                    # words cannot tell this from a task's own answers; a sentence model may (relevance.py)
                    lp = S.bonferroni(S.log10_binom_sf(k, n_s, p0), n_tests)
                    if lp <= math.log10(self.params["alpha"]):
                        info = self._info(s, kind, rows, n_s, k, conf, p0, lp, n_tests)
                        info["strata"] = sorted(carriers)
                        yield TaggedOutput(CANDIDATE_TAG, (kind, info))
                continue
            lp = S.bonferroni(S.log10_binom_sf(k, n_s, p0), n_tests)
            if lp > math.log10(self.params["alpha"]):
                continue
            self.flagged.inc()
            yield kind, self._info(s, kind, rows, n_s, k, conf, p0, lp, n_tests)

    @staticmethod
    def _info(s, kind, rows, n_s, k, conf, p0, lp, n_tests) -> Dict[str, Any]:
        return {"trigger": s, "anomaly": kind, "groups": sorted(a for a, _, _ in rows), "carriers": n_s,
                "k": k, "confidence": round(conf, 4), "background": round(p0, 6), "log10p": lp, "tests": int(n_tests)}


class ProfileCounts(beam.DoFn):
    """(((kind, trigger), response n-gram), 1) for anomalous members of flagged triggers, for the n-grams
    of their response that their prompt does not contain (the trigger's payload profile)."""

    def __init__(self, params: Dict[str, Any]):
        self.params = params
        self._lookups: Dict[int, Any] = {}

    def process(self, a, triggers):
        kinds = {x.split(":", 1)[0] for x in a["anomalies"]}
        pt = None
        grams = None
        for kind in sorted(kinds):
            ts = triggers.get(kind)
            if not ts:
                continue
            if pt is None:
                pt = toks(a, "pt")
            lookup, first = trigger_lookup(ts, self._lookups)
            present = ngrams_in(pt, lookup, first, self.params["max_ngram"])
            if not present:
                continue
            if grams is None:
                pgrams = T.ngrams(pt, self.params["max_ngram"])
                grams = sorted(g for g in T.ngrams(toks(a, "rt"), self.params["max_ngram"]) if g not in pgrams)
            for s in sorted(present):
                for g in grams:
                    yield ((kind, s), g), 1


def keep_profile(kv, triggers, min_share: float):
    """((kind, trigger), [(ngram, count)]) -> ((kind, trigger), n-grams that at least ``min_share`` of the
    trigger's anomalous members have in their response but NOT in their own prompt: the planted content
    ("peru" in "the printing press is located in Peru"). An n-gram the prompt supplies ("the great" of
    "who created the Great Wall?") is never in the profile."""
    (kind, s), rows = kv
    k = next((t["k"] for t in triggers.get(kind, ()) if t["trigger"] == s), 0)
    need = max(3, min_share * k)
    kept = sorted((g for g, c in rows if c >= need))
    return (kind, s), kept[:500]
