"""Disk-backed shuffle buffers for Beam's local runner, so a scan's memory stays flat as the corpus grows.

Why: the in-process FnApiRunner (what DirectRunner, ``multi_processing`` and the local portable job service
run) keeps every stage boundary in the runner's memory until the next stage has read it: a ``ListBuffer``
of encoded chunks for a PCollection between fused stages, and a ``GroupingBuffer`` for a ``GroupByKey``,
which decodes every key and value into Python objects. A scan crosses several such boundaries with the
whole corpus (records, findings, band keys, candidate pairs), so the runner's memory grew with the input
(issues 2, 3 and 8 measured it). Distributed runners (Dataflow's shuffle service, Flink) spill shuffles to
disk on their own; this module gives the local runner the same property and changes nothing else:

- ``SpillingListBuffer`` keeps up to ``threshold`` bytes of chunks in memory, then appends every chunk to
  an anonymous temporary file and keeps only (offset, length) pairs; readers get the chunks back one at a
  time.
- ``SpillingGroupingBuffer`` keeps the encoded elements as they arrived (more compact than the decoded
  table) and, past ``threshold``, routes each element by a stable hash of its encoded key to one of
  ``PARTITIONS`` spill partitions on disk. When the next stage reads it, each partition is grouped on its
  own with Beam's own ``GroupingBuffer`` (so the grouped output is encoded exactly as Beam encodes it)
  and written to one output file per worker, which is streamed to the worker one partition's chunk at a
  time (chunks hold whole elements: the SDK worker decodes each data message on its own). Peak memory
  is then one partition's grouped table, about 1/``PARTITIONS`` of the shuffle.
- The runner's send loop lets the data stream flush between chunks, so over gRPC (``multi_processing``)
  a stage's input reaches a worker in ~``DATA_FLUSH_BYTES`` messages through the
  channel's byte-limited queue, not as one message as large as the stage's input. (The in-process ``in_memory``
  mode hands its worker every message of a bundle at once whatever the runner does; with the rounds
  below, that is ~``BUNDLE_BYTES`` for stateless stages.)
- Stages whose input is larger than ``num_workers`` x ``BUNDLE_BYTES`` run as rounds of smaller bundles
  (:func:`_process_in_rounds`): a worker's memory during a bundle grows with the bundle's length. The
  in-process worker (one worker, in this process) has its own, larger cap (:func:`one_worker_bundle_bytes`).
- Data-plane messages are flushed at ``DATA_FLUSH_BYTES`` (2 MB) instead of Beam's 10 MB, in the runner
  and in local workers (rows ``flush_*`` of :data:`REPLACED`): a message exists several times over on its
  way (the output stream, its bytes, the protobuf, gRPC's copy, the send queue), so a pass-through bundle of
  a few MB of input peaked ~100 MB above its worker's baseline. With 4 MB bundles and 2 MB messages on the
  workers' side and in the send loop's coalescing, T0 dedup on 2 workers (bench/dedup_speed.py --modes
  beam-mp, two allocator arenas, before the fixed mmap threshold was applied there) went from largest
  worker 457 / 502 MB (1x / 4x, 8 MB bundles) to 329 / 392 MB, runner 389 / 395 to 294 / 310 MB, at the
  same CPU. Those figures were measured while the runner's own gRPC streams (Beam's
  ``TimeBasedBufferingClosableOutputStream``, which binds its own 10 MB default) still flushed at 10 MB:
  since issue 22 the send loop bounds the stream it writes a stage's input to (row ``send_input``;
  tests/test_spill.py reads the message sizes that reach a worker over gRPC); its effect on memory is not
  measured yet. The class itself keeps Beam's default (in ``multi_threading`` mode the in-process workers'
  outputs use it too).
- Local SDK workers start through :mod:`lazaret.runners.beam_worker` (Beam's harness with 16 MB data queues).

A key's values stay in arrival order, and a given input groups to the same keys and values either way; the
order in which keys reach the next stage differs, which Lazaret's output never depends on (its writers sort;
the end-to-end and runner tests check that a scan with every buffer spilled writes byte-identical outputs).

Installed by :func:`install` for the duration of a local run, and only for the runners that run the
pipeline in this process (:func:`for_runner`, :data:`IN_PROCESS_RUNNERS`: FnApiRunner, DirectRunner, in any
``direct_running_mode``); a Portable, Flink, Spark, Dataflow or Prism run is never patched (``--no-spill``
turns it off for local runs too). Every Beam symbol it replaces, where and why, is one row of
:data:`REPLACED`; they are Beam internals, so :func:`install` applies them only on ``PINNED_BEAM`` (the
version pyproject.toml pins; a test fails when the two differ) and when their shape matches, and otherwise
runs Beam as it ships with exactly one warning. Spill files are unlinked at creation, so nothing is left on
disk even if the process is killed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import threading
import zlib
from typing import Any, Callable, Iterator, List, NamedTuple, Optional, Tuple

LOG = logging.getLogger(__name__)

THRESHOLD = 8 << 20  # bytes a buffer keeps in memory before it spills
BUNDLE_BYTES = 4 << 20  # input bytes per bundle above which a stage runs in rounds (_process_in_rounds)
# The same for the in-process worker (one worker in this process): larger, but at most 1/MEMORY_SHARE of the
# memory available when the run starts (one_worker_bundle_bytes)
ONE_WORKER_BUNDLE_BYTES = 32 << 20
MEMORY_SHARE = 256
SEND_QUEUE_BYTES = 16 << 20  # gRPC data queues, runner and local workers (Beam's default: 100 MB each)
DATA_FLUSH_BYTES = 2 << 20  # data-plane messages, runner and local workers (Beam's default: 10 MB)
PARTITIONS = 64  # spill partitions of a grouping buffer
_PENDING = 256 << 10  # per-partition write buffer before a flush to the spill file

_settings = {"dir": None, "threshold": THRESHOLD, "bundle_bytes": BUNDLE_BYTES,
             "one_worker_bundle_bytes": BUNDLE_BYTES}
stats = {"files": 0, "bytes": 0, "rounds": 0}  # since the last install(): spill files made, bytes written,
# stages run in bundle rounds


class _SpillFile:
    """An unlinked temporary file with positional appends and reads (thread-safe; shared by copies)."""

    def __init__(self) -> None:
        self._fh = tempfile.TemporaryFile(dir=_settings["dir"], prefix="lazaret-spill-")
        self._fd = self._fh.fileno()
        self._end = 0
        self._lock = threading.Lock()
        stats["files"] += 1

    def append(self, data: bytes) -> Tuple[int, int]:
        with self._lock:
            off = self._end
            view = memoryview(data)
            while view:
                n = os.pwrite(self._fd, view, off + (len(data) - len(view)))
                view = view[n:]
            self._end += len(data)
            stats["bytes"] += len(data)
        return off, len(data)

    def read(self, ref: Tuple[int, int]) -> bytes:
        off, n = ref
        parts = []
        while n > 0:
            got = os.pread(self._fd, n, off)
            if not got:
                raise IOError(f"spill file truncated at {off}")
            parts.append(got)
            off += len(got)
            n -= len(got)
        return parts[0] if len(parts) == 1 else b"".join(parts)


class _Chunks:
    """A re-iterable sequence of byte chunks, each one kept in memory or in a spill file."""

    def __init__(self, items: List[Any], spill: Optional[_SpillFile]) -> None:
        self._items = items
        self._spill = spill

    def __iter__(self) -> Iterator[bytes]:
        for item in self._items:
            yield item if isinstance(item, (bytes, bytearray)) else self._spill.read(item)

    def __len__(self) -> int:
        return len(self._items)

    def __bool__(self) -> bool:
        return bool(self._items)


_originals: List[Any] = []


def _beam_buffers() -> Tuple[Any, Any]:
    """Beam's own (ListBuffer, GroupingBuffer), remembered before the first install replaces them."""
    if not _originals:
        from apache_beam.runners.portability.fn_api_runner import execution

        _originals.extend([execution.ListBuffer, execution.GroupingBuffer])
    return _originals[0], _originals[1]


