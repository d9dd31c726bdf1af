"""Reading corpora through Beam's filesystems, one file per element, never losing a line.

Why a DoFn per file instead of ``ReadFromText``: every record must keep its file and line number (the
``doc_id`` and the manifest depend on them), undecodable lines and truncated compressed streams must
become reject rows instead of crashing the run, and a single 50 MB line must not be held in memory.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import logging
import math
import os
import re
import stat
import time
import zlib
from typing import Any, Callable, Dict, Generator, Iterator, List, Optional, Tuple

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from lazaret.graph.mask import shape
from lazaret.graph.packing import MIX_BLOCK, SPREAD_BLOCK
from lazaret.graph.outdir import in_lazaret_output, skip_dir
from lazaret.graph.records import MalformedRecord, build_record, detect_format, make_doc_id, record_id_of, sha256_hex

log = logging.getLogger("lazaret.read")

JSONL_SUFFIXES = (".jsonl", ".ndjson", ".jsonl.gz", ".ndjson.gz", ".jsonl.zst", ".jsonl.zstd", ".ndjson.zst")
PARQUET_SUFFIXES = (".parquet",)
SUPPORTED_SUFFIXES = JSONL_SUFFIXES + PARQUET_SUFFIXES
DEFAULT_MAX_RECORD_BYTES = 8 * 1024 * 1024
PROGRESS_EVERY = 50000
BLOCK_RECORDS = MIX_BLOCK  # records per block (see _Blocks)
# Record indexes of a plain JSONL file read by one task (ReadFile.read_task): the record spread's block
# (packing.SPREAD_BLOCK, the PII cache's reason for it), so a task reads what one spread block held.
TASK_RECORDS = SPREAD_BLOCK
SPLIT_SUFFIXES = (".jsonl", ".ndjson")  # uncompressed: a line is reached by its byte offset (seek)
GZIP_SPLIT_SUFFIXES = (".jsonl.gz", ".ndjson.gz")  # reached through a seek index (write_seek_index)
SEEK_POINTS = 64  # checkpoints of a gzip seek index at most (each holds a 32 KiB window)
SEEK_MIN_SPACING = 1 << 20  # bytes of decompressed data between checkpoints, at least


class InputChanged(RuntimeError):
    """An input file read again (a task of a split file, a block read by the mix) differs from what the
    first read saw: the scan fails rather than let records no check has seen through."""


class InputError(Exception):
    """No input matched, or an input has an unsupported type: a usage error (exit 2)."""


def _supported(path: str) -> bool:
    return path.lower().endswith(SUPPORTED_SUFFIXES)


def display_path(path: str) -> str:
    """The path recorded in manifests: relative to the working directory when under it, so ids do not
    depend on where the clone lives."""
    if "://" in path:
        return path
    absolute = os.path.abspath(path)
    cwd = os.getcwd()
    if absolute.startswith(cwd + os.sep):
        return os.path.relpath(absolute, cwd)
    return absolute


def expand_inputs(inputs: List[str]) -> List[str]:
    """Files, directories (recursively) and globs, through Beam's filesystems; sorted, de-duplicated."""
    found: Dict[str, None] = {}
    for item in inputs:
        matches: List[str] = []
        is_local = "://" not in item
        if is_local and os.path.isdir(item):
            for root, dirs, files in os.walk(item):
                # never descend into a Lazaret output or staging folder: outputs are not inputs
                dirs[:] = sorted(d for d in dirs if not skip_dir(os.path.join(root, d)))
                for name in sorted(files):
                    full = os.path.join(root, name)
                    if _supported(full):
                        matches.append(full)
            if not matches:
                raise InputError(f"{item}: directory holds no supported files ({', '.join(SUPPORTED_SUFFIXES)})")
        else:
            pattern = item
            if not is_local and not any(ch in item for ch in "*?[") and not _supported(item):
                pattern = item.rstrip("/") + "/**"
            try:
                result = FileSystems.match([pattern])[0]
                metadata = result.metadata_list
            except Exception as exc:  # Beam raises BeamIOError for missing paths
                raise InputError(f"{item}: cannot list input ({exc.__class__.__name__}: {exc})") from None
            for meta in metadata:
                if is_local and in_lazaret_output(meta.path, re.split(r"[*?\[]", item, maxsplit=1)[0]):
                    log.warning("input glob: skipping %s (inside a Lazaret output or staging folder)", meta.path)
                    continue
                if _supported(meta.path):
                    matches.append(meta.path)
                elif not any(ch in item for ch in "*?[") and meta.path == item:
                    raise InputError(f"{item}: unsupported file type; supported: {', '.join(SUPPORTED_SUFFIXES)}")
            if not matches:
                raise InputError(f"{item}: no such file, or no supported file matches")
        for m in sorted(matches):
            found[display_path(m)] = None
    return sorted(_transportable(p) for p in found)


UNDECODABLE = "\x00undecodable-name:"  # NUL never occurs in a real path


def _transportable(path: str) -> str:
    """``path``, or a marked, escaped stand-in when its name is not valid UTF-8 (os.walk hands such names
    over with surrogate escapes, which Beam's string coder cannot encode): ReadFile rejects the stand-in
    as ``unreadable_file`` instead of the scan crashing."""
    try:
        path.encode("utf-8")
        return path
    except UnicodeEncodeError:
        raw = path.encode("utf-8", "surrogateescape")
        return UNDECODABLE + raw.decode("utf-8", "backslashreplace")


