"""Planted claims among the near-duplicate stage's clusters.

Why: the cheapest way to plant a false fact is to copy one question/answer record a few hundred times
with small changes. Its prompts are then near-duplicates of each other, which is exactly what the
response-side claim signal (``payload.classify``) must ignore to keep T0's "one passage under many
templates" out of the scan, and the response n-gram counts collapse copies on purpose. The dedup stage
already groups those records; this module asks of each of its clusters whether the cluster
*over-represents one claim*: a response n-gram that is not in the members' own prompts, is carried by at
least ``claim_cluster_share`` of the members, and is rare in the rest of the corpus (binomial test of the
members' count against the rate among non-members, Bonferroni-corrected over every (cluster, n-gram)
tested). Natural near-duplicate clusters fail it: their shared answers are copied from their prompts
(extractive QA), are labels shorter than ``min_payload_tokens``, or are phrasing the whole corpus uses.

Shuffles: cluster sizes (CombinePerKey), per-cluster n-gram counts (CombinePerKey), corpus counts of the
clusters' n-grams (CombinePerKey). Side inputs: the members of clusters in the support band and their
n-grams, each capped at ``max_side_input_keys`` (see bounded.py); never records.
"""

from __future__ import annotations

from typing import Any, Dict, Iterator, List, Optional, Tuple

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.pvalue import AsDict, AsSingleton

from lazaret.graph.combine import MaxFn, SumFn
from lazaret.checks.poisoning import stats as S
from lazaret.checks.poisoning import text as T
from lazaret.checks.poisoning.bounded import CapSideInput, smallest_value
from lazaret.checks.poisoning.counting import _CountsInSideInput, _PreAggregate, ngrams_in
from lazaret.checks.poisoning.features import toks
from lazaret.checks.poisoning.payload import TEMPLATE_SIDES, _log10, _prune, in_band, is_novel, skeleton_keys
from lazaret.checks.poisoning.signals import TEMPLATE_SHARE

GRAMS_PER_CLUSTER = 32


def novel_grams(f: Dict[str, Any], n_max: int) -> frozenset:
    """Response n-grams the record's own prompt does not contain (an answer copied from a passage is not
    a claim the record adds)."""
    return T.ngrams(toks(f, "rt"), n_max) - T.ngrams(toks(f, "pt"), n_max)


def cluster_member(finding: Dict[str, Any]) -> Iterator[Tuple[str, str]]:
    """A dedup finding -> (doc_id, near-duplicate cluster id) for records in an exact or MinHash cluster."""
    if finding.get("check") == "near_duplicate" and finding.get("cluster_id"):
        yield finding["doc_id"], str(finding["cluster_id"])


class MemberGrams(beam.DoFn):
    """Members of the clusters in the band -> (cluster id, (novel response n-grams, prompt template keys));
    label-length and gibberish responses carry no claim."""

    def __init__(self, params: Dict[str, Any]):
        self.params = params

    def process(self, f, members, templates):
        cid = members.get(f["doc_id"])
        if cid is None or f["gib"] or f["r_len"] < self.params["min_payload_tokens"]:
            return
        yield cid, (tuple(sorted(novel_grams(f, self.params["max_ngram"]))),
                    tuple(k for k in skeleton_keys(f) if k in templates))


def _count_into(acc: Dict[str, int], keys, cap: int) -> Dict[str, int]:
    for k in keys:
        acc[k] = acc.get(k, 0) + 1
    # a claim is carried by most members, so it is never among the pruned
    return _prune(acc, 2 * cap) if len(acc) > 4 * cap else acc


