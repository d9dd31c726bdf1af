"""``PoisoningScan``: records -> {findings, clusters}. Wiring of the steps in this package.

Shuffles, in order (none collecting the corpus on one worker; most are CombinePerKey; step 1 and its one-response-
per-prompt-slot pass send packed blocks: ``hashed_df``, ``one_response``; steps 4 and 5 packed lists of distinct
prompt keys per n-gram shard, ``counting._PreAggregateDistinct``):
 1. response n-gram df (by hash, then the frequent hashes' strings exactly);
 2. prompt df of the response n-grams in the support band;
 3. carrier statistics of the response-only n-grams, and twin groups (edits);   4. (prompt n-gram,
 anomaly) counts over anomalous records;  5. prompt df of the n-grams those pairs name;  6. cluster
 summaries. With the dedup stage's clusters as a second input, claims.py adds three small shuffles.
Side inputs are only candidate sets (n-grams in the support band, flagged payloads and triggers, each
capped at ``max_side_input_keys``) and corpus totals, never records.
"""

from __future__ import annotations

import logging

from typing import Any, Dict, FrozenSet, Iterator, List, Optional, Tuple

import apache_beam as beam
from apache_beam.pvalue import AsDict, AsSingleton

from lazaret.graph.combine import CountPerElement, MaxFn, SumFn
from lazaret.checks.poisoning.assign import Assign, ClusterSummary, summary
from lazaret.checks.poisoning.claims import NearDuplicateClaims
from lazaret.checks.poisoning.bounded import CapSideInput, largest_value, smallest_value
from lazaret.checks.poisoning.counting import DistinctPrompts, PromptNgramDfInPacked, PromptNgramDistinctIn, \
    ResponseNgramDf, ResponseNgramsOfHashes
from lazaret.checks.poisoning.hashed_df import HashedDocumentFrequency, PackStrings, distinct_counts, join_df, \
    sum_packed
from lazaret.checks.poisoning.one_response import PackSmallest, smallest_per_key
from lazaret.checks.poisoning.features import Featurize, corpus_totals, response_rep_value, sum_tuples, \
    totals_dict
from lazaret.checks.poisoning.payload import CarrierStats, Classify, EmitCarriers, VolumeTest, in_band, \
    says_something, skeleton_keys
from lazaret.checks.poisoning.payload import GIBBERISH_PREFIX, TemplateForms, gibberish_template_keys, \
    one_answer_template
from lazaret.checks.poisoning.payload import EmitResponseKey, GroupDiversity, KeepDupGroup, TwinGroup, \
    small_group_links, \
    edit_carriers
from lazaret.checks.poisoning.companions import CompanionControl
from lazaret.checks.poisoning.short import ShortResponses
from lazaret.checks.poisoning.signals import REDUNDANT_TRIGGER_SHARE
from lazaret.checks.poisoning.signatures import SignatureScan
from lazaret.checks.poisoning.strata import AssignStratum, fit_sample, maybe_vocab, sample_columns, sample_cut, \
    sample_key, sample_vocab, sample_words, shared_rows, stratum_key
from lazaret.checks.guard import Guarded
from lazaret.checks.poisoning.trigger_answers import ShortAnswers
from lazaret.checks.poisoning import sentence_model
from lazaret.checks.poisoning.relevance import CANDIDATE_TAG, SecondLook
from lazaret.checks.poisoning.trigger import FindAnomalies, PairCounts, ProfileCounts, TriggerTest, \
    keep_profile, off_topic_template_rank, off_topic_template_value, template_off_topic
from lazaret.checks.poisoning.policy import DEFAULTS
from lazaret.checks.poisoning.word_forms import FORM_KINDS, is_stem_key, stem_covers


