"""Shard-packed shuffles: many small per-document records travel as one element per (bundle, shard).

Why: on the portable runners every shuffle element pays a fixed cost (encode, runner-side buffering, decode,
one call per fused operation). Keyed by doc_id, the verification joins moved one element per node value and
per candidate pair, and that fixed cost, not the Jaccard work, was most of their CPU. Keyed by a hash shard
of the doc_id instead, with a bundle's records packed per shard, the same data moves as a few thousand
elements. Nothing is collected on one worker: a shard holds about ``records / shards`` records, the same
bound as the band-key shards (banding.py), and a buffer is flushed once it holds ``flush_items`` records.

A block travels as one bytes value, not as a tuple for Beam's coder: the in-process runner decodes
and re-encodes every grouped value (and the worker encodes and decodes it), so a tuple of thousands of small
records paid four coder passes; a bytes value costs a copy there, and one pickle each way here. The pickle
is zstd-compressed (level 1, ``lazaret.graph.packing``'s per-thread codec). Why: blocks are not only hashes
and ids. A block gathers records of near-duplicate texts (a cluster's members, the node records a shard
sends to verification), and those share most of their shingle hashes, so the compressor folds them: on the
T0 5k slice the verification joins moved 3.45 bytes per input byte uncompressed and 2.28 compressed, the
cluster step 0.48 and 0.16, the exact step 0.87 and 0.49, at the same CPU within the noise of the machine
(docs/shuffles.md, 2026-12-04). Like ``lazaret.graph.packing``, the bytes are made and read only inside the
pipeline, never from user files.
"""

from __future__ import annotations

import pickle
import struct
import zlib

import numpy as np
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

from apache_beam.transforms.window import GlobalWindows

from lazaret.graph import packing

Block = Tuple[int, bytes]  # (shard, packed records)


def pack(records: Sequence[Any]) -> bytes:
    """Records as one compressed bytes value (see the module doc for why not a tuple, and why compressed)."""
    return packing.pack(tuple(records))


def pack_texts(records: Sequence[Any]) -> bytes:
    """``pack`` at the writers' slower zstd level (``packing.pack_batch``), for the blocks of node records,
    which carry normalised texts: a home's or a candidate component's block holds hundreds of texts of the
    same templates when the shards are few (``shards_for``), and level 7 folds them better than level 1 (T0 5k:
    HomeGroup 0.173 -> 0.149, ClusterGroup 0.100 -> 0.092 bytes per input byte; the other blocks, ids and
    numbers, gain ~1% or lose). ``unpack`` reads both."""
    return packing.pack_batch(tuple(records))


def unpack(blob: bytes) -> Tuple[Any, ...]:
    return packing.unpack(blob)


def unpack_all(blobs: Iterable[bytes]) -> Iterator[Any]:
    """Every record of every block."""
    for blob in blobs:
        yield from packing.unpack(blob)


def hex_ids_raw(doc_ids: Sequence[str]) -> Optional[bytes]:
    """The doc_ids as 16 raw bytes each if every one is 32 lowercase hex digits (what ``lazaret scan`` makes),
    else None. ``raw_ids_hex`` gives the same ``str`` values back."""
    joined = "".join(doc_ids)
    if len(joined) != 32 * len(doc_ids) or joined != joined.lower():
        return None
    try:
        raw = bytes.fromhex(joined)
    except ValueError:
        return None
    return raw if len(raw) == 16 * len(doc_ids) else None  # fromhex skips whitespace


def raw_ids_hex(raw: bytes) -> List[str]:
    """``hex_ids_raw``'s bytes back to the doc_ids."""
    h = raw.hex()
    return [h[i:i + 32] for i in range(0, len(h), 32)]


def pack_edges(edges: Sequence[Tuple[str, str]]) -> bytes:
    """(node, node) entries as one compressed bytes value: as 16 raw bytes per node when every doc_id is 32
    lowercase hex digits (what ``lazaret scan`` makes), else pickled.

    Why: the components' rounds move every edge end several times; a hex doc_id pickles to ~35 bytes and
    its raw bytes are 16, and the compressor still folds the repeats (a star's centre is in every entry of
    its leaves). The raw form round-trips to the same ``str``, so nothing downstream sees a difference.
    """
    raw = hex_ids_raw([x for edge in edges for x in edge])
    if raw is not None:
        return b"x" + packing.compress(raw)
    return b"t" + packing.pack(tuple(edges))


def unpack_edges(blob: bytes) -> List[Tuple[str, str]]:
    """The entries of a ``pack_edges`` value."""
    if blob[:1] == b"x":
        ids = raw_ids_hex(packing.decompress(blob[1:]))
        return list(zip(ids[0::2], ids[1::2]))
    return list(packing.unpack(blob[1:]))