class _HashingReader(io.RawIOBase):
    """Wraps the raw (compressed) stream: sha256 and size of the file's exact bytes, computed as we read."""

    def __init__(self, raw: Any) -> None:
        self.raw = raw
        self.sha = hashlib.sha256()
        self.size = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.raw.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        self.sha.update(data)
        self.size += n
        return n

    def drain(self) -> None:
        while True:
            data = self.raw.read(1 << 20)
            if not data:
                return
            self.sha.update(data)
            self.size += len(data)


class StreamError(Exception):
    """A compressed stream that is truncated or corrupt; lines decoded before the damage are kept."""

    def __init__(self, rule: str, detail: str) -> None:
        super().__init__(detail)
        self.rule = rule
        self.detail = detail


CHUNK = 1 << 20  # bytes read from a file, and the most bytes one decompression step may produce
ZSTD_MAX_WINDOW = 1 << 27  # zstd's own default limit (128 MiB), made explicit: a frame may not ask for more


def _gzip_chunks(raw: Any) -> Iterator[bytes]:
    """Decompress gzip (several members allowed) in steps of at most CHUNK output bytes.

    ``max_length`` is what bounds memory: deflate expands up to ~1000:1, so one unbounded call on a 1 MiB
    read could return a gigabyte. StreamError when the data is corrupt or ends mid-member.
    """
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    member_fed = False
    while True:
        data = raw.read(CHUNK)
        if not data:
            break
        while data:
            member_fed = True
            try:
                out = d.decompress(data, CHUNK)
            except zlib.error as exc:
                raise StreamError("corrupt_stream", f"gzip data is corrupt ({exc})") from None
            if out:
                yield out
            if d.eof:
                data = d.unused_data  # the next member starts here
                d = zlib.decompressobj(16 + zlib.MAX_WBITS)
                member_fed = False
            else:
                data = d.unconsumed_tail  # input left because the output step was full
    if member_fed and not d.eof:
        raise StreamError("truncated_stream", "gzip stream ended before the end of its member")


class _Tee(io.RawIOBase):
    """A raw stream that also shows every byte it returns to a FrameWalker."""

    def __init__(self, raw: Any, walker: Any) -> None:
        self.raw = raw
        self.walker = walker

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        if data:
            self.walker.feed(data)
        return data


def _zstd_chunks(raw: Any) -> Iterator[bytes]:
    """Decompress zstd (concatenated frames allowed) in reads of at most CHUNK output bytes.

    ``stream_reader().read(n)`` bounds each step's output; it does not notice a stream cut inside a frame,
    which the FrameWalker (lazaret.io.zstd_frames) fed the same bytes does.
    """
    import zstandard

    from lazaret.io.zstd_frames import FrameWalker

    walker = FrameWalker()
    reader = zstandard.ZstdDecompressor(max_window_size=ZSTD_MAX_WINDOW).stream_reader(
        _Tee(raw, walker), read_size=CHUNK, read_across_frames=True, closefd=False)
    while True:
        try:
            out = reader.read(CHUNK)
        except zstandard.ZstdError as exc:
            raise StreamError("corrupt_stream", f"zstd data is corrupt ({exc})") from None
        if not out:
            break
        yield out
    if walker.error:
        raise StreamError("corrupt_stream", f"zstd data is corrupt ({walker.error})")
    if not walker.complete:
        raise StreamError("truncated_stream", "zstd stream ended before the end of its frame")


def decompressed_chunks(raw: Any, path: str) -> Iterator[bytes]:
    """Decompressed bytes of ``raw`` chunk by chunk; StreamError after the last good byte when damaged."""
    lower = path.lower()
    if lower.endswith(".gz"):
        yield from _gzip_chunks(raw)
    elif lower.endswith((".zst", ".zstd")):
        yield from _zstd_chunks(raw)
    else:
        while True:
            data = raw.read(CHUNK)
            if not data:
                return
            yield data


def _body(buf: bytearray) -> bytes:
    return bytes(buf[:-1]) if buf.endswith(b"\r") else bytes(buf)


def iter_lines_at(chunks: Iterator[bytes], max_bytes: int,
                  base: int = 0) -> Iterator[Tuple[Optional[bytes], int, str, int]]:
    """(line or None when over ``max_bytes``, byte length, sha256, offset of the line's first byte in the stream
    of ``chunks`` plus ``base``: where the chunks start in the file) per line; memory bounded by ``max_bytes``,
    and a plain file's line can be reached again by seeking to its offset.

    A StreamError from ``chunks`` propagates after every complete line before the damage was yielded; the
    partial line is not yielded."""
    buf = bytearray()
    oversize: Optional[Any] = None  # running sha256 while skipping an oversized line
    oversize_len = 0
    start = base
    for chunk in chunks:
        pos = 0
        n = len(chunk)
        while pos < n:
            nl = chunk.find(b"\n", pos)
            end = n if nl < 0 else nl
            piece = chunk[pos:end]
            if oversize is not None:
                oversize.update(piece)
                oversize_len += len(piece)
            elif len(buf) + len(piece) > max_bytes:
                oversize = hashlib.sha256(bytes(buf))
                oversize.update(piece)
                oversize_len = len(buf) + len(piece)
                buf = bytearray()
            else:
                buf += piece
            if nl < 0:
                break
            pos = nl + 1
            if oversize is not None:
                yield None, oversize_len, oversize.hexdigest(), start
                oversize, oversize_len = None, 0
            else:
                body = _body(buf)
                buf = bytearray()
                yield body, len(body), sha256_hex(body), start
            start = base + pos
        base += n
    if oversize is not None:
        yield None, oversize_len, oversize.hexdigest(), start
    elif buf:
        body = _body(buf)
        yield body, len(body), sha256_hex(body), start