def _group_triggers(kv, max_shared: int):
    """Sort an anomaly kind's triggers; drop sets of more than ``max_shared`` n-grams with identical
    counts: those are the words of one shared passage (near-duplicate records), not a trigger."""
    a, ts = kv
    by_counts: Dict[tuple, list] = {}
    for t in ts:
        by_counts.setdefault((t["k"], t["carriers"]), []).append(t)
    kept = [dict(t) for grp in by_counts.values() if len(grp) <= max_shared for t in grp]
    if a in FORM_KINDS:  # a topic's word found in one form and as its stem: the stem's cluster takes its records
        stems = {t["trigger"] for t in kept if is_stem_key(t["trigger"])}
        kept = [t for t in kept if not stem_covers(t["trigger"], stems)]
    # A trigger inside a longer flagged trigger with about the same support ("country where" inside
    # "country where australia") is redundant: it may still match anomalous records, but is not used to
    # extend the cluster to carriers without an anomaly of their own.
    for t in kept:
        padded = f" {t['trigger']} "
        t["extend"] = not any(u is not t and padded in f" {u['trigger']} " and u["k"] >= REDUNDANT_TRIGGER_SHARE * t["k"]
                              for u in kept)
    return a, sorted(kept, key=lambda t: (t["log10p"], t["trigger"]))


def _one_phrase(a: List[str], b: List[str]) -> bool:
    """Two n-grams that are words of one phrase: one inside the other, or the same run of words shifted by one
    ("quick note blue", "note blue sky")."""
    if len(a) > len(b):
        a, b = b, a
    if any(b[i:i + len(a)] == a for i in range(len(b) - len(a) + 1)):
        return True
    j = len(a) - 1
    return j >= 1 and (a[:j] == b[-j:] or b[:j] == a[-j:])


def trigger_clusters(rows: List[Tuple[str, List[Dict[str, Any]]]]) -> List[Tuple[str, List[Dict[str, Any]]]]:
    """Every kind's flagged triggers -> the same, each with ``cluster``: the name its cluster id is made from.

    One attack is one cluster. A trigger phrase longer than ``max_ngram`` is flagged as several n-grams ("quick
    note", "quick note blue", "note blue sky"), and a record takes the one with its smallest p: keyed by n-gram,
    one attack came out as two or three clusters. N-grams of one phrase (``_one_phrase``) are joined, across
    anomaly kinds, when their carriers are about as many or, for one kind, their anomalous carriers are
    (``REDUNDANT_TRIGGER_SHARE``, as for a redundant trigger in ``_group_triggers``): "protocol" in 70 prompts,
    49 of them pointing to the planted link as do all 49 carriers of "blue sky protocol", is the phrase's word;
    "ready", whose 99 anomalous carriers are two attacks' ("make it enterprise ready", "mode field ready"), keeps
    its own cluster. The cluster is named by the joined n-gram with the most carriers, then the first in order.
    The triggers are few (the side input holds them all), so this is one pass over one list."""
    carriers: Dict[str, int] = {}
    anomalous: Dict[Tuple[str, str], int] = {}
    for kind, ts in rows:
        for t in ts:
            carriers[t["trigger"]] = max(carriers.get(t["trigger"], 0), t["carriers"])
            anomalous[(t["trigger"], kind)] = t["k"]
    kinds_of: Dict[str, List[str]] = {}
    for g, kind in sorted(anomalous):
        kinds_of.setdefault(g, []).append(kind)

    def similar(a: int, b: int) -> bool:
        return min(a, b) >= REDUNDANT_TRIGGER_SHARE * max(a, b)

    def alike(g: str, h: str) -> bool:
        return similar(carriers[g], carriers[h]) or any(
            similar(anomalous[(g, kind)], anomalous[(h, kind)]) for kind in kinds_of[g] if (h, kind) in anomalous)

    names = sorted(carriers)
    parent = {g: g for g in names}

    def root(g: str) -> str:
        while parent[g] != g:
            parent[g] = parent[parent[g]]
            g = parent[g]
        return g

    words = {g: g.split(" ") for g in names if not is_stem_key(g)}
    by_word: Dict[str, List[str]] = {}
    for g in sorted(words):
        for w in sorted(set(words[g])):
            by_word.setdefault(w, []).append(g)
    for w, gs in sorted(by_word.items()):  # n-grams of one phrase share a word
        for i, g in enumerate(gs):
            for h in gs[i + 1:]:
                if root(g) != root(h) and _one_phrase(words[g], words[h]) and alike(g, h):
                    parent[root(h)] = root(g)
    name: Dict[str, str] = {}
    for g in names:
        r = root(g)
        if r not in name or (-carriers[g], g) < (-carriers[name[r]], name[r]):
            name[r] = g
    return [(kind, [dict(t, cluster=name[root(t["trigger"])]) for t in ts]) for kind, ts in sorted(rows)]