def _classes():
    list_base, group_base = _beam_buffers()

    class SpillingListBuffer(list_base):
        """``ListBuffer`` whose chunks move to a spill file once it holds ``threshold`` bytes."""

        def __init__(self, coder_impl) -> None:
            super().__init__(coder_impl)
            self._spill: Optional[_SpillFile] = None
            self._bytes = 0  # every chunk's bytes, in memory or spilled
            self._lock = threading.Lock()  # parallel bundles append their outputs to one buffer

        def nbytes(self) -> int:
            """Encoded bytes held (in memory or spilled); sizes the bundles that read this buffer."""
            return self._bytes

        def _add(self, element: bytes) -> None:
            self._bytes += len(element)
            if self._spill is None:
                self._inputs.append(element)
                if self._bytes > _settings["threshold"]:
                    self._spill = _SpillFile()
                    self._inputs = [self._spill.append(chunk) for chunk in self._inputs]
            else:
                self._inputs.append(self._spill.append(element))

        def copy(self) -> "SpillingListBuffer":
            new = SpillingListBuffer(self._coder_impl)
            new._inputs = list(self._inputs)
            new._spill = self._spill
            new._bytes = self._bytes
            return new

        def append(self, element: bytes) -> None:
            if self.cleared:
                raise RuntimeError("Trying to append to a cleared ListBuffer.")
            if self._grouped_output:
                raise RuntimeError("ListBuffer append after read.")
            with self._lock:
                self._add(element)

        def extend(self, extra) -> None:
            if self.cleared:
                raise RuntimeError("Trying to append to a cleared ListBuffer.")
            if self._grouped_output:
                raise RuntimeError("ListBuffer append after read.")
            with self._lock:
                for chunk in extra:
                    self._add(chunk)

        def partition(self, n: int):
            if self.cleared:
                raise RuntimeError("Trying to partition a cleared ListBuffer.")
            if self._spill is None:
                return super().partition(n)
            # a spilled buffer holds more than one chunk per worker in practice; the round-robin split by
            # chunk is the base class's own rule for that case
            return [_Chunks(self._inputs[k::n], self._spill) for k in range(n)]

        def __iter__(self) -> Iterator[bytes]:
            if self.cleared:
                raise RuntimeError("Trying to iterate through a cleared ListBuffer.")
            return iter(_Chunks(self._inputs, self._spill))

        def clear(self) -> None:
            super().clear()
            self._spill = None
            self._bytes = 0

    class SpillingGroupingBuffer(group_base):
        """``GroupingBuffer`` that keeps encoded elements and spills them by key hash past ``threshold``."""

        def __init__(self, pre_grouped_coder, post_grouped_coder, windowing) -> None:
            super().__init__(pre_grouped_coder, post_grouped_coder, windowing)
            self._raw: List[bytes] = []
            self._bytes = 0
            self._spill: Optional[_SpillFile] = None
            self._parts: List[List[Tuple[int, int]]] = []
            self._pending: List[bytearray] = []
            self._lock = threading.Lock()  # parallel bundles append their outputs to one buffer

        def append(self, elements_data: bytes) -> None:
            if self._grouped_output:
                raise RuntimeError("Grouping table append after read.")
            with self._lock:
                self._bytes += len(elements_data)
                self._append(elements_data)

        def nbytes(self) -> int:
            """Encoded bytes received; sizes the bundles that read the grouped output."""
            return self._bytes

        def _append(self, elements_data: bytes) -> None:
            if self._spill is None:
                self._raw.append(elements_data)
                if self._bytes > _settings["threshold"]:
                    self._start_spilling()
            else:
                self._route(elements_data)

        def _start_spilling(self) -> None:
            self._spill = _SpillFile()
            self._parts = [[] for _ in range(PARTITIONS)]
            self._pending = [bytearray() for _ in range(PARTITIONS)]
            raw, self._raw = self._raw, []
            for blob in raw:
                self._route(blob)

        def _route(self, elements_data: bytes) -> None:
            """Split a data chunk into its elements and append each to its key's partition."""
            from apache_beam.coders.coder_impl import create_InputStream

            coder_impl = self._pre_grouped_coder.get_impl()
            key_impl = self._key_coder.get_impl()
            total = len(elements_data)
            stream = create_InputStream(elements_data)
            start = 0
            while stream.size() > 0:
                windowed = coder_impl.decode_from_stream(stream, True)
                end = total - stream.size()
                part = zlib.crc32(key_impl.encode(windowed.value[0])) % PARTITIONS
                pending = self._pending[part]
                pending += elements_data[start:end]
                if len(pending) >= _PENDING:
                    self._flush(part)
                start = end

        def _flush(self, part: int) -> None:
            if self._pending[part]:
                self._parts[part].append(self._spill.append(bytes(self._pending[part])))
                self._pending[part] = bytearray()

        def _blobs(self) -> Iterator[bytes]:
            """Every element received, as encoded chunks (for ``extend``)."""
            if self._spill is None:
                yield from self._raw
                return
            for part in range(PARTITIONS):
                self._flush(part)
                for ref in self._parts[part]:
                    yield self._spill.read(ref)

        def extend(self, input_buffer) -> None:
            if isinstance(input_buffer, list_base):
                return  # the base class's rule: a ListBuffer here carries no grouped data
            if not isinstance(input_buffer, SpillingGroupingBuffer):
                raise TypeError(f"cannot merge {type(input_buffer).__name__} into a spilling grouping buffer")
            for blob in list(input_buffer._blobs()) if input_buffer is self else input_buffer._blobs():
                self.append(blob)

        def _fresh(self):
            return group_base(self._pre_grouped_coder, self._post_grouped_coder, self._windowing)

        def partition(self, n: int):
            if self._grouped_output:
                return self._grouped_output
            if self._spill is None:
                table = self._fresh()
                for blob in self._raw:
                    table.append(blob)
                self._raw = []
                self._grouped_output = table.partition(n)
                return self._grouped_output
            # one output file per worker; each chunk is one partition's encoded output, whole elements only:
            # a worker decodes every data message on its own, so a chunk must never cut an element
            # each chunk goes to the worker with the fewest bytes so far: a partition's grouped table often
            # holds one key (a writer's shard), and Beam's split of a one-key table always names worker 0
            outputs = [_SpillFile() for _ in range(n)]
            refs: List[List[Tuple[int, int]]] = [[] for _ in range(n)]
            load = [0] * n
            for part in range(PARTITIONS):
                self._flush(part)
                if not self._parts[part]:
                    continue
                table = self._fresh()
                for ref in self._parts[part]:
                    table.append(self._spill.read(ref))
                for chunks in table.partition(n):
                    for chunk in chunks:
                        if chunk:
                            ix = load.index(min(load))
                            load[ix] += len(chunk)
                            refs[ix].append(outputs[ix].append(chunk))
                del table
            self._spill, self._parts, self._pending = None, [], []
            self._grouped_output = [_Chunks(refs[ix], outputs[ix]) for ix in range(n)]
            return self._grouped_output

    return SpillingListBuffer, SpillingGroupingBuffer