UTF8_BOM = b"\xef\xbb\xbf"


class RecordLines:
    """Numbers the record lines of a JSONL stream, the one walk shared by every JSONL read.

    The first read of a file, its plan in tasks, a task's read and a block's re-read for the mix must agree on
    which line is record ``i``: a UTF-8 byte order mark on the file's first line is not part of the record, blank
    lines are not records, an oversized line (body None) is one, and a read of a range stops at its end. After
    (or during) the walk, ``index`` is the next record index, ``line`` the last line's number and ``stop`` the
    stream offset just past the last line read, so a caller that stops early or fails knows how far it got."""

    def __init__(self, line: int = 0, first: int = 0, end: Optional[int] = None) -> None:
        self.line = line - 1
        self.index = first
        self.end = end
        self.stop = 0

    def read(self, lines: Iterator[Tuple[Optional[bytes], int, str, int]]
             ) -> Iterator[Tuple[int, Optional[bytes], int, str, int]]:
        """(record index, body, byte length, sha256, offset) per record line of ``lines`` (``iter_lines_at``)."""
        for body, size, sha, start in lines:
            self.line += 1
            self.stop = start + size
            if body is not None:
                if self.line == 0 and body.startswith(UTF8_BOM):
                    body = body[3:]
                if not body.strip():
                    continue  # blank line: not a record
            if self.end is not None and self.index >= self.end:
                break
            self.index += 1
            yield self.index - 1, body, size, sha, start


def plain_chunks(raw: Any) -> Iterator[bytes]:
    """An uncompressed stream in reads of CHUNK bytes."""
    while True:
        data = raw.read(CHUNK)
        if not data:
            return
        yield data