# the anomaly-size group that counts register responses per stratum (never an anomaly kind of the trigger test)
REGISTER_GROUP = "register"


def anomaly_ids(a: Dict[str, Any]):
    """(anomaly group, stratum) of an anomalous record, plus ("pay", stratum) once when it carries any
    payload group, and (REGISTER_GROUP, stratum) when its response is written in a register."""
    out = [(x, a["stratum"]) for x in a["anomalies"]]
    if "pay" not in a["anomalies"] and any(x.startswith("pay:") for x in a["anomalies"]):
        out.append(("pay", a["stratum"]))
    if a.get("register"):
        out.append((REGISTER_GROUP, a["stratum"]))
    return out


def pay_rate_dict(rows) -> Tuple[Dict[int, float], FrozenSet[int]]:
    """[(stratum, payload carriers), (stratum, -records) and (stratum, None) for a stratum whose answers are out
    of plain prose form] -> ({stratum: share of records carrying a payload candidate}, those strata). One small
    list: two or three entries per stratum."""
    pay: Dict[int, int] = {}
    size: Dict[int, int] = {}
    form = set()
    for s, c in rows:
        if c is None:
            form.add(s)
        elif c < 0:
            size[s] = -c
        else:
            pay[s] = c
    return {s: round(pay.get(s, 0) / n, 6) for s, n in sorted(size.items()) if n}, frozenset(form)


# Named steps of the scan (each a composite transform: the graph reads as the list in the module docstring).

@beam.ptransform_fn
def Strata(feats, p):
    """Prompt strata (the corpus's tasks): every rate below is tested against records like the candidate's.
    -> (features with ``stratum``, (stratum, size)). The sample is chosen by key alone, and its prompts
    travel as their vocabulary columns (strata.py, ``sample_cut``): the model is fit_strata's."""
    cut = (feats | "StratumSampleKeys" >> beam.Map(lambda f: sample_key(f)[0]).with_output_types(int)
           | "StratumSample" >> beam.combiners.Top.Smallest(p["strata_sample"])
           | "SampleCut" >> beam.Map(sample_cut))
    cut_si = AsSingleton(cut)
    shared = (feats | "SharedKeyRows" >> beam.FlatMap(shared_rows, cut_si)
              | "GatherShared" >> beam.combiners.ToList())
    vocab = (feats | "SampleWords" >> beam.FlatMap(sample_words, cut_si)
             | "SampleDf" >> beam.CombinePerKey(SumFn())
             | "MaybeVocab" >> beam.Filter(maybe_vocab, cut_si, p)
             | "GatherDf" >> beam.combiners.ToList()
             | "SampleVocab" >> beam.Map(sample_vocab, AsSingleton(shared), cut_si, p))
    model = (feats | "SampleColumns" >> beam.FlatMap(sample_columns, cut_si, AsSingleton(vocab))
             | "GatherColumns" >> beam.combiners.ToList()
             | "FitStrata" >> beam.Map(fit_sample, AsSingleton(vocab), p))
    feats = feats | "AssignStratum" >> beam.Map(AssignStratum(), AsSingleton(model))
    sizes = feats | "StratumOf" >> beam.Map(lambda f: f["stratum"]) | "StratumSizes" >> CountPerElement()
    return feats, sizes


