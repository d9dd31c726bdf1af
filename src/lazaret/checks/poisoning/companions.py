"""The companion control: a candidate trigger of an out-of-form answer is tested against the records of its carriers'
own task, named by the other words they share.

Why: the ``plain`` and ``ending`` kinds (plain.py) mark prose in a stratum whose answers are code or arithmetic. A
stratum is fitted on a sample, and a small task answered in prose by design can share one with code: a random
6,000 records of the chat mixture hold ~26 of T0's common_gen prompts ("From the concepts mentioned below, generate
a sentence", "Put the concepts together to form a sentence"), k-means put them in strata of code, and "concepts"
was a trigger of plain prose (27 clean records flagged, 0.45%). The full mixture holds enough of them for their
templates to explain their prose (``trigger.prose_template_words``); a slice of it does not, and a user's corpus is
any size. Records like the carriers are better named by the carriers themselves: what else do their prompts share?
The ``pay`` kind (an answer carrying a payload found on the corpus) has the same confound: in 700 records of code,
requests to read a CSV file answered with file-reading code made "a python script" a payload trigger (21 of 30
requests, 27 clean records flagged) where "csv" without it was answered with a payload half the time.

How: for each flagged trigger of those kinds, the words that at least ``COMPANION_SHARE`` of its anomalous
carriers hold away from the trigger (not within ``max_ngram`` words of it: those are the trigger's own phrase) are
its companions; a companion is a *task's* mark when it is ``min_trigger_lift`` times as common among the carriers as
among the other records of their strata ("sentence": 1.00 against 0.09). The control is the records of those strata
that hold the companion but no flagged trigger of the kind (a planted question asked in many phrasings has records
without one of its words but with another: they are the attack, not its task), weighted by stratum as the carriers
are; when at least
``MIN_CONTROL_ANSWERS`` of them answer in the same form and the carriers do not reach the kind's lift over their
rate ("sentence" without "concepts": 0.30 of 25 answer in prose, 1.00 / 0.30 = 3.3 < 20), the trigger is the task's
own wording, not a cause. A backdoor's hosts are varied requests: nothing but the trigger's phrase is shared by
half of them; hosts drawn from one task ("sort a list" with a name appended) share its words, and the records of
that task without the name answer in code: the control keeps the trigger.

The one-request control (one_request.py) rides on the same passes: a flagged trigger of an off-topic kind is a
candidate too, with no companion; its carriers give their MinHash slots instead of their words, and the decision
reaches the one filter through a row its carriers give ``ControlCounts``.

Cost: three small passes, only when a trigger of these kinds was flagged: the anomalous carriers (their words), then
every record holding a companion (one set intersection per record; for ``pay`` and the off-topic kinds, the
anomalous records after a shuffle), then one decision over a few counts.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, Iterator, List, Optional, Set, Tuple

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.pvalue import AsDict, AsSingleton

from lazaret.checks.poisoning import text as T
from lazaret.checks.poisoning.counting import first_tokens, ngrams_in
from lazaret.checks.poisoning.features import toks
from lazaret.checks.poisoning.one_request import OFF_TOPIC_KINDS, counts_for, is_one_request, measure_items
from lazaret.checks.poisoning.plain import FORM_KINDS
from lazaret.checks.poisoning.signals import COMPANION_SHARE, MIN_CONTROL_ANSWERS
from lazaret.checks.poisoning.trigger import BOUND_FIELDS, plain_counts_for
from lazaret.graph.combine import CountPerElement, SumTuplesFn

# anomaly kind -> the record feature that shows it wherever the record sits (plain.py: "prose", "prose_end"); None: the
# anomaly itself (FindAnomalies), read from the anomalous records, since it needs the payloads found on the corpus
COMPANION_KINDS: Dict[str, Optional[str]] = dict(FORM_KINDS)
COMPANION_KINDS["pay"] = None
# at most this many candidates, and companions per candidate, travel as side inputs (the strongest first)
MAX_CANDIDATES = 500
MAX_COMPANIONS = 8
# the word a one-request trigger's rows carry in ``ControlCounts``' keys (no word is empty)
ONE_REQUEST = ""

Key = Tuple[str, str]  # (anomaly kind, trigger)


def pick_candidates(rows: Iterable[Tuple[str, Dict[str, Any]]]) -> Dict[Key, Dict[str, Any]]:
    """The flagged triggers of the companion kinds and the off-topic kinds: {(kind, trigger): {"confidence"}} (the
    most significant first when over ``MAX_CANDIDATES``)."""
    cands = sorted(((info["log10p"], kind, info["trigger"], info["confidence"]) for kind, info in rows
                    if kind in COMPANION_KINDS or kind in OFF_TOPIC_KINDS))
    return {(kind, g): {"confidence": conf} for _, kind, g, conf in cands[:MAX_CANDIDATES]}


def _lookup(cands: Dict[Key, Any]) -> Tuple[Dict[str, List[str]], Any]:
    """(trigger -> its kinds, first tokens) for ``ngrams_in``."""
    by_g: Dict[str, List[str]] = {}
    for kind, g in sorted(cands):
        by_g.setdefault(g, []).append(kind)
    return by_g, first_tokens(by_g)


def away_from(tokens: List[str], g: str, window: int) -> Set[str]:
    """The words of ``tokens`` not within ``window`` tokens of an occurrence of n-gram ``g``, stopwords and the
    trigger's own words left out."""
    words = g.split(" ")
    n = len(words)
    near: Set[int] = set()
    for i in range(len(tokens) - n + 1):
        if tokens[i:i + n] == words:
            near.update(range(max(0, i - window), min(len(tokens), i + n + window)))
    own = set(words)
    return {t for i, t in enumerate(tokens) if i not in near and t not in own and t not in T.STOPWORDS}


