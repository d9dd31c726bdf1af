"""Statistics of the poisoning scan: tail probabilities, bounded distinct counting, diversity.

All functions are pure and deterministic. p-values are kept in log10 so that the astronomically small
values a 250-record backdoor produces (1e-300 and below) stay comparable and printable.
"""

from __future__ import annotations

import math
from typing import Dict, Iterable, List, Optional

from scipy.stats import binom

LOG10_FLOOR = -999.0


def log10_binom_sf(k: int, n: int, p: float) -> float:
    """log10 P(X >= k), X ~ Binomial(n, p): chance of seeing k or more anomalous carriers by luck."""
    if k <= 0:
        return 0.0
    p = min(max(p, 1e-12), 1.0 - 1e-12)
    v = binom.logsf(k - 1, n, p) / math.log(10)
    return max(float(v), LOG10_FLOOR)


def log10_binom_cdf(k: int, n: int, p: float) -> float:
    """log10 P(X <= k), X ~ Binomial(n, p): chance of an n-gram appearing in prompts this rarely."""
    p = min(max(p, 1e-12), 1.0 - 1e-12)
    v = binom.logcdf(k, n, p) / math.log(10)
    return max(float(v), LOG10_FLOOR)


def bonferroni(log10_p: float, tests: int) -> float:
    """log10 of the Bonferroni-corrected p-value (capped at 1)."""
    return min(0.0, log10_p + math.log10(max(tests, 1)))


def fmt_p(log10_p: float) -> str:
    if log10_p <= -300:
        return "p<1e-300"  # beyond double precision: binomial tails this small are all "certain"
    if log10_p > -3:
        return f"p={10 ** log10_p:.3g}"
    e = math.floor(log10_p)
    m = 10 ** (log10_p - e)
    return f"p={m:.1f}e{e}"


def score_from_log10p(log10_p: float) -> float:
    """Map a corrected p-value to [0, 1]: 0 at p=1, 0.5 at 1e-10, 1.0 at 1e-20 and below."""
    return round(min(1.0, max(0.0, -log10_p / 20.0)), 4)


class KMV:
    """K-minimum-values distinct counter over 32-bit hashes: exact below ``cap`` values, an estimate above.

    Memory is bounded by ``cap`` whatever the group size, and merging is order-independent (deterministic).
    """

    __slots__ = ("cap", "vals")

    def __init__(self, cap: int = 256, vals: Optional[Iterable[int]] = None):
        self.cap = cap
        self.vals: List[int] = sorted(set(vals or ()))[:cap]

    def add_all(self, xs: Iterable[int]) -> None:
        self.vals = sorted(set(self.vals).union(xs))[: self.cap]

    def merge(self, other: "KMV") -> None:
        self.add_all(other.vals)

    def estimate(self) -> float:
        if len(self.vals) < self.cap:
            return float(len(self.vals))
        kth = self.vals[-1] + 1
        return (self.cap - 1) * float(1 << 32) / kth


def diversity(distinct: float, n: int) -> float:
    return min(1.0, distinct / n) if n else 0.0


def one_request_one_way(answer_diversity: float, prompt_diversity: float, claim_max_response_diversity: float,
                        claim_min_prompt_diversity: float) -> bool:
    """Whether records are one request answered one way by the claim test's own standard: answers as concentrated
    as a claim's (``claim_max_response_diversity``) and prompts fewer than a claim's
    (``claim_min_prompt_diversity``). One predicate for a template (``payload.one_answer_template``) and for a
    trigger's carriers (``one_request.is_one_request``), so the two cannot drift apart."""
    return answer_diversity <= claim_max_response_diversity and prompt_diversity < claim_min_prompt_diversity


def volume_expectation(totals: Dict[str, float]) -> float:
    """Share of the corpus's words that sit on the prompt side: an n-gram used naturally shows up in prompts
    about this often; a payload planted in responses almost never does."""
    pt, rt = float(totals.get("prompt_tokens", 0)), float(totals.get("response_tokens", 0))
    return pt / (pt + rt) if pt + rt > 0 else 0.5
