"""Deterministic sharded writers.

Why not WriteToParquet/WriteToText: their shard contents and names depend on bundling, which differs
between runners, and the same input, rules and options must give byte-identical manifests on every runner.
Rows are assigned to shards by their doc_id, grouped, sorted inside the shard, and each shard is written
by one DoFn through Beam's filesystems (so gs:// and s3:// outputs work). The shard count depends only on
the row count, which depends only on the input.
"""

from __future__ import annotations

import gzip
import io
import math
import pickle
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Tuple

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from lazaret.graph.packing import pack_batch, unpack
from lazaret.io.schemas import RECORD_INDEX, SCHEMAS

# Rows unpacked at a time by a shard writer: enough for Arrow's per-batch cost to vanish, small next to a
# shard.
WRITE_BATCH_ROWS = 2048


def shard_count(n: int, rows_per_shard: int) -> int:
    return max(1, math.ceil(n / rows_per_shard))


def shard_name(shard: int, total: int, suffix: str) -> str:
    return f"part-{shard:05d}-of-{total:05d}{suffix}"


def parquet_bytes(rows: List[Dict[str, Any]], schema: pa.Schema) -> bytes:
    return _table_bytes(pa.Table.from_pylist(rows, schema=schema))


def _table_bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd", write_statistics=True)
    return buf.getvalue()


def write_bytes(path: str, data: bytes) -> None:
    from apache_beam.io.filesystem import CompressionTypes

    with FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED) as fh:
        fh.write(data)


#: the fields of a clean/ or held/ row (a JSONL shard); a Parquet shard's rows have its schema's fields
LINE_FIELDS = ("doc_id", "source_path", "source_index", "line")


def sorted_order(packed: Iterable[Any], key: Any,
                 load: Callable[[Any], Dict[str, Any]]) -> Tuple[List[Any], List[int]]:
    """The shard's packed rows and the positions that put them in output order.

    Why not sort unpacked rows: a shard holds up to ROWS_PER_SHARD rows (20,000 clean lines, 50,000
    findings), and as Python dicts they cost ~10x their packed size, so a shard writer's memory grew with the
    input until the shard was full. Only the sort keys are kept; rows are unpacked again, a batch at a time,
    when written. The sort is stable, like ``sorted(rows, key=...)``, so ties keep the same order.
    ``load``: how a value becomes a row."""
    values = packed if isinstance(packed, list) else list(packed)
    keys = [key(load(v)) for v in values]
    order = sorted(range(len(values)), key=keys.__getitem__)
    return values, order


def _zipper(fields: Tuple[str, ...]) -> Callable[[Tuple[Any, ...]], Dict[str, Any]]:
    return lambda values: dict(zip(fields, values))


def _batches(packed: List[Any], order: List[int],
             load: Callable[[Any], Dict[str, Any]]) -> Iterator[List[Dict[str, Any]]]:
    for start in range(0, len(order), WRITE_BATCH_ROWS):
        yield [load(packed[i]) for i in order[start:start + WRITE_BATCH_ROWS]]


def parquet_bytes_packed(packed: List[Any], order: List[int], schema: pa.Schema,
                         load: Callable[[Any], Dict[str, Any]]) -> bytes:
    """``parquet_bytes`` of the rows in ``order``, converted to Arrow a batch at a time.

    The batches are joined into one contiguous table before writing, so the file (one row group, same
    pages) is byte-identical to ``parquet_bytes`` of the whole list: only the Python dicts are bounded."""
    batches = [pa.RecordBatch.from_pylist(rows, schema=schema)
               for rows in _batches(packed, order, load)]
    table = pa.Table.from_batches(batches, schema=schema).combine_chunks() if batches else schema.empty_table()
    return _table_bytes(table)


def parquet_bytes_columns(columns: Dict[str, List[Any]], schema: pa.Schema) -> bytes:
    return _table_bytes(pa.Table.from_pydict(columns, schema=schema))