class CarrierWords(beam.DoFn):
    """Anomalous records -> ((kind, trigger), ("k",)), ((kind, trigger), ("c", confidence)), ((kind, trigger), ("s",
    stratum)) and ((kind, trigger), ("w", word)) for each candidate whose anomaly the record shows and whose trigger its
    prompt holds: counted, they give the carriers, their strata and their shared words (and the candidate's
    confidence, so that the candidates' list is read by this step alone). A candidate of an off-topic kind gets the
    carrier's MinHash slots instead (``one_request.measure_items``), counted once per distinct value."""

    def __init__(self, params: Dict[str, Any]):
        self.n_max = params["max_ngram"]
        self._cache: Tuple[Any, Any] = (None, None)

    def process(self, a: Dict[str, Any], cands: Dict[Key, Any]) -> Iterator[Tuple[Key, Tuple]]:
        kinds = [k for k in a["anomalies"] if k in COMPANION_KINDS or k in OFF_TOPIC_KINDS]
        if not kinds or not cands:
            return
        if self._cache[0] is not cands:
            self._cache = (cands, _lookup(cands))
        by_g, first = self._cache[1]
        pt = toks(a, "pt")
        present = ngrams_in(pt, by_g, first, self.n_max)
        if not present:
            return
        words = [frozenset(w) for w in a["plain_in"]] if "plain_in" in a else None
        st = a.get("stratum", 0)
        for g in sorted(present):
            for kind in by_g[g]:
                if kind not in kinds or (kind == "plain" and not plain_counts_for(g, words)):
                    continue
                key = (kind, g)
                yield key, ("k",)
                yield key, ("c", cands[key]["confidence"])  # carried along: each singleton has one consumer
                if kind in OFF_TOPIC_KINDS:
                    if counts_for(kind, g, a) and "psig" in a:
                        for tag, v in measure_items(a):
                            yield key, ("m", tag, v)
                    continue
                yield key, ("s", st)
                for w in sorted(away_from(pt, g, self.n_max)):
                    yield key, ("w", w)


def choose_companions(counts: List[Tuple[Tuple[Key, Tuple], int]],
                      params: Dict[str, Any]) -> Dict[Key, Dict[str, Any]]:
    """Counted ``CarrierWords`` -> {(kind, trigger): {"k": carriers, "confidence", "strata": {stratum: carriers},
    "words": {word: carriers}, "one": one request answered one way}} for every candidate with carriers, with the
    words at least ``COMPANION_SHARE`` of the carriers hold (at most ``MAX_COMPANIONS``; none for most)."""
    per: Dict[Key, Dict[str, Any]] = {}
    distinct: Dict[Key, Dict[Tuple, int]] = {}
    for (key, item), c in counts:
        e = per.setdefault(key, {"k": 0, "confidence": 1.0, "strata": {}, "words": {}})
        if item[0] == "m":  # one distinct value of a carrier's MinHash slot (one_request.measure_items)
            seen = distinct.setdefault(key, {})
            seen[item[1]] = seen.get(item[1], 0) + 1
        elif item[0] == "k":
            e["k"] += c
        elif item[0] == "c":
            e["confidence"] = item[1]
        elif item[0] == "s":
            e["strata"][item[1]] = e["strata"].get(item[1], 0) + c
        else:
            e["words"][item[1]] = c
    out: Dict[Key, Dict[str, Any]] = {}
    for key in sorted(per):
        e = per[key]
        common = sorted(((-c, w) for w, c in e["words"].items() if c >= COMPANION_SHARE * e["k"]))
        one = key in distinct and is_one_request(distinct[key], params)[0]
        out[key] = dict(e, strata=dict(sorted(e["strata"].items())), words={w: -c for c, w in common[:MAX_COMPANIONS]},
                        one=one)
    return out