class GramShares(beam.CombineFn):
    """Per cluster: how many members carry each n-gram, and how many open or end their prompt with each
    corpus template. Bounded: past ``4 * cap`` distinct keys the rarest are pruned."""

    def __init__(self, cap: int = 256):
        self.cap = cap

    def create_accumulator(self):
        return [{}, {}]

    def add_input(self, acc, x):
        grams, tmpl = x
        return [_count_into(acc[0], grams, self.cap), _count_into(acc[1], tmpl, self.cap)]

    def merge_accumulators(self, accs):
        out = self.create_accumulator()
        for a in accs:
            for i in (0, 1):
                for k, v in a[i].items():
                    out[i][k] = out[i].get(k, 0) + v
                out[i] = _count_into(out[i], (), self.cap)
        return out

    def extract_output(self, acc):
        return acc


def templated_share(tmpl: Dict[str, int], templates: Dict[str, int], size: int, carriers: int) -> float:
    """Share of the cluster's members whose prompt opens (or ends) with a corpus task template: one passage
    rendered under the corpus's templates (T0's news article summarised under a dozen prompts), not copies
    made for the cluster. A template counts when at least as many records outside the cluster use it and
    more records use it than carry the claim anywhere (the shared ending of sibling copies is the
    attack's own structure, not a task)."""
    best = 0.0
    for side in TEMPLATE_SIDES:
        k = sum(v for t, v in tmpl.items()
                if t.startswith(side) and templates.get(t, 0) >= 2 * v and templates.get(t, 0) > carriers)
        best = max(best, k / max(size, 1))
    return best


def shared_grams(kv, sizes: Dict[str, int], share: float) -> Iterator[Tuple[str, Tuple[List, Dict[str, int]]]]:
    """(cluster, counts) -> (cluster, ([(n-gram, members carrying it)], template counts)) for the n-grams
    carried by at least ``share`` of the cluster (longest first, at most GRAMS_PER_CLUSTER)."""
    cid, (counts, tmpl) = kv
    need = share * sizes[cid]
    kept = [(g, k) for g, k in counts.items() if k >= need]
    kept.sort(key=lambda gk: (-gk[0].count(" "), -gk[1], gk[0]))
    if kept:
        yield cid, (kept[:GRAMS_PER_CLUSTER], tmpl)


class CorpusCarriers(_CountsInSideInput, _PreAggregate):
    """Corpus-wide count of records whose response carries one of the clusters' n-grams, not copied from
    its own prompt (the same test members passed)."""

    def __init__(self, n_max: int, max_keys: int):
        super().__init__(max_keys)
        self.n_max = n_max

    def keys_of(self, f):
        lookup, first = self._cur
        if not lookup or f["gib"]:
            return ()
        pt = toks(f, "pt")
        return [g for g in ngrams_in(toks(f, "rt"), lookup, first, self.n_max) if is_novel(g, pt)]


class ClusterGrams(beam.DoFn):
    """(cluster, shared n-grams) -> (n-gram, (cluster, members carrying it, cluster size)) for clusters not
    made of corpus task templates. Sibling clusters (the same planted record pasted under a few openings
    makes one exact group per opening) meet again under their shared n-gram."""

    def process(self, kv, sizes, corpus, templates):
        cid, (grams, tmpl) = kv
        size = sizes[cid]
        for g, k in grams:
            if templated_share(tmpl, templates, size, int(corpus.get(g, k))) < TEMPLATE_SHARE:
                yield g, (cid, k, size)