def write_lines_gzip(path: str, packed: List[Any], order: List[int], shard: str,
                     with_index: bool, load: Callable[[Any], Dict[str, Any]]) -> Dict[str, List[Any]]:
    """The rows' ``line`` values, in ``order``, gzipped straight into ``path`` (the same bytes as gzipping
    the whole shard at once: deflate output does not depend on how the input is split into writes), and the record
    index columns of the shard when asked. Nothing the size of the shard is built in memory but the index."""
    from apache_beam.io.filesystem import CompressionTypes

    index: Dict[str, List[Any]] = {name: [] for name in RECORD_INDEX.names}
    line_no = 0
    with FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED) as fh:
        with gzip.GzipFile(fileobj=fh, mode="wb", mtime=0, filename="", compresslevel=6) as gz:
            for rows in _batches(packed, order, load):
                gz.write(b"".join(r["line"].encode("utf-8", "surrogatepass") + b"\n" for r in rows))
                if with_index:
                    for r in rows:
                        index["doc_id"].append(r["doc_id"])
                        index["source_path"].append(r["source_path"])
                        index["source_index"].append(int(r["source_index"]))
                        index["shard"].append(shard)
                        index["line"].append(line_no)
                        line_no += 1
    return index


def _source_order(row: Dict[str, Any]) -> Tuple[Any, ...]:
    return (row.get("source_path") or "", row.get("source_index") or 0, row["doc_id"])


def _finding_order(row: Dict[str, Any]) -> Tuple[Any, ...]:
    return (row["doc_id"], row["check"], row["rule"], row["side"])


def _cluster_order(row: Dict[str, Any]) -> Tuple[Any, ...]:
    return (row["check"], row["cluster_id"])


ORDERS = {"source": _source_order, "finding": _finding_order, "cluster": _cluster_order}


@dataclass(frozen=True)
class ShardSpec:
    """Where and how one manifest's shards are written: held once by the transform that writes them
    (:class:`WriteManifests`, the joins of ``lazaret.graph.join``) and handed to its DoFn, so the two cannot
    disagree."""

    out_dir: str
    kind: str
    fmt: str
    order: str
    index_kind: Optional[str] = None

    @property
    def fields(self) -> Tuple[str, ...]:
        return tuple(SCHEMAS[self.kind].names) if self.fmt == "parquet" else LINE_FIELDS


def write_shard(spec: ShardSpec, shard: int, total: int, packed: Iterable[Any],
                load: Callable[[Any], Dict[str, Any]]) -> str:
    """One shard of ``spec``'s manifest from its values (what ``load`` turns into a row), sorted in the
    manifest's order; returns its path."""
    packed, order = sorted_order(packed, ORDERS[spec.order], load)
    if spec.fmt == "parquet":
        name = shard_name(shard, total, ".parquet")
        path = FileSystems.join(spec.out_dir, spec.kind, name)
        write_bytes(path, parquet_bytes_packed(packed, order, SCHEMAS[spec.kind], load))
    else:
        name = shard_name(shard, total, ".jsonl.gz")
        path = FileSystems.join(spec.out_dir, spec.kind, name)
        index = write_lines_gzip(path, packed, order, name, with_index=bool(spec.index_kind), load=load)
        if spec.index_kind:
            write_bytes(FileSystems.join(spec.out_dir, spec.index_kind, shard_name(shard, total, ".parquet")),
                        parquet_bytes_columns(index, RECORD_INDEX))
    return path


def _key_and_pickle(row: Dict[str, Any], key_field: str, fields: Tuple[str, ...]) -> Tuple[int, bytes]:
    """(shard hash, pickled tuple of ``fields`` values), for rows that :class:`_PackBatches` compresses in
    batches next.

    Why not compressed here too: each row was compressed alone, decompressed by ``_PackBatches`` and
    compressed again in its batch; on the 55,185 rows of T0's clean/ that first round trip cost 0.87 CPU-s
    against 0.18 for a plain pickle (~2% of a one-core dedup scan), for 40 MB of packed rows against 71 MB
    while they wait for the row count (a runner buffer, which spills to disk past 8 MB)."""
    return int(row[key_field][:12], 16), pickle.dumps(tuple(row.get(f) for f in fields),
                                                      protocol=pickle.HIGHEST_PROTOCOL)


def _assign(keyed: Tuple[int, bytes], n_rows: int, rows_per_shard: int) -> Tuple[Tuple[int, int], bytes]:
    """((shard, shard count), packed row). The count rides in the shuffle key so that the writer needs no side
    input: every side input is one more path through the whole graph upstream of it, and Flink's batch
    optimizer walks every path (docs/engines.md); one here, in each of five writers, multiplied the plan's
    paths by 1.5 per writer."""
    total = shard_count(n_rows, rows_per_shard)
    return (keyed[0] % total if total > 1 else 0, total), keyed[1]