class ControlCounts(beam.DoFn):
    """Every record holding a candidate's companion in one of the candidate's carrier strata -> ((kind, trigger,
    entry, word, stratum), (records, records without any flagged trigger of the kind, of those the ones whose answer
    shows the kind's form)). ``entry`` is the candidate's ``choose_companions`` entry as a tuple, so that the decision
    reads everything from these rows (one consumer per singleton: see ``CompanionControl``).

    Reads the features and the anomalous records flattened into one input: a record's features count it (and its
    form, for the form kinds); its anomalous record, when it has one, counts its answer for the kinds that are an
    anomaly found on the corpus (``pay``: no feature of the record alone says which answers carry a payload)."""

    def __init__(self, params: Dict[str, Any]):
        self.n_max = params["max_ngram"]
        self._cache: Tuple[Any, Any] = (None, None)

    @staticmethod
    def _index(comp: Dict[Key, Dict[str, Any]]):
        by_word: Dict[str, List[Key]] = {}
        for key in sorted(comp):
            for w in comp[key]["words"]:
                by_word.setdefault(w, []).append(key)
        by_g, first = _lookup(comp)
        entries = {key: entry_tuple(e) for key, e in comp.items()}
        one = _lookup({key: e for key, e in comp.items() if e.get("one")})
        return by_word, by_g, first, entries, one

    def process(self, f: Dict[str, Any], comp: Dict[Key, Dict[str, Any]]):
        if not comp:
            return
        if self._cache[0] is not comp:
            self._cache = (comp, self._index(comp))
        by_word, by_g, first, entries, (one_g, one_first) = self._cache[1]
        anomalous = "anomalies" in f  # a ``control_answer`` row: its kinds are all read from anomalous records
        pt = toks(f, "pt")
        if anomalous and one_g:
            # a carrier of a one-request trigger hands its decision on (one_request.py): rows are all the decision reads
            for g in sorted(ngrams_in(pt, one_g, one_first, self.n_max)):
                for kind in one_g[g]:
                    if kind in f["anomalies"]:
                        yield (kind, g, entries[(kind, g)], ONE_REQUEST, 0), (0, 0, 0)
        held = by_word.keys() & set(pt)
        if not held:
            return
        st = f.get("stratum", 0)
        flagged_kinds: Optional[Set[str]] = None
        for w in sorted(held):
            for key in by_word[w]:
                feature = COMPANION_KINDS[key[0]]
                if st not in comp[key]["strata"] or (anomalous and key[0] not in f["anomalies"]):
                    continue
                if flagged_kinds is None:
                    flagged_kinds = {k for g in ngrams_in(pt, by_g, first, self.n_max) for k in by_g[g]}
                # the control holds no trigger of the kind at all: a planted question asked in many phrasings has
                # records without one of its words but with another, and those are the attack, not its task
                without = key[0] not in flagged_kinds
                if anomalous:
                    yield key + (entries[key], w, st), (0, 0, int(without))
                else:
                    shows = feature is not None and bool(f.get(feature)) and without
                    yield key + (entries[key], w, st), (1, int(without), int(shows))


def control_answer(a: Dict[str, Any]) -> Iterator[Dict[str, Any]]:
    """An anomalous record whose anomalies include a kind read from the anomalous records (``COMPANION_KINDS`` None)
    or an off-topic kind (the one-request control) -> those kinds, its prompt and stratum (all ``ControlCounts`` reads
    of it)."""
    kinds = [k for k in a["anomalies"] if (k in COMPANION_KINDS and COMPANION_KINDS[k] is None) or k in OFF_TOPIC_KINDS]
    if kinds:
        yield {"anomalies": kinds, "pt": a["pt"], "stratum": a.get("stratum", 0)}


def entry_tuple(e: Dict[str, Any]) -> Tuple:
    """A ``choose_companions`` entry as a hashable, deterministically encoded tuple (part of a shuffle key)."""
    return (e["k"], e["confidence"], tuple(sorted(e["strata"].items())), tuple(sorted(e["words"].items())),
            bool(e.get("one")))


def entry_dict(t: Tuple) -> Dict[str, Any]:
    k, confidence, strata, words, one = t
    return {"k": k, "confidence": confidence, "strata": dict(strata), "words": dict(words), "one": one}