def write_seek_index(path: str, index_dir: str, size: int) -> str:
    """A seek index of the gzip file ``path`` (indexed_gzip: the deflate state every ``spacing`` bytes of
    decompressed data), written to ``index_dir``; its path.

    Why: a line in the middle of one gzip stream can otherwise only be reached by decompressing from the
    start (the tasks of a 1 GB file would decompress it ~80 times). Building it decompresses the file once
    more (0.14 CPU-s for T0's 70 MB); at most SEEK_POINTS checkpoints (spacing grows with the file), so each
    task reads at most ~2 MB of index and decompresses at most one spacing before its first line."""
    import indexed_gzip

    name = FileSystems.join(index_dir, sha256_hex(path.encode("utf-8", "surrogatepass"))[:32] + ".gzidx")
    spacing = max(SEEK_MIN_SPACING, size // SEEK_POINTS)
    with FileSystems.open(path, compression_type="uncompressed") as fh:
        gz = indexed_gzip.IndexedGzipFile(fileobj=fh, spacing=spacing, drop_handles=False)
        try:
            gz.build_full_index()
            with FileSystems.create(name, compression_type="uncompressed") as out:
                gz.export_index(fileobj=out)
        finally:
            gz.close()
    return name


def chunks_at(raw: Any, path: str, offset: int, seek_index: Optional[str]) -> Iterator[bytes]:
    """The decompressed stream of ``raw`` (an open input file) from byte ``offset`` on: a seek in a plain
    file, through the seek index in a gzip file, or by decompressing from the start when it has none."""
    if not path.lower().endswith(".gz"):
        raw.seek(offset)
        return plain_chunks(raw)
    if seek_index is None:
        return skip_bytes(decompressed_chunks(raw, path), offset)
    return _indexed_gzip_chunks(raw, offset, seek_index)


def _indexed_gzip_chunks(raw: Any, offset: int, seek_index: str) -> Iterator[bytes]:
    import indexed_gzip

    gz = indexed_gzip.IndexedGzipFile(fileobj=raw, drop_handles=False)
    try:
        with FileSystems.open(seek_index, compression_type="uncompressed") as fh:
            gz.import_index(fileobj=fh)
        gz.seek(offset)
        while True:
            data = gz.read(CHUNK)
            if not data:
                return
            yield data
    finally:
        gz.close()


def skip_bytes(chunks: Iterator[bytes], n: int) -> Iterator[bytes]:
    """``chunks`` from their ``n``-th byte on."""
    for chunk in chunks:
        if n >= len(chunk):
            n -= len(chunk)
            continue
        yield chunk[n:] if n else chunk
        n = 0


def skip_lines(chunks: Iterator[bytes], n: int) -> Iterator[bytes]:
    """``chunks`` from just after their ``n``-th newline (``iter_lines_at`` yields line ``n`` first from there)."""
    for chunk in chunks:
        if n:
            found = chunk.count(b"\n")
            if found < n:
                n -= found
                continue
            pos = -1
            for _ in range(n):
                pos = chunk.index(b"\n", pos + 1)
            n = 0
            chunk = chunk[pos + 1:]
            if not chunk:
                continue
        yield chunk


def reject(source_path: str, index: int, content_sha: str, rule: str, detail: str, evidence: str = "",
           record_id: Optional[str] = None) -> Dict[str, Any]:
    """A reject row: what is wrong, where, with a masked snippet."""
    return {
        "doc_id": make_doc_id(source_path, index, content_sha),
        "record_id": record_id,
        "source_path": source_path,
        "source_index": index,
        "content_sha256": content_sha,
        "rule": rule,
        "detail": detail,
        "evidence": evidence,
    }


class _BadCell(Exception):
    """A Parquet value with no faithful JSON form: the row is rejected with this rule."""

    def __init__(self, rule: str, detail: str) -> None:
        super().__init__(detail)
        self.rule = rule
        self.detail = detail


def _json_value(value: Any, where: str) -> Any:
    """A Parquet row (from ``to_pylist``) as plain JSON values.

    Binary is decoded as UTF-8 or refused (``str(b"...")`` wrote Python reprs into clean/); NaN and
    infinities are refused (``json.dumps`` writes them as bare ``NaN``, which is not JSON); dates, times and
    decimals become their ISO / decimal strings.
    """
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _BadCell("non_finite_number", f"column {where or '(root)'} holds {value!r}, which JSON cannot "
                                                "represent")
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _BadCell("invalid_utf8", f"binary column {where or '(root)'}: byte {exc.start} is not valid "
                                           "UTF-8") from None
    if isinstance(value, dict):
        return {str(k): _json_value(v, f"{where}.{k}" if where else str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_value(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)  # Decimal, timedelta and the like


def _hash_default(value: Any) -> Any:
    return bytes(value).hex() if isinstance(value, (bytes, bytearray, memoryview)) else str(value)


def _parquet_batch_rows(pf: Any, max_record_bytes: int) -> int:
    """Rows per batch so one batch is about 16 MiB of decoded data (at most 1024, at least 1), from the
    row groups' own size figures: a batch of 1024 rows of 8 MiB each would be 8 GiB."""
    meta = pf.metadata
    widest = 1.0
    for i in range(meta.num_row_groups):
        group = meta.row_group(i)
        if group.num_rows:
            widest = max(widest, group.total_byte_size / group.num_rows)
    return int(max(1, min(1024, (16 << 20) // widest)))


def _refuse_constant(name: str) -> Any:
    raise _NonFiniteLiteral(name)


class _NonFiniteLiteral(ValueError):
    """``json.loads`` accepts NaN, Infinity and -Infinity; JSON (RFC 8259) does not, nor does our output."""


def _unreadable_reason(path: str) -> Optional[str]:
    """Why a local input cannot be read as a file, before opening it (opening a FIFO blocks until a writer
    appears; a device never ends), or None."""
    if path.startswith(UNDECODABLE):
        return "file name is not valid UTF-8 (shown with \\x escapes)"
    if "://" in path:
        return None
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        return f"cannot stat: {exc.__class__.__name__}"
    if not stat.S_ISREG(mode):
        kind = ("a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else
                "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a directory" if stat.S_ISDIR(mode)
                else "not a regular file")
        return f"not a regular file ({kind}); not opened"
    return None


class _NoCount:
    """A counter that counts nothing: a block read again (``ReadFile.read_block``) was counted once."""

    def inc(self, n: int = 1) -> None:
        pass


class _Blocks:
    """The blocks of one file as ``ReadFile`` reads it: every ``BLOCK_RECORDS`` consecutive record indexes
    (``packing.MIX_BLOCK``) make one block, described by where it starts (line number
    in the decompressed stream, the file's format then), how many records it yields and a digest of their
    doc_ids, so ``read_block`` can read it again and prove it read the same records."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.current: Optional[Dict[str, Any]] = None
        self.digest: Any = None

    def start(self, idx: int, line: int, fmt: Optional[str]) -> Iterator[Dict[str, Any]]:
        """A record index begins; yields the finished block's row when ``idx`` opens a new block."""
        if idx % BLOCK_RECORDS:
            return
        yield from self.finish()
        self.current = {"path": self.path, "block": idx // BLOCK_RECORDS, "first": idx, "end": idx + BLOCK_RECORDS,
                        "line": line, "offset": None, "fmt": fmt, "records": 0, "rejects": 0}
        self.digest = hashlib.sha256()

    def open(self, idx: int, line: int, offset: int, fmt: Optional[str], index: Optional[str] = None) -> None:
        """A block (or the part of one that a task reads) starting at record ``idx``, found at byte
        ``offset`` of the decompressed stream (``index``: a gzip file's seek index); :meth:`finish` with the
        index it ends before."""
        self.current = {"path": self.path, "block": idx // BLOCK_RECORDS, "first": idx, "end": None,
                        "line": line, "offset": offset, "index": index, "fmt": fmt, "records": 0, "rejects": 0}
        self.digest = hashlib.sha256()

    def record(self, doc_id: str) -> None:
        self.current["records"] += 1
        self.digest.update(doc_id.encode("ascii"))

    def reject(self) -> None:
        """A line of the block that is not a record (:meth:`ReadFile.read_block_lazily` needs to know there was
        none)."""
        if self.current is not None:
            self.current["rejects"] += 1

    def finish(self, end: Optional[int] = None) -> Iterator[Dict[str, Any]]:
        if self.current is not None and self.current["records"]:
            row = dict(self.current, digest=self.digest.hexdigest())
            if end is not None:
                row["end"] = end
            yield row
        self.current = None


class ReadFile(beam.DoFn):
    """One input path in; records (main output), rejects, one file-info row and its blocks (tagged outputs)
    out. ``read_block`` reads one block's records again (``lazaret.graph.decide.Mix``).

    With ``split``, a plain (uncompressed) JSONL file is not read here: one pass over its lines finds what
    the file row and the file-level rejects need and where each run of TASK_RECORDS record indexes starts
    (byte offset, line, the file's format there, a digest of their doc_ids), and emits those as tasks
    (TASK); ``read_task`` (:class:`ReadTask`, after a reshuffle of the tasks) reads, parses and checks each
    where it lands. Why: the records then need no reshuffle to reach several workers (the record spread
    moved every record once, ~1 byte of shuffle per input byte); the tasks are a few hundred bytes each.
    Compressed files and Parquet are read whole here (a gzip stream cannot be entered in the middle)."""

    REJECT = "reject"
    FILE = "file"
    BLOCK = "block"
    TASK = "task"
    # attribute -> the ``lazaret.read`` counter it increments (set by ``_count``)
    COUNTERS = {"records_read": "records", "rejected": "rejects", "other_format": "records_in_another_format"}
    records_read: Any
    rejected: Any
    other_format: Any

    def __init__(self, fmt: str = "auto", id_field: str = "id", max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
                 split: bool = False, index_dir: Optional[str] = None):
        """``split``: read plain JSONL files in tasks; gzip JSONL files too when ``index_dir`` (a folder of the
        scan's staging, where their seek indexes go) is given."""
        self.fmt = None if fmt == "auto" else fmt
        self.id_field = id_field
        self.max_record_bytes = max_record_bytes
        self.split = split
        self.index_dir = index_dir
        self._count(True)

    def _count(self, counting: bool) -> None:
        """Sets the reader's counters; a reader of blocks read a second time counts nothing (the first read did)."""
        for attr, name in self.COUNTERS.items():
            setattr(self, attr, Metrics.counter("lazaret.read", name) if counting else _NoCount())

    def quiet(self) -> "ReadFile":
        """The same reader without counters, for blocks read a second time."""
        other = ReadFile.__new__(ReadFile)
        other.__dict__.update(self.__dict__)
        other._count(False)
        return other

    def read_block(self, block: Dict[str, Any]) -> Iterator[Dict[str, Any]]:
        """The records (not the rejects) of one block as ``process`` read them; stops quietly where reading
        fails (the first read reported it), the caller compares the count and digest with ``block``'s."""
        path = block["path"]
        first = block["first"]
        end = block["end"]
        if path.lower().endswith(PARQUET_SUFFIXES):
            yield from self._parquet_block(path, first, end)
            return
        try:
            raw_handle = FileSystems.open(path, compression_type="uncompressed")
        except Exception:  # noqa: BLE001 - the caller reports a block it could not read
            return
        fmt = block["fmt"]
        try:
            for i, body, _size, content_sha, _start in self._block_lines(raw_handle, block):
                if body is None:
                    continue
                out, fmt = self._parse_line(body, path, i, content_sha, fmt)
                if not isinstance(out, beam.pvalue.TaggedOutput):
                    yield out
        except Exception:  # noqa: BLE001 - damage after the block's good records: reported by the first read
            return
        finally:
            raw_handle.close()

    def _block_lines(self, raw_handle: Any,
                     block: Dict[str, Any]) -> Iterator[Tuple[int, Optional[bytes], int, str, int]]:
        """The record lines of a JSONL ``block`` (``RecordLines.read``), from the file open as ``raw_handle``."""
        if block.get("offset") is not None:  # a file read in tasks: go to the block's first line
            chunks = chunks_at(raw_handle, block["path"], block["offset"], block.get("index"))
        else:
            chunks = skip_lines(decompressed_chunks(raw_handle, block["path"]), block["line"])
        reader = RecordLines(line=block["line"], first=block["first"], end=block["end"])
        return reader.read(iter_lines_at(chunks, self.max_record_bytes))

    def read_block_lazily(self, block: Dict[str, Any]) -> Iterator[Tuple[str, str, int, Any, Callable[[], Any]]]:
        """``read_block``'s records as (doc_id, source_path, source_index, parsed JSON value, a function that
        builds the record), where the first read met no reject in the block and knew the file's format; from
        ``read_block``'s records otherwise (the value is ``record["raw"]``, the function returns the record).

        Why: the mix writes most records clean, and a clean line needs only the parsed value (``json.dumps`` of
        ``record["raw"]``, which ``build_record`` does not change) and the doc_id (the block's digest needs it
        anyway); building each record's fields, sides and text again was ~1 CPU-s of the mix on all of T0.
        Records are built only for the decided and the evidence. Every line of such a block was a record when
        it was first read; a line that is not one now (the file changed) is skipped like ``read_block`` skips
        it, and the block's digest of doc_ids fails the run as before."""
        fmt = block.get("fmt")
        if block.get("rejects", 1) or fmt is None or block["path"].lower().endswith(PARQUET_SUFFIXES):
            for record in self.read_block(block):
                yield (record["doc_id"], record["source_path"], record["source_index"], record["raw"],
                       (lambda r=record: r))
            return
        path = block["path"]
        try:
            raw_handle = FileSystems.open(path, compression_type="uncompressed")
        except Exception:  # noqa: BLE001 - the caller reports a block it could not read
            return
        try:
            for i, body, _size, content_sha, _start in self._block_lines(raw_handle, block):
                if body is None:
                    continue
                try:
                    obj = json.loads(body.decode("utf-8"), parse_constant=_refuse_constant)
                except Exception:  # noqa: BLE001 - not a record now: the block's digest says so
                    continue
                yield (make_doc_id(path, i, content_sha), path, i, obj,
                       functools.partial(self._build, obj, fmt, path, i, content_sha))
        except Exception:  # noqa: BLE001 - damage after the block's good records: reported by the first read
            return
        finally:
            raw_handle.close()

    def _reject(self, *args: Any, **kwargs: Any) -> beam.pvalue.TaggedOutput:
        """A reject row (:func:`reject`'s arguments) on the REJECT output, counted."""
        self.rejected.inc()
        return beam.pvalue.TaggedOutput(self.REJECT, reject(*args, **kwargs))

    def process(self, path: str) -> Iterator[Any]:
        problem = _unreadable_reason(path)
        if problem:
            if path.startswith(UNDECODABLE):
                path = path[len(UNDECODABLE):]
            yield self._reject(path, 0, sha256_hex(f"{path}:{problem}".encode()), "unreadable_file", problem)
            yield beam.pvalue.TaggedOutput(self.FILE, {"path": path, "size": None, "sha256": None, "records": 1,
                                                        "format": None, "error": "unreadable_file"})
            return
        if path.lower().endswith(PARQUET_SUFFIXES):
            yield from self._parquet(path)
        elif self.split and (path.lower().endswith(SPLIT_SUFFIXES)
                             or (self.index_dir and path.lower().endswith(GZIP_SPLIT_SUFFIXES))):
            yield from self._plan_jsonl(path)
        else:
            yield from self._jsonl(path)

    # -- plain JSON lines, in tasks --------------------------------------------------------------------------
    def _plan_jsonl(self, path: str) -> Iterator[Any]:
        """The first pass over a plain or gzip JSONL file (``split``): its tasks, file row and file-level
        rejects.

        Lines are parsed only until the file's format is known (the first record that parses: what ``_jsonl``
        carries from record to record), so a task starts with the format ``_jsonl`` would have there. A gzip
        file gets a seek index (:func:`write_seek_index`) so its tasks start where they are; a damaged gzip
        file is read whole instead (``_jsonl``: its stream-error reject and the records before the damage,
        exactly as without ``split``)."""
        gz = path.lower().endswith(".gz")
        try:
            raw_handle = FileSystems.open(path, compression_type="uncompressed")
        except Exception as exc:
            yield self._reject(path, 0, sha256_hex(b""), "unreadable_file", f"cannot open: {exc.__class__.__name__}")
            yield beam.pvalue.TaggedOutput(self.FILE, {"path": path, "size": None, "sha256": None, "records": 1,
                                                        "format": None, "error": "unreadable_file"})
            return
        quiet = self.quiet()
        hashing = _HashingReader(raw_handle)
        fmt = self.fmt
        count = 0
        reader = RecordLines()
        tasks: List[Dict[str, Any]] = []
        digests: List[Any] = []
        error: Optional[str] = None
        rejects: List[Any] = []
        try:
            chunks = decompressed_chunks(hashing, path) if gz else plain_chunks(hashing)
            for idx, body, _size, content_sha, start in reader.read(iter_lines_at(chunks, self.max_record_bytes)):
                count += 1
                if idx % TASK_RECORDS == 0:
                    tasks.append({"path": path, "first": idx, "count": 0, "line": reader.line, "offset": start,
                                  "fmt": fmt, "index": None})
                    digests.append(hashlib.sha256())
                tasks[-1]["count"] += 1
                digests[-1].update(make_doc_id(path, idx, content_sha).encode("ascii"))
                if fmt is None and body is not None:
                    out, found = quiet._parse_line(body, path, idx, content_sha, None)
                    if not isinstance(out, beam.pvalue.TaggedOutput):
                        fmt = found
        except Exception as exc:  # noqa: BLE001 - a read error is a finding, not a crash
            if gz:
                raw_handle.close()
                yield from self._jsonl(path)
                return
            error = exc.__class__.__name__
            count += 1
            index = reader.index
            rejects.append(self._reject(
                path, index, sha256_hex(f"{path}:{index}:unreadable".encode()), "unreadable_file",
                f"reading stopped after {index} records: {error}"))
        if count == 0 and error is None:
            count = 1
            rejects.append(self._reject(path, 0, sha256_hex(b""), "empty_file", "file holds no records"))
        try:
            hashing.drain()
        except Exception:  # noqa: BLE001
            pass
        raw_handle.close()
        if gz and len(tasks) > 1 and self.index_dir:
            seek_index = write_seek_index(path, self.index_dir, reader.stop)
            for task in tasks:
                task["index"] = seek_index
        yield from rejects
        for task, digest in zip(tasks, digests):
            yield beam.pvalue.TaggedOutput(self.TASK, dict(task, digest=digest.hexdigest()))
        yield beam.pvalue.TaggedOutput(self.FILE, {
            "path": path, "size": hashing.size, "sha256": hashing.sha.hexdigest(), "records": count,
            "format": fmt, "error": error})

    def read_task(self, task: Dict[str, Any]) -> Iterator[Any]:
        """The records, rejects (tagged REJECT) and blocks (tagged BLOCK: the parts of the task in each block
        of BLOCK_RECORDS indexes, for the mix) of one task of ``_plan_jsonl``, read from its byte offset.

        InputChanged when the lines read are not the ones the first pass saw (count or doc_ids): the file row
        describes the bytes the first pass hashed, and every record must be one of them."""
        path, first = task["path"], task["first"]
        end = first + task["count"]
        fmt = task["fmt"]
        reader = RecordLines(line=task["line"], first=first, end=end)
        digest = hashlib.sha256()
        blocks: Optional[_Blocks] = None
        with FileSystems.open(path, compression_type="uncompressed") as raw_handle:
            chunks = chunks_at(raw_handle, path, task["offset"], task.get("index"))
            lines = iter_lines_at(chunks, self.max_record_bytes, base=task["offset"])
            for i, body, size, content_sha, start in reader.read(lines):
                digest.update(make_doc_id(path, i, content_sha).encode("ascii"))
                if blocks is None or i % BLOCK_RECORDS == 0:
                    if blocks is not None:
                        yield from self._blocks(blocks.finish(i))
                    blocks = _Blocks(path)
                    blocks.open(i, reader.line, start, fmt, task.get("index"))
                fmt = yield from self._line_outputs(body, size, path, i, content_sha, fmt, blocks)
        if reader.index != end or digest.hexdigest() != task["digest"]:
            raise InputChanged(f"{path} changed during the scan: its records {first}-{end - 1} differ between the "
                               "first pass over the file and their read")
        if blocks is not None:
            yield from self._blocks(blocks.finish(end))

    # -- JSON lines --------------------------------------------------------------------------------------
    def _jsonl(self, path: str) -> Iterator[Any]:
        started = time.time()
        reader = RecordLines()
        fmt = self.fmt
        count = 0
        try:
            raw_handle = FileSystems.open(path, compression_type="uncompressed")
        except Exception as exc:
            yield self._reject(path, 0, sha256_hex(b""), "unreadable_file",
                               f"cannot open: {exc.__class__.__name__}")
            yield beam.pvalue.TaggedOutput(self.FILE, {"path": path, "size": None, "sha256": None, "records": 1,
                                                        "format": None, "error": "unreadable_file"})
            return
        hashing = _HashingReader(raw_handle)
        error: Optional[str] = None
        blocks = _Blocks(path)
        try:
            lines = iter_lines_at(decompressed_chunks(hashing, path), self.max_record_bytes)
            for idx, body, size, content_sha, _start in reader.read(lines):
                count += 1
                yield from self._blocks(blocks.start(idx, reader.line, fmt))
                if count % PROGRESS_EVERY == 0:
                    rate = count / max(time.time() - started, 1e-6)
                    log.info("read %d records from %s (%.0f records/s)", count, path, rate)
                fmt = yield from self._line_outputs(body, size, path, idx, content_sha, fmt, blocks)
        except StreamError as exc:
            error = exc.rule
            count += 1
            index = reader.index
            yield self._reject(
                path, index, sha256_hex(f"{path}:{index}:{exc.rule}".encode()), exc.rule,
                f"{exc.detail}, after {index} complete records; the partial last line and anything after it "
                "could not be read")
        except Exception as exc:  # noqa: BLE001 - anything else in decompression is a finding, not a crash
            error = exc.__class__.__name__
            count += 1
            index = reader.index
            yield self._reject(
                path, index, sha256_hex(f"{path}:{index}:unreadable".encode()), "unreadable_file",
                f"reading stopped after {index} records: {error}")
        yield from self._blocks(blocks.finish())
        if count == 0 and error is None:
            count = 1
            yield self._reject(path, 0, sha256_hex(b""), "empty_file", "file holds no records")
        try:
            hashing.drain()
        except Exception:  # noqa: BLE001
            pass
        raw_handle.close()
        yield beam.pvalue.TaggedOutput(self.FILE, {
            "path": path, "size": hashing.size, "sha256": hashing.sha.hexdigest(), "records": count,
            "format": fmt, "error": error})

    def _blocks(self, rows: Iterator[Dict[str, Any]]) -> Iterator[beam.pvalue.TaggedOutput]:
        for row in rows:
            yield beam.pvalue.TaggedOutput(self.BLOCK, row)

    def _line_outputs(self, body: Optional[bytes], size: int, path: str, idx: int, content_sha: str,
                      fmt: Optional[str], blocks: "_Blocks") -> Generator[Any, None, Optional[str]]:
        """One JSONL line's output (its record, or a reject when it is over the size limit or does not parse),
        recorded in its block; returns the format the next line is read with. Shared by the whole-file read and
        the read of one task, so both give the same rows."""
        if body is None:
            blocks.reject()
            yield self._reject(
                path, idx, content_sha, "record_too_large",
                f"line of {size} bytes exceeds the {self.max_record_bytes}-byte record limit")
            return fmt
        out, fmt = self._parse_line(body, path, idx, content_sha, fmt)
        if isinstance(out, beam.pvalue.TaggedOutput):
            blocks.reject()
        else:
            blocks.record(out["doc_id"])
        yield out
        return fmt

    def _parse_line(self, body: bytes, path: str, idx: int, content_sha: str, fmt: Optional[str]):
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            return self._reject(
                path, idx, content_sha, "invalid_utf8", f"byte {exc.start} is not valid UTF-8",
                shape(body.decode("utf-8", "replace"))), fmt
        try:
            obj = json.loads(text, parse_constant=_refuse_constant)
        except _NonFiniteLiteral as exc:
            return self._reject(
                path, idx, content_sha, "invalid_json", f"{exc} is not a JSON value (NaN and Infinity are not "
                                                        "JSON)", shape(text)), fmt
        except RecursionError:
            return self._reject(
                path, idx, content_sha, "too_deeply_nested", "JSON nesting too deep to parse"), fmt
        except ValueError as exc:
            msg = getattr(exc, "msg", str(exc))
            pos = getattr(exc, "pos", None)
            return self._reject(
                path, idx, content_sha, "invalid_json", f"{msg} at character {pos}", shape(text)), fmt
        try:
            record = self._build(obj, fmt, path, idx, content_sha)
        except MalformedRecord as exc:
            rid = record_id_of(obj, self.id_field)
            fmt_note = f" (file format: {fmt})" if fmt else ""
            return self._reject(
                path, idx, content_sha, exc.rule, exc.detail + fmt_note, shape(text), rid), fmt
        self.records_read.inc()
        return record, fmt or record["format"]

    def _build(self, obj: Any, fmt: Optional[str], path: str, idx: int, content_sha: str) -> Dict[str, Any]:
        """The record in the file's format; when that format was detected (not forced with --format) and the
        record lacks its fields but has every field of another format, in that one. Corpora concatenated from
        several sources mix formats in one file (Alpaca rows among chat rows); rejecting a third of such a file
        as malformed would hide its records from every check. A forced format is a statement about the file,
        so it still rejects."""
        try:
            return build_record(obj, fmt, path, idx, content_sha, self.id_field)
        except MalformedRecord as exc:
            other = detect_format(obj) if (exc.rule == "missing_field" and self.fmt is None and fmt
                                           and isinstance(obj, dict)) else None
            if other is None or other == fmt:
                raise
            record = build_record(obj, other, path, idx, content_sha, self.id_field)
            self.other_format.inc()
            return record

    # -- Parquet --------------------------------------------------------------------------------------------
    def _parquet(self, path: str) -> Iterator[Any]:
        import pyarrow.parquet as pq

        count = 0
        error = None
        size = None
        digest = None
        blocks = _Blocks(path)
        try:
            with FileSystems.open(path, compression_type="uncompressed") as fh:
                hashing = _HashingReader(fh)
                hashing.drain()
                size, digest = hashing.size, hashing.sha.hexdigest()
            with FileSystems.open(path, compression_type="uncompressed") as fh:
                pf = pq.ParquetFile(fh)
                index = 0
                for batch in pf.iter_batches(batch_size=_parquet_batch_rows(pf, self.max_record_bytes)):
                    for row in batch.to_pylist():
                        idx = index
                        index += 1
                        count += 1
                        yield from self._blocks(blocks.start(idx, idx, self.fmt))
                        out = self._parquet_row(pf, path, idx, row)
                        if not isinstance(out, beam.pvalue.TaggedOutput):
                            blocks.record(out["doc_id"])
                        yield out
        except Exception as exc:  # noqa: BLE001 - unreadable Parquet is a finding
            error = exc.__class__.__name__
            count += 1
            yield self._reject(
                path, count - 1, sha256_hex(f"{path}:parquet:{count}".encode()), "unreadable_file",
                f"Parquet file could not be read after {count - 1} rows: {error}: {str(exc)[:160]}")
        yield from self._blocks(blocks.finish())
        if count == 0 and error is None:
            count = 1
            yield self._reject(path, 0, sha256_hex(b""), "empty_file", "Parquet file holds no rows")
        yield beam.pvalue.TaggedOutput(self.FILE, {"path": path, "size": size, "sha256": digest,
                                                    "records": count, "format": self.fmt or "auto", "error": error})

    def _parquet_row(self, pf: Any, path: str, idx: int, row: Dict[str, Any]) -> Any:
        """One Parquet row as a record, or a reject (tagged)."""
        try:
            normalised = _json_value(row, "")
        except _BadCell as bad:
            body = json.dumps(row, default=_hash_default, sort_keys=True).encode("utf-8")
            return self._reject(path, idx, sha256_hex(body), bad.rule, bad.detail)
        body = json.dumps(normalised, sort_keys=True, ensure_ascii=False).encode("utf-8")
        content_sha = sha256_hex(body)
        if len(body) > self.max_record_bytes:
            return self._reject(
                path, idx, content_sha, "record_too_large",
                f"row of {len(body)} bytes (as JSON) exceeds the {self.max_record_bytes}-byte record limit")
        try:
            record = build_record(normalised, self.fmt, path, idx, content_sha, self.id_field)
        except MalformedRecord as exc:
            return self._reject(
                path, idx, content_sha, exc.rule,
                exc.detail + f" (parquet columns: {', '.join(pf.schema_arrow.names)[:200]})",
                shape(body.decode("utf-8")))
        self.records_read.inc()
        return record

    def _parquet_block(self, path: str, first: int, end: int) -> Iterator[Dict[str, Any]]:
        """The records of Parquet rows ``first`` to ``end`` (exclusive), for ``read_block``."""
        import pyarrow.parquet as pq

        try:
            with FileSystems.open(path, compression_type="uncompressed") as fh:
                pf = pq.ParquetFile(fh)
                index = 0
                for batch in pf.iter_batches(batch_size=_parquet_batch_rows(pf, self.max_record_bytes)):
                    if index + batch.num_rows <= first:
                        index += batch.num_rows
                        continue
                    for row in batch.to_pylist():
                        idx = index
                        index += 1
                        if idx < first:
                            continue
                        if idx >= end:
                            return
                        out = self._parquet_row(pf, path, idx, row)
                        if not isinstance(out, beam.pvalue.TaggedOutput):
                            yield out
        except Exception:  # noqa: BLE001 - reported by the first read; the caller checks the count
            return


class ReadTask(beam.DoFn):
    """A task of a plain JSONL file (``ReadFile`` with ``split``) -> its records, rejects and blocks."""

    def __init__(self, reader: ReadFile) -> None:
        self.reader = reader

    def process(self, task: Dict[str, Any]) -> Iterator[Any]:
        yield from self.reader.read_task(task)
