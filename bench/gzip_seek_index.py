"""Seek indexes for one gzip stream (T0's .jsonl.gz, issue 23): CPU of building and exporting the index, its
size, and the CPU of reading a 6 MiB block from 60% of the stream with it, against decompressing from the
start with zlib (what a task would do without an index).

    taskset -c 1 .venv/bin/python bench/gzip_seek_index.py

indexed_gzip is a dependency (lazaret.io.readers.write_seek_index); rapidgzip is measured only when installed
(``pip install rapidgzip`` in a scratch venv: not a dependency).
"""

from __future__ import annotations

import io
import pathlib
import sys
import time
import zlib

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

cpu = time.process_time


def main() -> int:
    from _common import need_shared

    path = str(need_shared() / "instruct_t0_train_50k/t0_train_50k.jsonl.gz")
    t = cpu()
    d, n, lines = zlib.decompressobj(31), 0, 0
    with open(path, "rb") as fh:
        while True:
            data = fh.read(1 << 20)
            if not data:
                break
            out = d.decompress(data)
            n += len(out)
            lines += out.count(b"\n")
    print(f"zlib: decompress + count lines: {cpu() - t:.3f} CPU-s for {n:,} bytes, {lines:,} lines")
    mid, size = int(n * 0.6), 6 << 20

    import indexed_gzip

    for spacing in (1 << 20, 4 << 20):
        t = cpu()
        f = indexed_gzip.IndexedGzipFile(path, spacing=spacing)
        f.build_full_index()
        buf = io.BytesIO()
        f.export_index(fileobj=buf)
        f.close()
        built = cpu() - t
        t = cpu()
        g = indexed_gzip.IndexedGzipFile(path, spacing=spacing)
        g.import_index(fileobj=io.BytesIO(buf.getvalue()))
        g.seek(mid)
        block = g.read(size)
        g.close()
        print(f"indexed_gzip {indexed_gzip.__version__} spacing {spacing >> 20} MiB: build+export {built:.3f} CPU-s, "
              f"index {len(buf.getvalue()):,} bytes; import+seek+read 6 MiB at 60%: {cpu() - t:.3f} CPU-s")
    try:
        import rapidgzip
    except ImportError:
        print("rapidgzip: not installed")
        return 0
    t = cpu()
    f = rapidgzip.RapidgzipFile(path, parallelization=1)
    f.seek(0, 2)
    buf = io.BytesIO()
    f.export_index(buf)
    f.close()
    built = cpu() - t
    t = cpu()
    g = rapidgzip.RapidgzipFile(path, parallelization=1)
    g.import_index(io.BytesIO(buf.getvalue()))
    g.seek(mid)
    same = g.read(size) == block
    g.close()
    print(f"rapidgzip (parallelization=1): build+export {built:.3f} CPU-s, index {len(buf.getvalue()):,} bytes; "
          f"import+seek+read 6 MiB: {cpu() - t:.3f} CPU-s; same bytes as indexed_gzip: {same}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