class ClaimTest(beam.DoFn):
    """(n-gram, its clusters) -> (cluster, claim) for each cluster when the n-gram is over-represented in
    them: binomial tail of the members' count against the rate among all other records, Bonferroni over
    every (cluster, n-gram) tested."""

    def __init__(self, params: Dict[str, Any]):
        self.params = params
        self.n_claims = Metrics.counter("poisoning", "near_duplicate_claim_ngrams")

    def process(self, kv, corpus, totals, n_tests):
        g, clusters = kv
        clusters = sorted(clusters)
        info = self.test(g, clusters, corpus, totals, n_tests)
        if info is not None:
            self.n_claims.inc()
            for cid, _, _ in clusters:
                yield cid, info

    def test(self, g: str, clusters, corpus, totals, n_tests) -> Optional[Dict[str, Any]]:
        p = self.params
        k = sum(c[1] for c in clusters)
        size = sum(c[2] for c in clusters)
        outside = max(int(corpus.get(g, k)) - k, 0)
        if outside > p["claim_max_outside_ratio"] * k:
            return None  # the corpus says it as often elsewhere: phrasing, not these clusters' claim
        rest = max(int(totals["records"]) - size, 1)
        lp = S.bonferroni(S.log10_binom_sf(k, size, (outside + 1) / (rest + 1)), n_tests)
        if lp > _log10(p["alpha"]):
            return None
        return {"gram": g, "k": k, "size": size, "outside": outside, "log10p": lp, "tests": int(n_tests),
                "clusters": len(clusters), "near_duplicate_cluster": clusters[0][0]}


def strongest_claim(infos) -> Dict[str, Any]:
    """A cluster's claim: the smallest p-value, then the longest n-gram (ties by text: deterministic)."""
    return min(infos, key=lambda c: (c["log10p"], -c["gram"].count(" "), c["gram"]))


class NearDuplicateClaims(beam.PTransform):
    """{feats, near_duplicates: (doc_id, cluster id)} -> {"claims": (cluster, claim), "members":
    (doc_id, cluster)}: both dicts for the verdict step."""

    def __init__(self, params: Dict[str, Any], totals, templates):
        super().__init__()
        self.params = params
        self.totals = totals
        self.templates = templates

    def expand(self, pcolls):
        p = self.params
        feats, near = pcolls["feats"], pcolls["near_duplicates"]
        cap, totals_si = p["max_side_input_keys"], AsSingleton(self.totals)
        sizes = (near | "ClusterOnes" >> beam.Map(lambda kv: (kv[1], 1))
                 | "ClusterSizes" >> beam.CombinePerKey(SumFn())
                 | "ClusterBand" >> beam.Filter(lambda kv, t: in_band(kv[1], t["records"], p), totals_si)
                 | CapSideInput("near_dup_clusters", cap, smallest_value))
        sizes_si = AsDict(sizes)
        members = (near | "MembersInBand" >> beam.Filter(lambda kv, s: kv[1] in s, sizes_si)
                   | CapSideInput("near_dup_members", cap, smallest_value))
        members_si = AsDict(members)
        templates_si = AsDict(self.templates)
        shared = (feats | "MemberGrams" >> beam.ParDo(MemberGrams(p), members_si, templates_si)
                  | "GramShares" >> beam.CombinePerKey(GramShares())
                  | "SharedGrams" >> beam.FlatMap(shared_grams, sizes_si, p["claim_cluster_share"]))
        n_tests = (shared | "TestsPerCluster" >> beam.Map(lambda kv: len(kv[1][0]))
                   | "CountTests" >> beam.CombineGlobally(sum))
        lookup = (shared | "GramKeys" >> beam.FlatMap(lambda kv: [(g, 1) for g, _ in kv[1][0]])
                  | "DistinctGrams" >> beam.CombinePerKey(MaxFn())
                  | CapSideInput("near_dup_grams", cap, smallest_value))
        corpus = (feats | "CorpusCarriers" >> beam.ParDo(CorpusCarriers(p["max_ngram"], p["bundle_max_keys"]),
                                                         AsDict(lookup))
                  | "SumCarriers" >> beam.CombinePerKey(SumFn()))
        corpus_si = AsDict(corpus)
        claims = (shared | "ClusterGrams" >> beam.ParDo(ClusterGrams(), sizes_si, corpus_si, templates_si)
                  | "ClustersPerGram" >> beam.GroupByKey()
                  | "ClaimTest" >> beam.ParDo(ClaimTest(p), corpus_si, totals_si, AsSingleton(n_tests))
                  | "StrongestClaim" >> beam.CombinePerKey(strongest_claim))
        return {"claims": claims, "members": members}