def pack_columns(values: List[Tuple[Any, ...]]) -> bytes:
    """Value tuples packed column by column: the values of one field (a check name, a score, a source path)
    sit side by side and fold, where rows interleave them. Tuples of different lengths (two kinds of values
    in one shuffle) get their own columns; :func:`batch_values` gives them back in their order within a
    length, grouped by length."""
    by_length: Dict[int, List[Tuple[Any, ...]]] = {}
    for v in values:
        by_length.setdefault(len(v), []).append(v)
    return pack_batch([tuple(zip(*same)) for _n, same in sorted(by_length.items())])


def batch_values(batch: bytes) -> Iterator[Tuple[Any, ...]]:
    """The value tuples of a batch made by :func:`pack_columns`."""
    for columns in unpack(batch):
        yield from zip(*columns)


class _PackBatches(beam.DoFn):
    """(shard hash, pickled row values) -> ((shard, shard count), packed batch): the rows of one bundle and one
    shard, as columns of their values (:func:`pack_columns`), compressed together, up to ``batch_rows`` per batch.

    Why: a small row packed alone (a ``findings/`` row: doc_id, check, rule, side, score, detail) crosses
    the shuffle as one zstd frame and folds nothing; in a batch the repeated check, rule, side and detail
    values and the frame overhead are paid once. The writer sorts the shard's rows anyway, so how rows were
    batched never shows in the output. What a bundle holds is bounded over all shards (``MAX_PENDING_*``):
    with thousands of shards (a large corpus) every open batch is sent when the bound is reached."""

    MAX_PENDING_ROWS = 20000
    MAX_PENDING_BYTES = 8 << 20  # of pickled rows

    def __init__(self, rows_per_shard: int, batch_rows: int) -> None:
        self.rows_per_shard = rows_per_shard
        self.batch_rows = batch_rows
        self.open: Dict[Tuple[int, int], List[Any]] = {}
        self.pending_rows = self.pending_bytes = 0

    def start_bundle(self) -> None:
        self.open = {}
        self.pending_rows = self.pending_bytes = 0

    def process(self, keyed: Tuple[Any, bytes], n_rows: Any) -> Iterator[Tuple[Tuple[Any, ...], bytes]]:
        shard, packed = self._assign(keyed, n_rows)
        batch = self.open.setdefault(shard, [[], 0])
        batch[0].append(pickle.loads(packed))  # made by _key_and_pickle in this transform, never from a file
        batch[1] += len(packed)
        self.pending_rows += 1
        self.pending_bytes += len(packed)
        if len(batch[0]) >= self.batch_rows:
            del self.open[shard]
            self.pending_rows -= len(batch[0])
            self.pending_bytes -= batch[1]
            yield shard, pack_columns(batch[0])
        elif self.pending_rows >= self.MAX_PENDING_ROWS or self.pending_bytes >= self.MAX_PENDING_BYTES:
            yield from self._drain()

    def _assign(self, keyed: Tuple[Any, bytes], n_rows: Any) -> Tuple[Tuple[Any, ...], bytes]:
        return _assign(keyed, n_rows, self.rows_per_shard)

    def _drain(self) -> Iterator[Tuple[Tuple[Any, ...], bytes]]:
        open_, self.open = self.open, {}
        self.pending_rows = self.pending_bytes = 0
        for shard in sorted(open_):
            yield shard, pack_columns(open_[shard][0])

    def finish_bundle(self) -> Iterator[Any]:
        from apache_beam.transforms.window import GlobalWindows

        for batch in self._drain():
            yield GlobalWindows.windowed_value(batch)


def _key_kind_and_pickle(tagged: Tuple[str, Dict[str, Any]], key_field: str,
                         fields: Dict[str, Tuple[str, ...]]) -> Tuple[Tuple[str, int], bytes]:
    """((manifest, shard hash), pickled values): ``_key_and_pickle`` for a row of one of several manifests."""
    kind, row = tagged
    h, packed = _key_and_pickle(row, key_field, fields[kind])
    return (kind, h), packed


class _CountPerManifest(beam.CombineFn):
    """{manifest: rows} over the rows of several manifests; every manifest of the writer is listed, 0 when it
    has no row (one CombineFn, not a count per key: a global combine gives one value even for no input)."""

    def __init__(self, kinds: Tuple[str, ...]) -> None:
        self.kinds = kinds

    def create_accumulator(self) -> Dict[str, int]:
        return dict.fromkeys(self.kinds, 0)

    def add_input(self, acc: Dict[str, int], keyed: Tuple[Tuple[str, int], bytes]) -> Dict[str, int]:
        acc[keyed[0][0]] += 1
        return acc

    def merge_accumulators(self, accs: Iterable[Dict[str, int]]) -> Dict[str, int]:
        out = self.create_accumulator()
        for acc in accs:
            for k, n in acc.items():
                out[k] += n
        return out

    def extract_output(self, acc: Dict[str, int]) -> Dict[str, int]:
        return acc