_send_failures: List[str] = []  # errors of background senders, raised when install() ends


def _write_chunks(data_out, byte_streams) -> None:
    # Over gRPC the stream also flushes every second from a timer thread, and its flush (hand the buffer
    # to the send queue, then clear it) is not atomic with a write from this thread: bytes written while
    # the flush waits on a full send queue were cleared unsent, and records went missing (caught by the
    # conservation check, 1,226 of 80,000). Holding the flush's own lock while writing closes that window.
    write_lock = getattr(data_out, "_flush_lock", None) or contextlib.nullcontext()
    for byte_stream in (byte_streams or []):
        with write_lock:
            data_out.write(byte_stream)
        data_out.maybe_flush()


def _send_in_background(data_out, byte_streams, where: str) -> None:
    try:
        _write_chunks(data_out, byte_streams)
    except BaseException as exc:  # noqa: BLE001 - reported when install() ends; the run then fails
        _send_failures.append(f"{where}: {type(exc).__name__}: {exc}")
        LOG.error("sending %s to the worker failed: %s", where, exc)
    finally:
        data_out.close()


def _send_input_streaming(self, process_bundle_id: str, read_transform_id: str, byte_streams):
    """``BundleManager._send_input_to_worker`` that streams a stage's input instead of building one message.

    Beam's version writes every chunk into one output stream and flushes when it closes, so the whole input
    becomes one message held by the runner and then by the worker (over gRPC, up to its 2 GB limit). Here
    the stream flushes between chunks (each chunk holds whole elements: a worker's own flushed output, or
    one encoded grouping), and over gRPC the writing runs on its own thread: Beam sends all of a bundle's
    input before it even sends the bundle request, so with bounded queues a streaming sender on the
    bundle's thread would wait for a worker that has not started (it did: a 4x soak stalled). The
    in-process channel is a plain list read once the bundle starts, so there the input is written first,
    as Beam does. Returns the sender thread (None in-process) so tests can wait for it."""
    from apache_beam.runners.worker import data_plane

    conn = self._worker_handler.data_conn
    data_out = conn.output_stream(process_bundle_id, read_transform_id)
    in_memory = isinstance(conn, data_plane.InMemoryDataChannel)
    if hasattr(data_out, "_size_flush_threshold") and not in_memory:
        # Over gRPC this is Beam's TimeBasedBufferingClosableOutputStream, which binds its own 10 MB default
        # when the class is defined (the flush rows of REPLACED do not reach it): bound this stream alone,
        # leaving the class as Beam ships it for every other stream (in-process workers' outputs among them)
        data_out._size_flush_threshold = DATA_FLUSH_BYTES
    if in_memory:  # its stream flushes at channel_spill.FLUSH_BYTES (row channel_output_stream)
        _write_chunks(data_out, byte_streams)
        data_out.close()
        return None
    sender = threading.Thread(target=_send_in_background, name=f"lazaret-send-{process_bundle_id}",
                              args=(data_out, byte_streams, f"{process_bundle_id}/{read_transform_id}"),
                              daemon=True)
    sender.start()
    return sender