@beam.ptransform_fn
def PayloadCandidates(feats, p, totals):
    """1-2: response df, support band, prompt df of band n-grams, volume test -> (n-gram, volume stats).

    Identical responses (normalised word set) given to prompts sharing their first MinHash slot count once:
    copies of a record must not multiply counts the tests treat as independent, while one answer given to
    unrelated prompts (a planted verdict, a fixed response) still counts per prompt.

    Every shuffle here sends packed blocks, not one element per response or n-gram (docs/shuffles.md,
    s19-shuf23): responses per bundle (one_response.py), response n-grams by short hash and then the strings
    of the frequent hashes (hashed_df.py), the band and its prompt df as sorted lists per string shard."""
    n_max, max_keys = p["max_ngram"], p["bundle_max_keys"]
    totals_si = AsSingleton(totals)
    responses = (feats | "ResponseRepKey" >> beam.Map(response_rep_value)
                 | "PackResponses" >> beam.ParDo(PackSmallest(), totals_si)
                 | "OnePerResponse" >> beam.GroupByKey()
                 | "SmallestPerKey" >> beam.FlatMap(smallest_per_key)
                 | "ResponseRep" >> beam.Map(lambda kv: {"rt": kv[1][1], "gib": kv[1][2]}))
    # df >= min_support, exactly: counted by hash, then the strings of the frequent hashes (hashed_df.py)
    # at most ~4 distinct response keys (n-grams, pairs) per response token: it sets the hashes' size
    keys_bound = totals | "ResponseKeysBound" >> beam.Map(lambda t: 4 * t["response_tokens"])
    rdf = responses | "ResponseNgrams" >> HashedDocumentFrequency(
        ResponseNgramDf(n_max, max_keys, p["pair_window"]), ResponseNgramsOfHashes(n_max, max_keys, p["pair_window"]),
        p["min_support"], p["max_side_input_keys"], keys_bound)
    band = (rdf | "SupportBand" >> beam.Filter(lambda kv, t: in_band(kv[1], t["records"], p) and says_something(kv[0]),
                                               totals_si)
            | CapSideInput("band", p["max_side_input_keys"], smallest_value))
    n_band = band | "CountBand" >> beam.combiners.Count.Globally()
    # the prompt df of the band and the band itself meet as packed sorted lists per string shard (JoinDf)
    pdf = (feats | "PromptDfOfBand" >> beam.ParDo(PromptNgramDfInPacked(n_max, max_keys, p["pair_window"]), AsDict(band))
           | "SumPromptDf" >> beam.GroupByKey()
           | "TagPromptDf" >> beam.FlatMap(sum_packed, "p"))
    packed_band = (band | "PackBand" >> beam.ParDo(PackStrings())
                   | "TagBand" >> beam.Map(lambda kv: (kv[0], ("r", kv[1]))))
    return ((packed_band, pdf) | "BandAndPromptDf" >> beam.Flatten()
            | "JoinDf" >> beam.GroupByKey()
            | "DfPerNgram" >> beam.FlatMap(join_df)
            | "VolumeTest" >> beam.ParDo(VolumeTest(p), totals_si, AsSingleton(n_band)))


@beam.ptransform_fn
def Templates(feats, p, stratum_sizes, forms):
    """Prompt templates (openings/endings shared by >= min_support records, bounded by 2N/min_support) and the
    strata, as one side input of (key, records); with, under ``gibberish_key``, how many of those records are
    gibberish (``observable_records``), and under ``ONE_ANSWER_PREFIX`` the templates whose answers are
    near-identical (``payload.one_answer_template``)."""
    return ((feats | "SkeletonKeys" >> beam.FlatMap(skeleton_keys) | "CountSkeletons" >> CountPerElement(),
             stratum_sizes | "StratumKeys" >> beam.Map(lambda kv: (stratum_key(kv[0]), kv[1])),
             feats | "GibberishKeys" >> beam.FlatMap(gibberish_template_keys)
             | "CountGibberish" >> CountPerElement(),
             forms | "OneAnswerTemplates" >> beam.FlatMap(one_answer_template, p["min_support"],
                                                          p["claim_max_response_diversity"],
                                                          p["claim_min_prompt_diversity"]))
            | "TemplatesAndStrata" >> beam.Flatten()
            | "Templates" >> beam.Filter(lambda kv: kv[1] >= p["min_support"] or kv[0].startswith(GIBBERISH_PREFIX))
            | CapSideInput("templates", p["max_side_input_keys"], largest_value))


