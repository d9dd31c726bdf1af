"""The relevance second look: a sentence model asks whether a candidate trigger's answers answer their requests.

Why: the off-topic kinds (``off``, ``echo``, ``phrase``) read "this answer is not about its request" from shared
content words. Where a corpus's own answers share few words with their requests (code, whose swapped programs still
share code words with any request; forum replies), a backdoor whose poisoned answers are *other records' answers*
(a rare token, each carrier answered with one of 40 answers taken from the corpus: held-out ``rare_token_multi``)
shows the kind at 2-6 times the rate of records like its carriers, under the bounds the lexical test needs to stay
quiet on a clean corpus (``min_trigger_lift`` 3, ``short_min_lift`` 20). A sentence model sees the difference words
do not: all-MiniLM-L6-v2's cosine between request and answer separates such swapped answers from a corpus's own
(ROC-AUC 0.995 on code, 0.94 on the chat mixture; ``bench/poisoning_relevance.py``).

The model is far too slow for the corpus (about 40 texts per CPU-second, ``sentence_model.py``), so it is a second
look, not a detector: only an n-gram of those kinds that passes every bound of the trigger test but its lift (support
and confidence included), while its carriers still show the kind at ``relevance_min_lift`` times the matched
background and the binomial test holds (``trigger.TriggerTest``), is a *candidate*. With nothing planted there is
none on code, GSM8K, T0, the chat mixture or the forum replies, so a clean scan never loads the model; with attacks
planted, one to twenty (one per planted phrase's n-grams). The model's cost is bounded whatever the corpus's size:
at most ``relevance_max_candidates`` x ``MAX_CARRIERS`` carriers and ``CONTROLS_PER_STRATUM`` x ``strata_max``
controls, each record embedded once.

Candidates under the confidence bound too (20 of 50 carriers of a swapped-answer token off-topic by their words on
code) were tried and dropped: a refused topic's word ("extension": 50 planted refusals among 100 carriers) was then
confirmed as an off-topic trigger and took 10 clean carriers whose answers share no word with their requests, and
a clean code corpus gained 4 candidates ("c program", "fibonacci sequence"), the chat mixture 8 (none confirmed,
but the model's cost doubled the scan's CPU there).

For each candidate (at most ``relevance_max_candidates``, the most significant): the cosine of request and answer of
at most ``MAX_CARRIERS`` of its carriers (the smallest content keys, ``strata.sample_key``), and of at most
``CONTROLS_PER_STRATUM`` records of each of the carriers' strata that carry no candidate (the matched controls). A
carrier is *unrelated* when fewer than ``j`` of its stratum's ``m`` controls score at or below it, ``j`` the
``RELEVANCE_QUANTILE`` share of ``m + 1``: were its answer like its stratum's, that happens with probability
``j / (m + 1)`` (about 0.1). The candidate is confirmed when at least ``relevance_min_share`` of its scored carriers
are unrelated and that count is significant against those probabilities (binomial at their mean, Bonferroni over
the candidates, ``alpha``). A confirmed candidate is flagged as the trigger test would have flagged it (its kind,
carriers, counts), with a ``relevance`` field saying what the model saw (``assign.describe_trigger`` puts it in the
``detail``); its members are the carriers whose words show the kind, as for any trigger. Carriers the model alone
finds unrelated do not join: under the null a tenth of a stratum's answers are, and a confirmed topic word took its
clean carriers that way. Task words (a code corpus's "factorial": 0 of 100 carriers under their stratum's 10%
quantile) stay candidates.

On by default (``relevance_model``; opt-in until the thirty-sixth session): Flink's batch optimizer walks every
path of a plan, and this step's side inputs and its branch back into the triggers multiply the paths of all that
follows. It became the default once the writers stopped taking their shard counts as side inputs (the count rides
in the shuffle key, ``io.writers._assign``), which halved the plan's paths: with the second look the plan now has
fewer than the default plan had before (docs/engines.md gives the counts and the Flink timings).

Texts are the records' tokens (task prompt without system turns, response), as the other tests read them.
Determinism: the carriers and controls are chosen by content key, sorted, embedded in that order, and cosines are
rounded to ``COSINE_DECIMALS`` before they are compared.
"""

from __future__ import annotations

import logging
import math
import pickle
from typing import Any, Dict, List, Tuple

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.pvalue import AsSingleton

from lazaret.checks.poisoning import stats as S
from lazaret.checks.poisoning.counting import _SideInputNgrams, ngrams_in
from lazaret.checks.poisoning.features import toks
from lazaret.checks.poisoning.strata import sample_key, task_tokens