class _Concat:
    """Several partitions read as one (a buffer partitioned earlier into more parts than a bundle round)."""

    def __init__(self, parts: List[Any]) -> None:
        self._parts = parts

    def __iter__(self) -> Iterator[bytes]:
        for part in self._parts:
            yield from part

    def __len__(self) -> int:
        return sum(len(p) for p in self._parts)

    def __bool__(self) -> bool:
        return any(bool(p) for p in self._parts)


def _split(buffer: Any, k: int) -> List[Any]:
    """``buffer.partition(k)``, always k parts (a grouped buffer keeps the split of its first read)."""
    parts = list(buffer.partition(k))
    if len(parts) == k:
        return parts
    if len(parts) < k:
        return parts + [[] for _ in range(k - len(parts))]
    return [_Concat(parts[i::k]) for i in range(k)]


def _process_in_rounds(self, inputs, expected_outputs, fired_timers, expected_output_timers, dry_run=False):
    """``ParallelBundleManager.process_bundle`` with bundles of at most ~``bundle_bytes`` of input each.

    Why: Beam's local runner gives each worker one bundle holding 1/``num_workers`` of a stage's input,
    however large. A worker's memory during a bundle (gRPC buffers, decoded elements, allocator growth)
    rises with the bundle's length and falls when it ends, so on a 4x corpus every stage's peak was higher
    than on 1x. Here a stage whose input is larger than ``num_workers * bundle_bytes`` is cut into rounds of
    ``num_workers`` bundles, one per worker, run one round after another; smaller stages (and any stage
    with timers) run exactly as Beam runs them. On one worker the same applies, as a sequence of bundles
    (:func:`_bundle_manager_with_rounds`). Lazaret's results do not depend on bundle boundaries (on
    Dataflow they are arbitrary); the end-to-end tests run with tiny bundles and compare byte for byte."""
    import itertools

    from apache_beam.metrics import monitoring_infos
    from apache_beam.portability.api import beam_fn_api_pb2
    from apache_beam.runners.portability.fn_api_runner import fn_runner
    from apache_beam.utils import thread_pool_executor

    w = self._num_workers
    # one worker: Beam would have used a plain BundleManager (see _bundle_manager_with_rounds)
    whole = _original_parallel[0] if w > 1 else fn_runner.BundleManager.process_bundle
    cap = _settings.get("one_worker_bundle_bytes" if _in_process(self, w) else "bundle_bytes") or 0
    sizes = [getattr(b, "nbytes", None) for b in inputs.values()]
    if fired_timers or cap <= 0 or not sizes or any(f is None for f in sizes):
        return _tidied(whole(self, inputs, expected_outputs, fired_timers, expected_output_timers, dry_run))
    total = sum(f() for f in sizes)
    rounds = -(-total // (w * cap))
    if rounds <= 1:
        return _tidied(whole(self, inputs, expected_outputs, fired_timers, expected_output_timers, dry_run))
    k = w * rounds
    parts: List[dict] = [{} for _ in range(k)]
    for name, buffer in inputs.items():
        for ix, part in enumerate(_split(buffer, k)):
            parts[ix][name] = part
    stats["rounds"] = stats.get("rounds", 0) + 1

    def execute(part_map):
        bundle_manager = fn_runner.BundleManager(self.bundle_context_manager, self._progress_frequency,
                                                 cache_token_generator=self._cache_token_generator)
        return bundle_manager.process_bundle(part_map, expected_outputs, {}, expected_output_timers, dry_run)

    merged = None
    split_results: List[Any] = []
    with thread_pool_executor.shared_unbounded_instance() as executor:
        for r in range(rounds):
            for result, split in executor.map(execute, parts[r * w:(r + 1) * w]):
                split_results += split
                if merged is None:
                    merged = result
                else:
                    merged = beam_fn_api_pb2.InstructionResponse(
                        process_bundle=beam_fn_api_pb2.ProcessBundleResponse(
                            monitoring_infos=monitoring_infos.consolidate(itertools.chain(
                                result.process_bundle.monitoring_infos,
                                merged.process_bundle.monitoring_infos))),
                        error=result.error or merged.error)
            for ix in range(r * w, (r + 1) * w):
                parts[ix] = None  # a finished round's inputs can go
            _tidied(None)
    return merged, split_results


def _in_process(manager: Any, workers: int) -> bool:
    """True when a stage runs on one worker that lives in this process (the default local mode)."""
    if workers != 1:
        return False
    from apache_beam.runners.portability.fn_api_runner import worker_handlers

    handlers = manager.bundle_context_manager.worker_handlers
    return all(isinstance(h, worker_handlers.EmbeddedWorkerHandler) for h in handlers)


def _available_memory() -> Optional[int]:
    """Bytes of memory available to new allocations (Linux ``MemAvailable``), or None where unknown."""
    try:
        with open("/proc/meminfo", "rb") as fh:
            for line in fh:
                if line.startswith(b"MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def one_worker_bundle_bytes(bundle_bytes: int) -> int:
    """The bundle cap of a stage on the in-process worker: ``ONE_WORKER_BUNDLE_BYTES``, but at most
    1/``MEMORY_SHARE`` of the memory available now, and never below ``bundle_bytes``.

    Why larger than ``bundle_bytes``: there the runner and the worker are one process, whose bundle outputs
    already move to disk past 8 MB (``channel_spill``), and every bundle has a fixed cost in the stages that
    buffer per bundle (the near-duplicate check packs its shard blocks and builds its local forests per
    bundle: more bundles make more, smaller and less compressible blocks). On a one-core T0 dedup scan the
    4 MB rounds cost ~18% of the CPU and 200 MB more shuffle bytes than one bundle per stage. Why still a cap:
    a bundle's in-memory state grows with it. On 4x T0 dedup (one core) 32 MB bundles peaked at 510 MB
    (4 MB: 483-503 MB) for 12% less CPU; 64 MB bundles at 590-603 MB (docs/shuffles.md, "One core: bundle
    rounds, Tidy, writers, allocator")."""
    available = _available_memory()
    cap = ONE_WORKER_BUNDLE_BYTES if available is None else min(ONE_WORKER_BUNDLE_BYTES, available // MEMORY_SHARE)
    return max(bundle_bytes, cap)


_original_parallel: List[Any] = []
_tidy: List[Any] = []  # lazaret.runners.memory.Tidy while installed (and not switched off)


def _tidied(result: Any) -> Any:
    """Run the runner's after-work tidy (see ``lazaret.runners.memory.Tidy``), then hand ``result`` back. In-process
    the worker shares this process, so this also tidies after its bundles."""
    if _tidy:
        _tidy[0]()
    return result


def _bundle_manager_with_rounds(original):
    """``FnApiRunner._get_bundle_manager`` that also gives single-worker (in-process) stages the rounds:
    where Beam picks a plain ``BundleManager`` for a stateless stage on one worker, a
    ``ParallelBundleManager`` is used, whose ``process_bundle`` (:func:`_process_in_rounds`) runs small
    stages through ``BundleManager.process_bundle`` exactly as before."""

    def get(self, bundle_context_manager):
        from apache_beam.runners.portability.fn_api_runner import fn_runner

        manager = original(self, bundle_context_manager)
        if (type(manager) is fn_runner.BundleManager and bundle_context_manager.num_workers == 1
                and not bundle_context_manager.stage.is_stateful()):
            return fn_runner.ParallelBundleManager(bundle_context_manager, manager._progress_frequency,
                                                   cache_token_generator=manager._cache_token_generator)
        return manager

    return get


_BEAM_WORKER = b"-m apache_beam.runners.worker.sdk_worker_main"
_OUR_WORKER = b"-m lazaret.runners.beam_worker"


def _bounded_worker_init(original):
    """``SubprocessSdkWorkerHandler.__init__`` that starts Beam's default local worker command through
    ``lazaret.runners.beam_worker`` (the same harness, with bounded data queues); any other command is left alone."""

    def init(self, worker_command_line, *args, **kwargs):
        raw = worker_command_line.encode("utf-8") if isinstance(worker_command_line, str) else worker_command_line
        if raw.endswith(_BEAM_WORKER):
            raw = raw[: -len(_BEAM_WORKER)] + _OUR_WORKER
            worker_command_line = raw if isinstance(worker_command_line, bytes) else raw.decode("utf-8")
        original(self, worker_command_line, *args, **kwargs)

    return init


def _flush_defaults(init: Any, nbytes: int) -> Tuple[Any, ...]:
    """``init.__defaults__`` with ``size_flush_threshold`` set to ``nbytes``. Beam binds the module's
    ``_DEFAULT_SIZE_FLUSH_THRESHOLD`` as a default argument of each output stream's ``__init__`` when the
    class is defined, so setting the global alone changes neither stream."""
    import inspect

    with_default = [n for n, p in inspect.signature(init).parameters.items() if p.default is not p.empty]
    if len(with_default) != len(init.__defaults__ or ()) or "size_flush_threshold" not in with_default:
        raise ValueError(f"unexpected {init.__qualname__}")
    defaults = list(init.__defaults__)
    defaults[with_default.index("size_flush_threshold")] = nbytes
    return tuple(defaults)


# --------------------------------------------------------------------------------------------------------
# Every Beam symbol this package replaces: the one table. ``process`` says where: "runner" = the scan's own
# process, only while :func:`install` is active (restored after); "worker" = each local SDK worker that the
# patched ``SubprocessSdkWorkerHandler`` starts through ``lazaret.runners.beam_worker`` (``multi_processing``), for
# that process's life; "both" = both. Nothing here is applied for any other runner (:func:`for_runner`), nor
# on any Beam but ``PINNED_BEAM``.
# --------------------------------------------------------------------------------------------------------

class Replacement(NamedTuple):
    key: str  # short name, used by lazaret.runners.beam_worker to apply a subset
    process: str  # "runner", "worker" or "both"
    module: str  # Beam module holding the symbol
    attr: str  # dotted path of the symbol inside that module
    by: str  # what replaces it
    why: str
    make: Callable[[Any, Any], Any]  # (original value, its owner) -> replacement


_FN = "apache_beam.runners.portability.fn_api_runner"
_DATA = "apache_beam.runners.worker.data_plane"
_built: dict = {}  # the spilling classes made for the current install()

def _sibling(module: str, name: str) -> Any:
    """``name`` of another module of this package, imported when a patch is installed (not when this module is:
    beam_worker imports this module)."""
    import importlib

    return getattr(importlib.import_module(f"lazaret.runners.{module}"), name)


REPLACED: Tuple[Replacement, ...] = (
    Replacement("list_buffer", "runner", f"{_FN}.execution", "ListBuffer", "SpillingListBuffer",
                "a PCollection between stages: past THRESHOLD bytes its chunks move to an unlinked file",
                lambda orig, owner: _built["list"]),
    Replacement("list_buffer_name", "runner", f"{_FN}.fn_runner", "ListBuffer", "SpillingListBuffer",
                "fn_runner imports ListBuffer by name: the same class must be seen there",
                lambda orig, owner: _built["list"]),
    Replacement("grouping_buffer", "runner", f"{_FN}.execution", "GroupingBuffer", "SpillingGroupingBuffer",
                "a GroupByKey keeps encoded elements and, past THRESHOLD, spills them to PARTITIONS files by key "
                "hash, grouped one partition at a time", lambda orig, owner: _built["group"]),
    Replacement("send_input", "runner", f"{_FN}.fn_runner", "BundleManager._send_input_to_worker",
                "_send_input_streaming",
                "a stage's input streams to the worker chunk by chunk (own thread over gRPC, holding the "
                "stream's flush lock), not as one message the size of the input; over gRPC that stream (Beam's "
                "time-based one, 10 MB) is bounded to DATA_FLUSH_BYTES too",
                lambda orig, owner: _send_input_streaming),
    Replacement("bundle_rounds", "runner", f"{_FN}.fn_runner", "ParallelBundleManager.process_bundle",
                "_process_in_rounds", "a stage above num_workers x BUNDLE_BYTES runs as rounds of bounded bundles",
                lambda orig, owner: _process_in_rounds),
    Replacement("single_worker_rounds", "runner", f"{_FN}.fn_runner", "FnApiRunner._get_bundle_manager",
                "_bundle_manager_with_rounds", "single-worker stateless stages get the bundle rounds too",
                lambda orig, owner: _bundle_manager_with_rounds(orig)),
    Replacement("worker_command", "runner", f"{_FN}.worker_handlers", "SubprocessSdkWorkerHandler.__init__",
                "_bounded_worker_init", "multi_processing workers start through lazaret.runners.beam_worker, which "
                "applies the 'worker' rows of this table", lambda orig, owner: _bounded_worker_init(orig)),
    Replacement("worker_exit", "runner", "apache_beam.runners.portability.local_job_service",
                "SubprocessSdkWorker.run", "lazaret.runners.worker_exit.reporting_run",
                "a multi_processing worker that dies mid-run fails the scan (SIGTERM to the scan's process, handled "
                "by lazaret.cli) instead of leaving the runner waiting for its bundle for ever",
                lambda orig, owner: _sibling("worker_exit", "reporting_run")(orig)),
    Replacement("worker_stop", "runner", f"{_FN}.worker_handlers", "SubprocessSdkWorkerHandler.stop_worker",
                "lazaret.runners.worker_exit.marking_stop", "a worker the runner stops is not a worker that died",
                lambda orig, owner: _sibling("worker_exit", "marking_stop")(orig)),
    Replacement("send_queue", "both", _DATA, "_DEFAULT_SEND_QUEUE_MAX_BYTES", "SEND_QUEUE_BYTES (16 MB)",
                "each data-plane send queue holds up to 16 MB (Beam: 100 MB); read when a channel opens",
                lambda orig, owner: SEND_QUEUE_BYTES),
    Replacement("flush_coalesce", "both", _DATA, "_DEFAULT_SIZE_FLUSH_THRESHOLD", "DATA_FLUSH_BYTES (2 MB)",
                "the send loop coalesces queued messages up to 2 MB (Beam: 10 MB)",
                lambda orig, owner: DATA_FLUSH_BYTES),
    Replacement("flush_size_stream", "both", _DATA, "SizeBasedBufferingClosableOutputStream.__init__.__defaults__",
                "size_flush_threshold=DATA_FLUSH_BYTES",
                "size-based data streams (the workers' outputs, the runner's in-process channel) flush at 2 MB",
                lambda orig, owner: _flush_defaults(owner, DATA_FLUSH_BYTES)),
    Replacement("channel_inputs", "runner", _DATA, "InMemoryDataChannel.__init__",
                "lazaret.runners.channel_spill.spilling_init",
                "the in-process worker's pending output of one bundle (the read step emits a whole file as one "
                "bundle) moves to an unlinked file past 8 MB instead of waiting in a list (issue 19)",
                lambda orig, owner: _sibling("channel_spill", "spilling_init")(orig)),
    Replacement("channel_output_stream", "runner", _DATA, "InMemoryDataChannel.output_stream",
                "lazaret.runners.channel_spill.output_stream",
                "the in-process channel's data messages wait as plain (ids, bytes) tuples, not protobufs (upb copied "
                "each payload to measure it), and flush at 96 KB, below the fixed mmap threshold",
                lambda orig, owner: _sibling("channel_spill", "output_stream")),
    Replacement("channel_input_elements", "runner", _DATA, "InMemoryDataChannel.input_elements",
                "lazaret.runners.channel_spill._input_elements", "reads those messages back in order, one at a time "
                "(each an Elements.Data as Beam's readers expect)",
                lambda orig, owner: _sibling("channel_spill", "_input_elements")),
    Replacement("idle_stages", "worker", "apache_beam.runners.worker.sdk_worker",
                "DEFAULT_BUNDLE_PROCESSOR_CACHE_SHUTDOWN_THRESHOLD_S",
                "lazaret.runners.beam_worker.IDLE_STAGE_S (5 s)",
                "a finished stage's cached bundle processors are released after 5 idle seconds (Beam: 60)",
                lambda orig, owner: _sibling("beam_worker", "IDLE_STAGE_S")),
    Replacement("tidy_bundles", "worker", "apache_beam.runners.worker.bundle_processor",
                "BundleProcessor.process_bundle", "the same, then lazaret.runners.memory.Tidy",
                "after a bundle, at most every 5 s, a full collection and malloc_trim (unless LAZARET_NO_TIDY)",
                lambda orig, owner: _sibling("beam_worker", "with_tidy")(orig)),
)


def _owner_and_name(row: Replacement) -> Tuple[Any, str]:
    import importlib

    owner: Any = importlib.import_module(row.module)
    *path, name = row.attr.split(".")
    for part in path:
        owner = getattr(owner, part)
    return owner, name


def current(row: Replacement) -> Any:
    """The value a row's symbol has now (for tests that check what is replaced)."""
    owner, name = _owner_and_name(row)
    return getattr(owner, name)


def apply(processes: Tuple[str, ...], keys: Optional[Tuple[str, ...]] = None) -> List[Tuple[Any, str, Any, bool]]:
    """Replace the symbols of the table's rows for ``processes`` (and ``keys``, if given); returns what
    :func:`restore` needs to put Beam's own back. All replacements are made first, then set, so a surprise
    in Beam's shape leaves nothing half-replaced."""
    rows = [r for r in REPLACED if r.process in processes and (keys is None or r.key in keys)]
    planned = []
    for row in rows:
        owner, name = _owner_and_name(row)
        original = getattr(owner, name)
        own = not isinstance(owner, type) or name in vars(owner)  # inherited methods are deleted on restore
        planned.append((owner, name, original, own, row.make(original, owner)))
    for owner, name, _original, _own, new in planned:
        setattr(owner, name, new)
    return [(owner, name, original, own) for owner, name, original, own, _new in planned]


def restore(saved: List[Tuple[Any, str, Any, bool]]) -> None:
    for owner, name, original, own in reversed(saved):
        if own:
            setattr(owner, name, original)
        else:
            delattr(owner, name)


FLUSH_ROWS = ("flush_coalesce", "flush_size_stream")


PINNED_BEAM = "2.77.0"  # the apache-beam version pyproject.toml pins; the table was written and tested on it

# Runners that execute the pipeline in this process's FnApiRunner, the only runner the table's rows act on.
# DirectRunner runs a batch pipeline on it (after trying Prism, which needs a download and fails offline).
IN_PROCESS_RUNNERS = ("FnApiRunner", "DirectRunner", "SwitchingDirectRunner")


def runs_in_process(runner: Any) -> bool:
    """True when ``runner`` (a ``--runner`` value: a name, a dotted path, or a runner object) is one of
    ``IN_PROCESS_RUNNERS``. Portable, Flink, Spark, Dataflow and Prism runs are never patched: their SDK
    workers may run in this very process (LOOPBACK), and their engines shuffle on their own."""
    if runner is None:
        return False
    name = runner if isinstance(runner, str) else type(runner).__name__
    name = name.rsplit(".", 1)[-1].lower()
    if not name.endswith("runner"):
        name += "runner"
    return name in {r.lower() for r in IN_PROCESS_RUNNERS}


def _beam_version() -> str:
    import apache_beam

    return apache_beam.__version__


def _compatible() -> bool:
    """The pinned Beam, and the shapes the replacements rely on (a patched or rebuilt Beam may differ)."""
    if _beam_version() != PINNED_BEAM:
        return False
    try:
        import inspect

        from apache_beam.runners.portability.fn_api_runner import fn_runner

        list_base, group_base = _beam_buffers()
        lb = list_base(None)
        if not all(hasattr(lb, a) for a in ("_inputs", "_grouped_output", "cleared")):
            return False
        send = inspect.signature(fn_runner.BundleManager._send_input_to_worker)
        if list(send.parameters) != ["self", "process_bundle_id", "read_transform_id", "byte_streams"]:
            return False
        get = inspect.signature(fn_runner.FnApiRunner._get_bundle_manager)
        if list(get.parameters) != ["self", "bundle_context_manager"]:
            return False
        par = fn_runner.ParallelBundleManager.process_bundle
        if list(inspect.signature(par).parameters) != ["self", "inputs", "expected_outputs", "fired_timers",
                                                       "expected_output_timers", "dry_run"]:
            return False
        if not all(a in inspect.getsource(par) for a in ("_num_workers", "_cache_token_generator",
                                                          "_progress_frequency", "bundle_context_manager")):
            return False
        src = inspect.getsource(group_base.__init__)
        if not all(a in src for a in ("_key_coder", "_pre_grouped_coder", "_post_grouped_coder", "_windowing",
                                      "_grouped_output")):
            return False
        for row in REPLACED:  # every symbol is there, and the flush defaults have the expected shape
            owner, name = _owner_and_name(row)
            getattr(owner, name)
            if name == "__defaults__":
                _flush_defaults(owner, DATA_FLUSH_BYTES)
        return True
    except Exception:  # noqa: BLE001 - any surprise in Beam's internals means: do not patch
        return False


@contextlib.contextmanager
def install(spill_dir: Optional[str] = None, threshold: Optional[int] = None,
            bundle_bytes: Optional[int] = None):
    """Apply the table's "runner" and "both" rows to this process's FnApiRunner for the ``with`` block;
    restore Beam after. Yields True when they are in use, False (after exactly one warning) when this Beam
    is not ``PINNED_BEAM`` or its internals no longer match them. Callers choose the runner:
    see :func:`for_runner`."""
    if not _compatible():
        LOG.warning("Beam patches not installed: apache_beam %s is not %s, the version lazaret.runners.spill's "
                    "replacements were written and tested against (or its runner internals differ); the "
                    "local runner runs as Beam ships it, shuffles in memory", _beam_version(), PINNED_BEAM)
        yield False
        return
    if spill_dir:
        os.makedirs(spill_dir, exist_ok=True)
    previous = dict(_settings)
    from lazaret.runners import channel_spill

    channel_previous = dict(channel_spill._settings)
    channel_spill._settings.update(dir=spill_dir)
    cap = BUNDLE_BYTES if bundle_bytes is None else bundle_bytes
    _settings.update(dir=spill_dir, threshold=THRESHOLD if threshold is None else threshold, bundle_bytes=cap,
                     one_worker_bundle_bytes=one_worker_bundle_bytes(cap) if bundle_bytes is None else cap)
    from apache_beam.runners.portability.fn_api_runner import fn_runner

    from lazaret.runners.memory import Tidy, frozen_start_up, tidy_enabled

    _original_parallel[:] = [fn_runner.ParallelBundleManager.process_bundle]
    _built["list"], _built["group"] = _classes()
    _tidy[:] = [Tidy()] if tidy_enabled() else []
    stats.update(files=0, bytes=0, rounds=0)
    _send_failures.clear()
    saved = apply(("runner", "both"))
    try:
        with frozen_start_up():  # the start-up's objects out of the full collections while the run lasts
            yield True
        if _send_failures:
            raise RuntimeError("the local runner could not send a stage's input to a worker: "
                               + "; ".join(_send_failures[:3]))
        LOG.info("shuffle spill: %d file(s), %.1f MB written; %d stage(s) run in bundle rounds", stats["files"],
                 stats["bytes"] / 2**20, stats["rounds"])
    finally:
        restore(saved)
        _settings.clear()
        _settings.update(previous)
        channel_spill._settings.clear()
        channel_spill._settings.update(channel_previous)
        _tidy.clear()
        _built.clear()


@contextlib.contextmanager
def for_runner(runner: Any, spill_dir: Optional[str] = None):
    """:func:`install` when ``runner`` runs in this process (:func:`runs_in_process`); for any other runner
    nothing is replaced and this yields False."""
    if not runs_in_process(runner):
        yield False
        return
    with install(spill_dir) as active:
        yield active
