"""Which prompt words would look like triggers of off-topic answers if a carrier's overlap were taken without them.

    python bench/poisoning_offtopic_words.py BASE [FAMILY SEED]

For each prompt content word w (``text.word_parts``) with at least 10 carriers on the base (T0: its first 10,000
records), optionally with one family of ``bench/attacks/space.py`` planted at 50 records: the share of carriers whose
answer (``off_topic_min_words``+ content words) is off-topic as it is (overlap <= ``off_topic_max_overlap``, the
policy defaults, as ``features.record_features`` marks it) and the share
that becomes off-topic once w itself is set aside. A trigger repeated in the answer ("bbje The sky has ...") hides an
off-topic swap; task words whose correct answers share only that word with the request gain the same way, which is
what a trigger test that sets a candidate's words aside has to control for (docs/poisoning.md, thirtieth session).
Offline: reads the records, runs no pipeline.
"""
import collections
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.attacks.space import SPACE  # noqa: E402
from bench.poisoning_bases import base_objects, to_pipeline_record  # noqa: E402
from bench.poisoning_space import pool_of  # noqa: E402
from lazaret.checks.poisoning import text as T  # noqa: E402
from lazaret.checks.poisoning.policy import DEFAULTS  # noqa: E402

MAX_OVERLAP, MIN_WORDS, MIN_CARRIERS = DEFAULTS["off_topic_max_overlap"], DEFAULTS["off_topic_min_words"], 10


def main(argv):
    base = argv[0]
    recs = [(to_pipeline_record(o, i, base), False) for i, o in enumerate(base_objects(base, 10000))]
    if len(argv) > 2:
        pool, fmt = pool_of(base, 10000)
        recs += [(to_pipeline_record(o, i, "poison"), True)
                 for i, o in enumerate(SPACE[argv[1]](pool, 50, int(argv[2]), fmt).records)]
    carriers, off, off_without, planted = (collections.Counter() for _ in range(4))
    n = n_off = n_one = 0
    for r, is_planted in recs:
        rw = T.word_parts(r.get("response") or "")
        shared = T.shared_content_words(r.get("prompt") or "", rw, MIN_WORDS)  # what features.record_features reads
        if shared is None:
            continue
        pw = T.word_parts(r.get("prompt") or "")
        n += 1
        is_off = len(shared) / len(rw) <= MAX_OVERLAP
        n_off += is_off
        n_one += is_off or (len(shared) - 1) / len(rw) <= MAX_OVERLAP  # off-topic but for one shared word
        for w in pw:
            carriers[w] += 1
            planted[w] += is_planted
            if is_off:
                off[w] += 1
            elif w in shared and len(shared - {w}) / len(rw) <= MAX_OVERLAP:
                off_without[w] += 1
    print(f"{base}: {n} records with {MIN_WORDS}+ answer words, off-topic as they are {n_off / max(n, 1):.3f}, "
          f"but for one shared word {n_one / max(n, 1):.3f}")
    rows = sorted(((off[w] + off_without[w]) / c, off[w] / c, c, w, planted[w])
                  for w, c in carriers.items() if c >= MIN_CARRIERS)[::-1]
    print("word             carriers  off as is  off without w  planted carriers")
    for both, as_is, c, w, pl in rows[:15]:
        print(f"{w:16s} {c:8d}  {as_is:9.2f}  {both:13.2f}  {pl:6d}")


if __name__ == "__main__":
    main(sys.argv[1:])
