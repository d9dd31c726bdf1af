"""text-dedup's MinHash dedup (text_dedup.minhash, text-dedup 0.4.0) on the same JSONL input, for comparison
with lazaret's dedup.

Runs in a SEPARATE venv (text-dedup's dependencies -- datasets, pyspark, unisim ... -- are not the project's):
    python3 -m venv /work/tdvenv && /work/tdvenv/bin/pip install text-dedup==0.4.0
    /work/tdvenv/bin/python bench/dedup_textdedup.py INPUT.jsonl OUT_DIR [--compare OURS_REMOVED.txt]
        [--hash-func xxh3|sha1] [--hash-bits 32|64] [--b 21 --r 6 | --b 0 (text-dedup picks b, r)]
Input rows: {"doc_id", "text", ...} (e.g. the 1x/4x T0 files of bench/dedup_speed.py, written with
``TMPDIR=DIR .venv/bin/python -c 'import sys; sys.path.insert(0, "bench"); import dedup_speed as d;
d._write_input(1); d._write_input(4)'``). Runs text-dedup's own CLI entry point (``text_dedup.minhash.main``)
in this process, reading the file with Hugging Face ``datasets`` as ``--path json --data_files INPUT``
(offline: HF_DATASETS_OFFLINE=1, HF_HOME and the datasets cache under OUT_DIR, so nothing touches the hub or
~/.cache; the JSON -> Arrow conversion is timed, as our Beam figure times reading the JSONL). Writes
OUT_DIR/removed.txt (doc_ids text-dedup drops: input ids minus the ids in its saved output) and prints
wall/CPU seconds and peak RSS (this process and any children).

Config (default: as close to lazaret's DedupParams as text-dedup allows): word 5-grams (``--ngram 5``),
128 permutations of which 21 bands x 6 rows = 126 are banded (``--num_perm 128 --b 21 --r 6``), xxh3 32-bit
shingle hash with 32-bit universal permutations (``--hash_func xxh3 --hash_bits 32``), ``--min_length 0``
(nothing dropped for being short: lazaret drops only duplicates), ``--num_proc 1`` (one process, figures
per core). What still differs from lazaret: text-dedup tokenises with ``re.split(r"\\W", text.lower())``
(every non-word character is a separator, so runs of punctuation/whitespace make empty tokens inside the
5-grams; lazaret NFKC-folds, deletes punctuation and splits on whitespace); it has no verification step
(``--threshold`` only matters when b/r are not given): every pair sharing one band is unioned and every
non-root member of a connected component is removed, whereas lazaret checks Jaccard >= 0.8 (exact where
cheap) and drops only members at >= 0.8 to the representative.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import time


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("input")
    ap.add_argument("out")
    ap.add_argument("--compare", help="doc_ids lazaret removed (one per line)")
    ap.add_argument("--hash-func", default="xxh3", choices=["xxh3", "sha1"])
    ap.add_argument("--hash-bits", default="32", choices=["32", "64"])
    ap.add_argument("--num-perm", type=int, default=128)
    ap.add_argument("--b", type=int, default=21, help="bands; 0: text-dedup's optimal_param(threshold, num_perm)")
    ap.add_argument("--r", type=int, default=6)
    ap.add_argument("--threshold", type=float, default=0.8)
    args = ap.parse_args()

    src, out = os.path.abspath(args.input), os.path.abspath(args.out)
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    os.environ.update(HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1", HF_HOME=os.path.join(out, "hf_home"),
                      HF_DATASETS_CACHE=os.path.join(out, "cache"), TQDM_DISABLE="1")
    import datasets
    from text_dedup import minhash
    from text_dedup.utils import optimal_param

    datasets.disable_progress_bars()
    cli = ["--path", "json", "--data_files", src, "--split", "train", "--cache_dir", os.path.join(out, "cache"),
           "--output", os.path.join(out, "kept"), "--column", "text", "--num_proc", "1",
           "--ngram", "5", "--min_length", "0", "--num_perm", str(args.num_perm), "--threshold", str(args.threshold),
           "--hash_func", args.hash_func, "--hash_bits", args.hash_bits]
    b, r = (args.b, args.r) if args.b else optimal_param(args.threshold, args.num_perm, 0.5, 0.5)
    cli += ["--b", str(b), "--r", str(r)]
    print("text_dedup.minhash " + " ".join(cli), flush=True)

    t0, c0 = time.time(), time.process_time()
    minhash.main.main(args=cli, standalone_mode=False)
    wall = time.time() - t0
    ch = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = time.process_time() - c0 + ch.ru_utime + ch.ru_stime
    rss = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, ch.ru_maxrss) / 1024

    with open(src, encoding="utf-8") as fh:
        ids = [json.loads(line)["doc_id"] for line in fh]
    kept = set(datasets.load_from_disk(os.path.join(out, "kept"))["doc_id"])
    removed = sorted(set(ids) - kept)
    with open(os.path.join(out, "removed.txt"), "w") as fh:
        fh.write("\n".join(removed) + "\n")
    if args.compare:
        with open(args.compare) as fh:
            ours = {line.strip() for line in fh if line.strip()}
        theirs = set(removed)
        print(f"removed: lazaret {len(ours)}, text-dedup {len(theirs)}, both {len(ours & theirs)}, "
              f"only lazaret {len(ours - theirs)}, only text-dedup {len(theirs - ours)}, "
              f"Jaccard of the two removed sets {len(ours & theirs) / max(1, len(ours | theirs)):.3f}")
    print("RESULT " + json.dumps({"docs": len(ids), "wall": wall, "cpu": cpu, "removed": len(removed),
                                  "peak_rss_mb": rss, "b": b, "r": r, "num_perm": args.num_perm,
                                  "hash_func": args.hash_func, "hash_bits": int(args.hash_bits)}))


if __name__ == "__main__":
    main()