def pack_pairs(pairs: Sequence[Tuple[str, str, bool]]) -> bytes:
    """(a, b, degraded) candidate pairs as one compressed bytes value: 16 raw bytes per hex doc_id and one
    flag byte per pair when every doc_id is 32 lowercase hex digits (as ``pack_edges``), else pickled."""
    raw = hex_ids_raw([x for a, b, _d in pairs for x in (a, b)])
    if raw is not None:
        return b"x" + packing.compress(raw + bytes(bool(d) for _a, _b, d in pairs))
    return b"t" + packing.pack(tuple(pairs))


def unpack_pairs(blob: bytes) -> List[Tuple[str, str, bool]]:
    """The entries of a ``pack_pairs`` value."""
    if blob[:1] == b"x":
        data = packing.decompress(blob[1:])
        n = len(data) // 33
        ids = raw_ids_hex(data[:32 * n])
        return [(ids[2 * i], ids[2 * i + 1], bool(f)) for i, f in enumerate(data[32 * n:])]
    return list(packing.unpack(blob[1:]))


def pack_rows(rows: Sequence[Tuple[Any, ...]], n_ids: int) -> bytes:
    """Rows of ``n_ids`` doc_ids then integers (bools included) as one compressed bytes value: the doc_ids as 16
    raw bytes each when every one is 32 lowercase hex digits, the integers as little-endian int64 columns
    (``unpack_rows`` gives bools back as ints); else pickled. For the label and home notes, one per node."""
    raw = hex_ids_raw([r[i] for r in rows for i in range(n_ids)])
    if raw is None or not rows:
        return b"t" + packing.pack(tuple(rows))
    ints = np.asarray([r[n_ids:] for r in rows], dtype="<i8")
    return b"x" + bytes([n_ids, ints.shape[1]]) + packing.compress(raw + ints.T.tobytes())


def unpack_rows(blob: bytes) -> List[Tuple[Any, ...]]:
    """The rows of a ``pack_rows`` value."""
    if blob[:1] == b"t":
        return list(packing.unpack(blob[1:]))
    n_ids, n_ints = blob[1], blob[2]
    data = packing.decompress(blob[3:])
    n = len(data) // (16 * n_ids + 8 * n_ints)
    ids = raw_ids_hex(data[:16 * n_ids * n])
    cols = np.frombuffer(data, dtype="<i8", offset=16 * n_ids * n).reshape(n_ints, n).T.tolist()
    return [tuple(ids[i * n_ids:(i + 1) * n_ids]) + tuple(cols[i]) for i in range(n)]


#: input bytes per shard of the stage's packed shuffles when the scan knows its input's size (``shards_for``).
#: Why 8 MiB: a shard is then ~3 CPU-s of the whole check's work (all of T0, 70 MB: ~25 CPU-s on one core),
#: still a fine grain for a distributed runner, and a shard holds what each of 4,096 shards holds at 32 GiB.
#: Fewer, larger blocks fold better: T0 5k moves 1.01 / 0.90 / 0.80 / 0.71 bytes per input byte through the
#: stage at 8 / 4 / 2 / 1 shards (docs/shuffles.md, s18-shuf23). What it costs: an input under 8 MiB is one
#: shard, so the stage's steps after the first shuffle run on one worker (~3 CPU-s at most).
BYTES_PER_SHARD = 8 << 20
#: a compressed input file (gzip, zstd, Parquet) counts as this many times its size: about what JSONL
#: gives (T0: 15.9 MB of gzip for 52 MB of JSONL). Only the shard count reads it.
COMPRESSED_FACTOR = 4
_COMPRESSED = (".gz", ".zst", ".zstd", ".parquet")
#: inputs of more files than this are not sized (one metadata request per file on a cloud filesystem, where
#: the graph is built); the stage then keeps ``band_shards``, as a large corpus would get anyway
MATCH_FILES = 1000


def input_bytes(paths: Sequence[str]) -> Optional[int]:
    """The scan's input size as ``shards_for`` reads it (compressed files times ``COMPRESSED_FACTOR``), from
    the files' metadata through Beam's filesystems (no file is opened); None if any path cannot be matched
    (the stage then keeps ``band_shards``), or if there are more than ``MATCH_FILES``. Runs once, where the
    graph is built."""
    from apache_beam.io.filesystems import FileSystems

    if len(paths) > MATCH_FILES:
        return None
    total = 0
    try:
        results = FileSystems.match(list(paths)) if paths else []
    except Exception:  # Beam raises BeamIOError for a path it cannot list; the reader reports it
        return None
    for path, result in zip(paths, results):
        if len(result.metadata_list) != 1:
            return None
        size = int(result.metadata_list[0].size_in_bytes)
        total += size * COMPRESSED_FACTOR if path.lower().endswith(_COMPRESSED) else size
    return total