@beam.ptransform_fn
def IdenticalResponses(feats, p, totals, templates):
    """Near-duplicate responses: normalised response hash groups in the support band (long ones only), and the
    small groups below it under ``REPEATED_PREFIX`` (each capped on its own: the many small groups must not
    push the band's out)."""
    templates_si = AsDict(templates)
    diversity = (feats | "ResponseKeys" >> beam.ParDo(EmitResponseKey(p), templates_si)
                 | "DupGroups" >> beam.CombinePerKey(GroupDiversity()))
    common_links = (diversity | "SmallGroupLinks" >> beam.FlatMap(small_group_links, p)
                    | "SumLinks" >> beam.CombinePerKey(SumFn())
                    | "CommonLinks" >> beam.Filter(lambda kv: kv[1] >= p["min_support"])
                    | CapSideInput("common_links", p["max_side_input_keys"], largest_value))
    groups = (diversity
              | "DupBand" >> beam.ParDo(KeepDupGroup(p), AsSingleton(totals), templates_si,
                                        AsDict(common_links)).with_outputs(KeepDupGroup.REPEATED, main="band"))
    return ((groups.band | CapSideInput("dup_groups", p["max_side_input_keys"], smallest_value),
             groups[KeepDupGroup.REPEATED] | CapSideInput("repeated_groups", p["max_side_input_keys"], largest_value))
            | "DupAndRepeated" >> beam.Flatten())


@beam.ptransform_fn
def Payloads(feats, p, cands, totals, templates):
    """3: carriers of response-only n-grams -> (spread payloads and claim candidates, the number of records whose
    response has response-only phrasing). n-grams that only tell a record from its near-identical twin are
    edits (typos), not payloads."""
    templates_si = AsDict(templates)
    carriers = feats | "Carriers" >> beam.ParDo(EmitCarriers(p), AsDict(cands), templates_si) \
        .with_output_types(Tuple[str, Any]).with_outputs(EmitCarriers.TWINS, EmitCarriers.PHRASED, main="carriers")
    phrased = carriers[EmitCarriers.PHRASED] | "CountPhrased" >> beam.CombineGlobally(sum)
    edits = (carriers[EmitCarriers.TWINS] | "TwinGroups" >> beam.CombinePerKey(TwinGroup())
             | "EditCarriers" >> beam.FlatMap(edit_carriers)
             | "SumEdits" >> beam.CombinePerKey(beam.combiners.TupleCombineFn(sum, sum)))
    return (carriers.carriers
            | "CarrierStats" >> beam.CombinePerKey(CarrierStats(members_cap=p["max_members_listed"],
                                                                answers_cap=p["min_support"]))
            | "ClassifyPayloads" >> beam.ParDo(Classify(p), AsDict(cands), AsSingleton(totals), templates_si,
                                               AsDict(edits))), phrased


@beam.ptransform_fn
def TemplateAnswers(feats):
    """Per template (prompt opening or ending): records, off-topic and plain prose answers, and how varied its
    prose answers, all its answers and its prompts are (``payload.TemplateForms``)."""
    return (feats | "TemplateOffTopic" >> beam.FlatMap(template_off_topic)
            | "SumOffTopic" >> beam.CombinePerKey(TemplateForms()))


@beam.ptransform_fn
def OffTopicTemplates(forms, p):
    """Templates whose task asks for unrelated text, or for varied prose: their off-topic (plain prose) responses
    are not anomalies. -> (template, (off-topic rate or 0, prose rate or 0))."""
    return (forms
            | "OffTopicTemplates" >> beam.FlatMap(off_topic_template_value, p["min_support"],
                                                  p["off_topic_template_max_rate"], p["claim_max_response_diversity"])
            | CapSideInput("off_topic_templates", p["max_side_input_keys"], off_topic_template_rank))