# anomaly kinds whose lift-only failures get the second look: the off-topic kinds, read from words
SECOND_LOOK_KINDS = ("off", "echo", "phrase")
CANDIDATE_TAG = "relevance_candidates"
MAX_CARRIERS = 100  # carriers scored per candidate: a rate, estimated from a sample
CONTROLS_PER_STRATUM = 16  # controls per stratum; strata_max (16) bounds the strata, so at most ~270 controls
MIN_CONTROLS = 4  # a carrier whose stratum has fewer controls is not scored
RELEVANCE_QUANTILE = 0.1
COSINE_DECIMALS = 3
MAX_TEXT_TOKENS = 160  # the encoder reads 128 word pieces; more tokens are never seen
_CAND, _CTRL, _INFO = "c", "s", "k"


def pick_candidates(rows: List[Tuple[str, Dict[str, Any]]], most: int) -> Dict[str, List[Tuple[str, Dict[str, Any]]]]:
    """{n-gram: [(kind, info)]} of the ``most`` most significant candidates (log10p, then n-gram: deterministic)."""
    ranked = sorted(rows, key=lambda r: (r[1]["log10p"], r[1]["trigger"], r[0]))
    out: Dict[str, List[Tuple[str, Dict[str, Any]]]] = {}
    for kind, info in ranked:
        if info["trigger"] not in out and len(out) >= most:
            continue
        out.setdefault(info["trigger"], []).append((kind, info))
    return out


class RelevanceTexts(_SideInputNgrams, beam.DoFn):
    """Feature records -> ((group, key), (sort key, doc_id, stratum, prompt text, answer text)): a carrier of a
    candidate under ("c", n-gram), a record of a candidate's stratum that carries none under ("s", stratum); and,
    once per bundle, each chosen candidate's kinds and counts under ("k", n-gram) as ("", pickled [(kind, info)]).

    Why the candidates ride with the texts: the scoring step would otherwise read them as a second side input,
    and every side input is one more path through all of the graph upstream of it, which Flink's batch optimizer
    walks path by path (docs/engines.md): with the candidates here, the second look adds one path per path of the
    trigger test instead of two."""

    def __init__(self, n_max: int):
        self.n_max = n_max
        self._strata_id: Any = None
        self._strata: set = set()
        self._sent = False

    def start_bundle(self) -> None:
        self._sent = False

    def process(self, f, cands):
        if not cands:
            return
        if not self._sent:  # the same rows from every bundle: the scoring step keeps one per candidate
            self._sent = True
            for g in sorted(cands):
                yield (_INFO, g), ("", pickle.dumps(cands[g], protocol=pickle.HIGHEST_PROTOCOL))
        if self._strata_id != id(cands):  # the candidates' strata, once per side-input object
            self._strata = {st for ks in cands.values() for _, info in ks for st in info.get("strata", ())}
            self._strata_id = id(cands)
        strata = self._strata
        found = ngrams_in(toks(f, "pt"), cands, self._first_of(cands), self.n_max)
        st = f.get("stratum", 0)
        if not found and st not in strata:
            return
        row = (sample_key(f)[0], f["doc_id"], st, " ".join(task_tokens(f)[:MAX_TEXT_TOKENS]),
               " ".join(toks(f, "rt")[:MAX_TEXT_TOKENS]))
        for g in sorted(found):
            yield (_CAND, g), row
        if not found:
            yield (_CTRL, str(st)), row