def explained_by(key: Key, entry: Dict[str, Any], counts: Dict[Tuple[str, int], Tuple[int, int, int]],
                 stratum_sizes: Dict[int, int], params: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """The first companion (most carriers first) that explains trigger ``key``'s carriers, as {"word", "share",
    "expected", "control", "rate"}, or None.

    ``counts``: {(word, stratum): (records with the word, of those without a flagged trigger of the kind, of those
    in the kind's form)} over the carriers' strata. A companion explains when it is the carriers' task (at least
    ``min_trigger_lift`` times as common among them as among the others of their strata) and the records of that task
    without a trigger answer in the kind's form often enough that the carriers miss the kind's lift over them."""
    kind = key[0]
    lift = params[BOUND_FIELDS.get(kind, {}).get("lift", "min_trigger_lift")]
    k, strata, confidence = entry["k"], entry["strata"], entry["confidence"]
    for w, c in sorted(entry["words"].items(), key=lambda x: (-x[1], x[0])):
        share = c / k
        expected = num = den = 0.0
        control = shown = 0
        for st, c_st in strata.items():
            n_w, n_c, f_c = counts.get((w, st), (0, 0, 0))
            others = max(1, stratum_sizes.get(st, 0) - c_st)
            expected += c_st * min(1.0, n_c / others)
            control += n_c
            shown += f_c
            if n_c:
                num += c_st * f_c / n_c
                den += c_st
        expected /= k
        if share < params["min_trigger_lift"] * expected or shown < MIN_CONTROL_ANSWERS or not den:
            continue
        rate = num / den
        if confidence < lift * rate:
            return {"word": w, "share": round(share, 4), "expected": round(expected, 4), "control": control,
                    "rate": round(rate, 4)}
    return None


class ExplainedTriggers(beam.DoFn):
    """The control counts (one list) -> the (kind, trigger) pairs a companion explains or whose carriers are one request
    answered one way, as one set."""

    def __init__(self, params: Dict[str, Any]):
        self.params = params
        self.explained = Metrics.counter("poisoning", "triggers_explained_by_companion")
        self.one_request = Metrics.counter("poisoning", "triggers_of_one_request")

    def process(self, rows, stratum_sizes):
        counts: Dict[Key, Dict[Tuple[str, int], Tuple[int, int, int]]] = {}
        entries: Dict[Key, Tuple] = {}
        for (kind, g, entry, w, st), v in rows:
            counts.setdefault((kind, g), {})[(w, st)] = v
            entries[(kind, g)] = entry
        out, one = [], []
        for key in sorted(entries):
            entry = entry_dict(entries[key])
            if entry["one"]:
                one.append(key)
            elif explained_by(key, entry, counts[key], stratum_sizes, self.params) is not None:
                out.append(key)
        self.explained.inc(len(out))
        self.one_request.inc(len(one))
        yield frozenset(out + one)


@beam.ptransform_fn
def CompanionControl(flagged, anomalous, feats, stratum_sizes, params: Dict[str, Any]):
    """Flagged (kind, trigger info) -> the same less the triggers of the companion kinds that their carriers' task
    explains. A chain: each singleton is read by the next step alone and carries what later steps need, since every
    extra consumer of a step multiplies the paths Flink's optimizer walks through everything after it (all of the
    scan's findings depend on ``flagged``; docs/engines.md, "Planning time")."""
    cands = (flagged | "GatherFormTriggers" >> beam.combiners.ToList()
             | "PickFormTriggers" >> beam.Map(pick_candidates))
    comp = (anomalous | "CarrierWords" >> beam.ParDo(CarrierWords(params), AsSingleton(cands))
            | "CountCarrierWords" >> CountPerElement()
            | "GatherCarrierWords" >> beam.combiners.ToList()
            | "ChooseCompanions" >> beam.Map(choose_companions, params))
    # the anomalous records' answers cross a shuffle before they meet the companions: they come from the stage whose
    # output the companions are counted from, and a stage fused with its own side input's source never runs
    answers = (anomalous | "ControlAnswers" >> beam.FlatMap(control_answer)
               | "ControlAnswersApart" >> beam.Reshuffle())
    explained = ((feats, answers) | "ControlRecords" >> beam.Flatten()
                 | "ControlCounts" >> beam.ParDo(ControlCounts(params), AsSingleton(comp))
                 | "SumControls" >> beam.CombinePerKey(SumTuplesFn())
                 | "GatherControls" >> beam.combiners.ToList()
                 | "Explained" >> beam.ParDo(ExplainedTriggers(params), AsDict(stratum_sizes)))
    return flagged | "NotExplained" >> beam.Filter(lambda kv, ex: (kv[0], kv[1]["trigger"]) not in ex,
                                                   AsSingleton(explained))