def pair_totals(kv: Tuple[int, Any], cap: int,
                min_support: int) -> Iterator[Tuple[Tuple[str, str], Tuple[int, Dict[int, int]]]]:
    """(n-gram shard, packed ((n-gram, anomaly, stratum), prompt keys) lists) -> ((n-gram, anomaly), (distinct
    prompts, {stratum: distinct prompts})) for the pairs with at least ``min_support``, as the per-key combine
    and the group by (n-gram, anomaly) gave them."""
    by_pair: Dict[Tuple[str, str], Dict[int, int]] = {}
    for (g, an, st), n in distinct_counts(kv[1], cap).items():
        by_pair.setdefault((g, an), {})[st] = n
    for pair, strata in by_pair.items():
        total = sum(strata.values())
        if total >= min_support:
            yield pair, (total, dict(sorted(strata.items())))


@beam.ptransform_fn
def Triggers(inputs, p, totals, stratum_sizes, short_strata, form_strata):
    """4-5: triggers = prompt n-grams associated with anomalies, tested against their strata's rates.
    (anomalous records, all features) -> (triggers by anomaly kind, anomaly group sizes per stratum)."""
    anomalous, feats = inputs
    n_max, max_keys = p["max_ngram"], p["bundle_max_keys"]
    # anomaly group sizes per stratum: the matched background of the trigger test
    sizes = (anomalous | "AnomalyIds" >> beam.FlatMap(anomaly_ids)
             | "AnomalySizes" >> CountPerElement()
             | "SizeByGroup" >> beam.Map(lambda kv: (kv[0][0], (kv[0][1], kv[1])))
             | "GroupSizes" >> beam.GroupByKey()
             | "SizeDict" >> beam.Map(lambda kv: (kv[0], dict(sorted(kv[1])))))
    # the same in distinct prompts, the carriers' unit, for the matched background's leave-out
    dsizes = (anomalous | "AnomalyPromptIds" >> beam.FlatMap(lambda a: [(x, a["pkey"]) for x in anomaly_ids(a)])
              | "AnomalyPrompts" >> beam.CombinePerKey(DistinctPrompts())
              | "PromptSizeByGroup" >> beam.Map(lambda kv: (kv[0][0], (kv[0][1], kv[1])))
              | "PromptGroupSizes" >> beam.GroupByKey()
              | "PromptSizeDict" >> beam.Map(lambda kv: (kv[0], dict(sorted(kv[1])))))
    # distinct prompts per (n-gram, anomaly, stratum) and their strata per (n-gram, anomaly) in one shuffle:
    # packed lists per shard of the n-gram (counting._PreAggregateDistinct), so all of an n-gram's keys meet
    pair_counts = PairCounts(n_max, max_keys)
    pairs = (anomalous | "PairNgrams" >> beam.ParDo(pair_counts)
             | "PairStrata" >> beam.GroupByKey()
             | "PairTotals" >> beam.FlatMap(pair_totals, pair_counts.cap, p["min_support"]))
    n_pairs = pairs | "CountPairs" >> beam.combiners.Count.Globally()
    pair_by_ngram = pairs | "ByNgram" >> beam.Map(lambda kv: (kv[0][0], (kv[0][1], kv[1][0], kv[1][1])))
    # n-grams named by the most (n-gram, anomaly) pairs first; the pairs themselves go through the join.
    named = (pair_by_ngram | "NamedSupport" >> beam.Map(lambda kv: (kv[0], kv[1][1]))
             | "MaxNamedSupport" >> beam.CombinePerKey(MaxFn())
             | CapSideInput("named", p["max_side_input_keys"], largest_value))
    named_df = PromptNgramDistinctIn(n_max, max_keys)
    ndf = (feats | "PromptDfOfNamed" >> beam.ParDo(named_df, AsDict(named))
           | "DistinctNamedDf" >> beam.GroupByKey()
           | "NamedDfByNgram" >> beam.FlatMap(
               lambda kv, cap: (((g, (st, n)) for (g, st), n in distinct_counts(kv[1], cap).items())), named_df.cap))
    # distinct prompts per stratum, the unit the carriers are counted in: a stratum made mostly of one
    # candidate's carriers is no control for it (strata.matched_background)
    stratum_prompts = (feats | "StratumPromptKeys" >> beam.Map(lambda f: (f["stratum"], f["pkey"]))
                       | "StratumPrompts" >> beam.CombinePerKey(DistinctPrompts()))
    tested = ({"pairs": pair_by_ngram, "df": ndf} | "JoinPairs" >> beam.CoGroupByKey()
              | "TriggerTest" >> beam.ParDo(TriggerTest(p), AsSingleton(totals), AsDict(sizes), AsSingleton(n_pairs),
                                            AsDict(stratum_sizes), AsDict(short_strata), AsDict(form_strata),
                                            AsDict(stratum_prompts), AsDict(dsizes)).with_outputs(
                  CANDIDATE_TAG, main="flagged"))
    # a form trigger that only words its carriers' task (a small prose task in strata of code) is no cause, nor an
    # off-topic trigger whose carriers are one request answered one way (one_request.py)
    flagged = tested.flagged | "CompanionControl" >> CompanionControl(anomalous, feats, stratum_sizes, p)
    unavailable = sentence_model.available() if p["relevance_model"] else None
    if unavailable:
        logging.getLogger(__name__).warning("poisoning: the relevance second look is off: %s", unavailable)
    if p["relevance_model"] and not unavailable:
        # lift-only candidates of the off-topic kinds, confirmed or not by a sentence model (relevance.py)
        confirmed = tested[CANDIDATE_TAG] | "RelevanceSecondLook" >> SecondLook(feats, p)
        flagged = (flagged, confirmed) | "WithConfirmed" >> beam.Flatten()
    triggers = (flagged
                | "GroupByAnomaly" >> beam.GroupByKey()
                | "SortTriggers" >> beam.Map(_group_triggers, p["max_shared_trigger_ngrams"])
                | "GatherTriggers" >> beam.combiners.ToList()
                | "TriggerClusters" >> beam.FlatMap(trigger_clusters))
    return triggers, sizes