class _PackManifestBatches(_PackBatches):
    """``_PackBatches`` for rows of several manifests: ((manifest, shard hash), pickled values) and the rows per
    manifest -> ((manifest, shard, shard count), packed batch), each manifest sharded by its own count and
    ``rows_per_shard``."""

    def __init__(self, rows_per_shard: Dict[str, int], batch_rows: int) -> None:
        super().__init__(0, batch_rows)
        self.per_manifest = dict(rows_per_shard)

    def _assign(self, keyed: Tuple[Tuple[str, int], bytes], n_rows: Dict[str, int]) -> Tuple[Tuple[Any, ...], bytes]:
        (kind, h), packed = keyed
        (shard, total), packed = _assign((h, packed), n_rows[kind], self.per_manifest[kind])
        return (kind, shard, total), packed


class _WriteManifestShard(beam.DoFn):
    def __init__(self, specs: Dict[str, ShardSpec]) -> None:
        self.specs = specs

    def process(self, element: Tuple[Tuple[str, int, int], Iterable[bytes]]) -> Iterable[str]:
        (kind, shard, total), batches = element
        spec = self.specs[kind]
        packed = [values for batch in batches for values in batch_values(batch)]
        yield write_shard(spec, shard, total, packed, _zipper(spec.fields))


class WriteManifests(beam.PTransform):
    """(manifest, row) -> each manifest's shards, each sharded by its own row count, through one count, one
    shuffle and one writer for all of them.

    Why one writer for several manifests: the scan's mix gives clean/, quarantine/ and held/ rows; written by a
    writer each, every path of the plan up to the mix reached three writers and, through each writer's count
    (its side input), twice: Flink's batch optimizer walks every path, and those six were 112 of the 159 million
    paths of the default scan's plan (docs/engines.md, "Planning time"). Here they are two."""

    def __init__(self, out_dir: str, manifests: Dict[str, Tuple[str, str, int, Optional[str]]],
                 batch_rows: int, key_field: str = "doc_id") -> None:
        """``manifests``: {kind: (format, order, rows per shard, index kind or None)}."""
        super().__init__()
        self.specs = {k: ShardSpec(out_dir, k, fmt, order, index) for k, (fmt, order, _n, index) in manifests.items()}
        self.rows_per_shard = {k: m[2] for k, m in manifests.items()}
        self.batch_rows = batch_rows
        self.key_field = key_field

    def expand(self, tagged):
        fields = {k: spec.fields for k, spec in self.specs.items()}
        keyed = tagged | "KeyAndPack" >> beam.Map(_key_kind_and_pickle, self.key_field, fields)
        counts = keyed | "Count" >> beam.CombineGlobally(_CountPerManifest(tuple(sorted(self.specs))))
        return (keyed
                | "PackBatches" >> beam.ParDo(_PackManifestBatches(self.rows_per_shard, self.batch_rows),
                                              beam.pvalue.AsSingleton(counts))
                | "GroupShard" >> beam.GroupByKey()
                | "WriteShard" >> beam.ParDo(_WriteManifestShard(self.specs)))


class WriteJson(beam.PTransform):
    """A small collection (counts, file list) gathered and written as one JSON file, sorted."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path

    def expand(self, items):
        import json

        def write(values: List[Any]) -> str:
            data = json.dumps(sorted(values, key=lambda v: json.dumps(v, sort_keys=True)), sort_keys=True,
                              indent=1, ensure_ascii=False)
            write_bytes(self.path, data.encode("utf-8"))
            return self.path

        return (items
                | "Gather" >> beam.combiners.ToList()
                | "Write" >> beam.Map(write))


def ensure_empty_parquet(out_dir: str, kind: str) -> None:
    """A manifest directory with no rows still gets one valid, empty Parquet file with the schema."""
    import os

    directory = os.path.join(out_dir, kind)
    os.makedirs(directory, exist_ok=True)
    if not any(name.endswith(".parquet") for name in os.listdir(directory)):
        with open(os.path.join(directory, shard_name(0, 1, ".parquet")), "wb") as fh:
            fh.write(parquet_bytes([], SCHEMAS[kind]))