def shards_for(n_bytes: Optional[int], max_shards: int) -> int:
    """The stage's shard count for an input of ``n_bytes`` (``input_bytes``): a power of two, at most
    ``BYTES_PER_SHARD`` of input per shard, at most ``max_shards`` (the policy's ``band_shards``), which is
    also the count when the size is unknown (None).

    Why: every packed shuffle of the stage sends one block per (bundle, shard), and a block pays Beam's
    framing, a zstd frame and a pickle header (~25-40 bytes); with 4,096 shards the 5,000 records of the T0 5k
    slice were ~1.2 per block, so that overhead and blocks too small for the compressor to fold one
    template's texts were much of the stage's bytes (docs/shuffles.md, s18-shuf23). Why the input's size,
    known where the graph is built, and not a count of records at run time: a count is a side input of the
    first step that shards (``_PrepareFn``), which would hold every record until the read has ended. The
    count is the same on every runner (it is computed once, on the launcher, and travels pickled), and no
    output depends on it: shards only decide where a value is grouped, never what is computed there.
    """
    if n_bytes is None:
        return max_shards
    want = max(1, -(-int(n_bytes) // BYTES_PER_SHARD))
    return max(1, min(1 << (want - 1).bit_length(), max_shards))


def pack_members(rows: Sequence[Tuple[str, str, Any, str, int]]) -> bytes:
    """Members (exact key, doc_id, record_id, snippet, n_tokens) for the findings join as one compressed bytes
    value: the exact keys and doc_ids as 16 raw bytes each when all are 32 lowercase hex digits (what
    ``normalise.prepare`` and ``lazaret scan`` make), then the other three as pickled columns; else pickled
    rows. Why: one member per input record crosses JoinRecords, and the two hex strings pickled were most of
    it (T0 5k: JoinRecords 0.069 -> 0.061 bytes per input byte)."""
    raw = hex_ids_raw([x for r in rows for x in r[:2]])
    if raw is None or not rows:
        return b"t" + packing.pack(tuple(rows))
    rest = pickle.dumps((tuple(r[2] for r in rows), tuple(r[3] for r in rows), tuple(r[4] for r in rows)),
                        protocol=pickle.HIGHEST_PROTOCOL)
    return b"x" + packing.compress(struct.pack("<I", len(rows)) + raw + rest)


def unpack_members(blob: bytes) -> List[Tuple[str, str, Any, str, int]]:
    """The rows of a ``pack_members`` value."""
    if blob[:1] == b"t":
        return list(packing.unpack(blob[1:]))
    data = packing.decompress(blob[1:])
    (n,) = struct.unpack_from("<I", data)
    ids = raw_ids_hex(data[4:4 + 32 * n])
    record_ids, snippets, n_tokens = pickle.loads(data[4 + 32 * n:])
    return [(ids[2 * i], ids[2 * i + 1], record_ids[i], snippets[i], n_tokens[i]) for i in range(n)]


def home_of(band_key0: int, shards: int) -> int:
    """A node record's home shard: that of its first LSH band key. Why: near-duplicates often share that key,
    so a home's block gathers them and compresses (a doc_id's shard is random); see transform._AtHomeFn."""
    return (int(band_key0) & 0xFFFFFFFFFFFFFFFF) % shards


def shard_of(doc_id: str, shards: int) -> int:
    """Deterministic on every worker and runner (CRC-32 of the UTF-8 doc_id, never Python's ``hash``)."""
    return zlib.crc32(doc_id.encode("utf-8")) % shards


class ShardBuffer:
    """Records gathered per shard over a bundle; ``drain`` packs them as one tuple per shard."""

    def __init__(self, shards: int, flush_items: int, packer: Callable[[Sequence[Any]], bytes] = pack) -> None:
        self.shards = shards
        self.flush_items = flush_items
        self.packer = packer
        self.parts: Dict[int, List[Any]] = {}
        self.items = 0

    def add(self, doc_id: str, record: Any) -> None:
        """Buffer ``record`` for the shard of ``doc_id``."""
        self.add_to(shard_of(doc_id, self.shards), record)

    def add_to(self, shard: int, record: Any) -> None:
        part = self.parts.get(shard)
        if part is None:
            self.parts[shard] = part = []
        part.append(record)
        self.items += 1

    @property
    def full(self) -> bool:
        return self.items >= self.flush_items

    def drain(self) -> List[Block]:
        """(shard, records) for every non-empty shard, in shard order; the buffer is empty afterwards."""
        parts, self.parts, self.items = self.parts, {}, 0
        return [(shard, self.packer(parts[shard])) for shard in sorted(parts)]

    def drain_windowed(self) -> Iterator[Any]:
        """``drain`` for ``finish_bundle``, which must emit windowed values."""
        for block in self.drain():
            yield GlobalWindows.windowed_value(block)