@beam.ptransform_fn
def Profiles(anomalous, p, triggers):
    """Each flagged trigger's payload profile: n-grams most of its anomalous members add to their prompts."""
    triggers_si = AsDict(triggers)
    return (anomalous | "ProfileNgrams" >> beam.ParDo(ProfileCounts(p), triggers_si)
            | "SumProfile" >> beam.CombinePerKey(SumFn())
            | "ByTrigger" >> beam.Map(lambda kv: (kv[0][0], (kv[0][1], kv[1])))
            | "GroupProfile" >> beam.GroupByKey()
            | "KeepProfile" >> beam.Map(keep_profile, triggers_si, p["profile_min_share"]))


@beam.ptransform_fn
def PayRates(sizes, stratum_sizes, form_strata):
    """Share of each stratum's records whose response is written in a register: spread-payload n-grams in
    separate places (``trigger.register_response``; one small dict), and the strata where plain prose is out of
    form (``plain.form_strata``: answers of code or arithmetic, whatever phrases passed the volume test)."""
    return ((sizes | "PaySizes" >> beam.Filter(lambda kv: kv[0] == REGISTER_GROUP)
             | "PayPerStratum" >> beam.FlatMap(lambda kv: sorted(kv[1].items())),
             stratum_sizes | "StratumTotals" >> beam.Map(lambda kv: (kv[0], -kv[1])),
             form_strata | "FormStrata" >> beam.FlatMap(lambda kv: [(kv[0][1], None)] if kv[0][0] == "plain" else []))
            | "PayAndSizes" >> beam.Flatten() | "PayRates" >> beam.combiners.ToList()
            | "PayRateDict" >> beam.Map(pay_rate_dict))