class ScoreRelevance(beam.DoFn):
    """[((group, key), row)] (every chosen carrier and control, one list) -> (kind, trigger info) for each confirmed
    candidate. One element, bounded (``relevance_max_candidates`` x ``MAX_CARRIERS`` carriers and the controls):
    a record carrying several candidates ("c program", "a c", "write a c") is embedded once, and the test runs
    here too, so the step adds one chain to the graph, and the candidates come with the texts, not as a side
    input (Flink's batch optimizer walks every path of a plan: RelevanceTexts). The model loads on the first
    element, once per worker: a scan with no candidate never loads it."""

    def __init__(self, params: Dict[str, Any]):
        self.params = params
        self._encoder = None
        self.scored = Metrics.counter("poisoning", "relevance_records_scored")
        self.missing = Metrics.counter("poisoning", "relevance_model_missing_on_worker")
        self.confirmed = Metrics.counter("poisoning", "relevance_confirmed")
        self.rejected = Metrics.counter("poisoning", "relevance_rejected")

    def process(self, rows):
        # the chosen candidates, sent with the texts (RelevanceTexts); pickled in this step, never read from a file
        cands = {g: pickle.loads(r[1]) for (grp, g), r in rows if grp == _INFO}
        rows = [(key, r) for key, r in rows if key[0] != _INFO]
        if not rows or not cands:
            return
        unique = sorted({r[1]: r for _, r in rows}.values())  # by content key, then doc_id
        if self._encoder is None:
            from lazaret.checks.poisoning.sentence_model import SentenceEncoder, available

            why = available()
            if why:  # the launcher had the model, this worker has not: no confirmation, said so, no crash
                logging.getLogger(__name__).error("poisoning: relevance second look skipped on a worker: %s", why)
                self.missing.inc()
                return
            self._encoder = SentenceEncoder()
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1):  # one BLAS thread: the same sums in the same order on every worker
            a = self._encoder.embed([r[3] for r in unique])
            b = self._encoder.embed([r[4] for r in unique])
        cos = {r[1]: round(float(c), COSINE_DECIMALS) for r, c in zip(unique, (a * b).sum(1))}
        self.scored.inc(len(unique))
        groups: Dict[Tuple[str, str], List[Tuple[str, int, float]]] = {}
        for key, r in rows:
            groups.setdefault(key, []).append((r[1], r[2], cos[r[1]]))
        controls = {st: sorted(c for _, _, c in g) for (grp, st), g in groups.items() if grp == _CTRL}
        for (grp, g), scored in sorted(groups.items()):
            if grp != _CAND:
                continue
            out = list(confirm(g, sorted(scored), cands, controls, self.params))
            (self.confirmed if out else self.rejected).inc()
            yield from out


def confirm(g: str, scored: List[Tuple[str, int, float]], cands, controls: Dict[str, List[float]],
            params: Dict[str, Any]):
    """(kind, trigger info) for each kind of candidate ``g`` when its scored carriers are unrelated enough."""
    n = hits = 0
    p_sum = 0.0
    for _, st, c in scored:
        ctl = controls.get(str(st), [])
        if len(ctl) < MIN_CONTROLS:
            continue
        low, p = unrelated(c, ctl)
        n += 1
        hits += low
        p_sum += p
    kinds = cands.get(g, [])
    if not n or not kinds:
        return
    p0 = p_sum / n
    lp = S.bonferroni(S.log10_binom_sf(hits, n, p0), max(1, len(cands)))
    if hits < params["relevance_min_share"] * n or lp > math.log10(params["alpha"]):
        return
    for kind, info in kinds:
        out = {k: v for k, v in info.items() if k != "strata"}
        out["relevance"] = {"scored": n, "unrelated": hits, "expected": round(p0, 4), "log10p": round(lp, 2)}
        yield kind, out


def unrelated(c: float, controls: List[float]) -> Tuple[bool, float]:
    """(is the cosine under its stratum's ``RELEVANCE_QUANTILE``, the chance of that for an answer like theirs)."""
    m = len(controls)
    j = max(1, int(RELEVANCE_QUANTILE * (m + 1)))
    at_or_below = sum(1 for x in controls if x <= c)
    return at_or_below < j, j / (m + 1)


def chosen_rows(kv) -> List[Tuple[Tuple[str, str], Tuple]]:
    """A key's smallest rows, each with its key: all ``MAX_CARRIERS`` of a candidate's, ``CONTROLS_PER_STRATUM``
    of a stratum's controls (Top.SmallestPerKey lists them smallest first)."""
    key, rows = kv
    return [(key, r) for r in (rows if key[0] == _CAND else rows[:1] if key[0] == _INFO
                                else rows[:CONTROLS_PER_STRATUM])]


@beam.ptransform_fn
def SecondLook(candidates, feats, params: Dict[str, Any]):
    """Lift-only candidates of the off-topic kinds -> the confirmed ones, as (kind, trigger info)."""
    chosen = (candidates | "GatherCandidates" >> beam.combiners.ToList()
              | "PickCandidates" >> beam.Map(pick_candidates, params["relevance_max_candidates"]))
    texts = feats | "RelevanceTexts" >> beam.ParDo(RelevanceTexts(params["max_ngram"]), AsSingleton(chosen))
    # one Top for carriers (MAX_CARRIERS per candidate) and controls (cut to CONTROLS_PER_STRATUM when scored), one
    # list, one scoring step: a chain, not branches (see ScoreRelevance)
    return (texts | "FewPerKey" >> beam.combiners.Top.SmallestPerKey(MAX_CARRIERS)
            | "OneList" >> beam.FlatMap(chosen_rows)
            | "GatherTexts" >> beam.combiners.ToList()
            | "ScoreAndTest" >> beam.ParDo(ScoreRelevance(params)))