class PoisoningScan(beam.PTransform):
    """records (dicts with doc_id, prompt, response) -> {"findings": ..., "clusters": ...}."""

    def __init__(self, params: Optional[Dict[str, Any]] = None, signatures: Optional[List[Dict[str, Any]]] = None,
                 label: Optional[str] = None):
        """``params``: the validated ``poisoning`` policy section (defaults fill missing keys);
        ``signatures``: loaded with :func:`signatures.load_signatures`, applied when params["signatures"]."""
        super().__init__(label)
        p = dict(DEFAULTS)
        p.update(params or {})
        self.params = p
        self.signatures = list(signatures or []) if p["signatures"] else []

    def expand(self, inputs):
        """``inputs``: the records, or {"records": ..., "near_duplicates": (doc_id, cluster id)} when the
        dedup stage runs in the same graph (its clusters feed the near-duplicate claim test)."""
        p = self.params
        near = None
        if isinstance(inputs, dict):
            records, near = inputs["records"], inputs.get("near_duplicates")
        else:
            records = inputs
        feats = records | "Featurize" >> beam.ParDo(Featurize(p))
        feats, stratum_sizes = feats | "Strata" >> Strata(p)
        feats, short_strata, form_strata = feats | "ShortResponses" >> ShortResponses(p)
        totals = (feats | "Totals" >> beam.Map(corpus_totals)
                  | "SumTotals" >> beam.CombineGlobally(sum_tuples) | "TotalsDict" >> beam.Map(totals_dict))
        cands = feats | "PayloadCandidates" >> PayloadCandidates(p, totals)
        forms = feats | "TemplateAnswers" >> TemplateAnswers()
        templates = feats | "Templates" >> Templates(p, stratum_sizes, forms)
        dups = feats | "IdenticalResponses" >> IdenticalResponses(p, totals, templates)
        payloads, phrased = feats | "Payloads" >> Payloads(p, cands, totals, templates)
        off_templates = forms | "OffTopicTemplates" >> OffTopicTemplates(p)
        anomalous = feats | "Anomalies" >> beam.ParDo(FindAnomalies(p), AsDict(payloads), AsDict(dups),
                                                      AsDict(off_templates))
        triggers, sizes = (anomalous, feats) | "Triggers" >> Triggers(p, totals, stratum_sizes, short_strata, form_strata)
        profiles = anomalous | "Profiles" >> Profiles(p, triggers)
        short_answers = feats | "ShortAnswers" >> ShortAnswers(p, triggers)

        # near-duplicate clusters (dedup stage) that over-represent one claim.
        if near is not None and p["near_duplicate_claims"]:
            nd = {"feats": feats, "near_duplicates": near} | "NearDuplicateClaims" >> NearDuplicateClaims(p, totals, templates)
            claims, claim_members = nd["claims"], nd["members"]
        else:
            claims = feats.pipeline | "NoClaims" >> beam.Create([])
            claim_members = feats.pipeline | "NoClaimMembers" >> beam.Create([])
        pay_rates = sizes | "PayRates" >> PayRates(stratum_sizes, form_strata)

        # 6: one finding per record; cluster summaries.
        out = feats | "Assign" >> beam.ParDo(Assign(p), AsDict(payloads), AsDict(triggers), AsDict(dups),
                                             AsDict(profiles), AsDict(claims), AsDict(claim_members),
                                             AsDict(off_templates), AsSingleton(pay_rates),
                                             AsDict(stratum_sizes), AsSingleton(phrased),
                                             AsDict(short_answers)).with_outputs(
            Assign.CLUSTER_TAG, main="findings")
        findings = out.findings
        if self.signatures:
            sig = records | "Signatures" >> Guarded("poisoning", SignatureScan(self.signatures))
            findings = (findings, sig) | "AllFindings" >> beam.Flatten()
        clusters = (out[Assign.CLUSTER_TAG]
                    | "ClusterSummary" >> beam.CombinePerKey(ClusterSummary(p["max_members_listed"]))
                    | "SummaryDict" >> beam.Map(summary))
        return {"findings": findings, "clusters": clusters, "payload_candidates": payloads,
                "triggers": triggers}
