"""A disk-backed data channel for Beam's in-process worker, so one bundle's output cannot fill memory.

Why: in the default local mode (FnApiRunner with its embedded worker) the runner hands a bundle to the worker
and gets control back only when the bundle is finished; everything the bundle emitted waits meanwhile in
``InMemoryDataChannel._inputs``, a Python list of data-plane messages. The read step is one bundle per
input file, so a 7 MB gzip of 21.5 million short lines kept every one of its encoded records in that list:
RSS grew linearly with the file (issue 19: 2.9 GB after 7.25 M records). ``lazaret.runners.spill`` bounds the
runner's buffers *between* stages; this bounds the channel *inside* a bundle the same way: past
``THRESHOLD`` bytes, each message is serialised to an unlinked temporary file and only its position is
kept; the runner reads the messages back one at a time, in order.

The same rows give the channel its own output stream (:func:`output_stream`): its data messages wait as plain
``(instruction_id, transform_id, bytes)`` tuples, flushed at ``FLUSH_BYTES`` (96 KB), and become Beam's
``Elements.Data`` only when read. Why: with protobuf messages upb copied each payload once more to measure it
(``ByteSize`` serialises the message) and twice more when it spilled (serialise, parse), and the 2 MB messages
of the gRPC workers' bound (``spill.DATA_FLUSH_BYTES``) were each above glibc's fixed 128 KB mmap threshold
(``lazaret.runners.memory``), so every copy was a fresh mapping whose 512 pages faulted in: 6 million page
faults and about a third of the CPU of a one-core T0 dedup scan was system time. In-process no message crosses a
socket, so nothing is gained by large ones (docs/shuffles.md, "The in-process data channel").

Applied for the duration of an in-process run as three rows of ``lazaret.runners.spill.REPLACED`` (``lazaret
scan`` without ``--no-spill``); it replaces ``InMemoryDataChannel.__init__``, ``output_stream`` and
``input_elements`` (internal Beam API). :func:`install` applies the same three alone, for tests.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import threading
from typing import Any, Iterator, List, NamedTuple, Optional, Tuple

LOG = logging.getLogger(__name__)

THRESHOLD = 8 << 20  # bytes of messages kept in memory before the channel spills
# data messages of the in-process channel: below glibc's 128 KB mmap threshold (lazaret.runners.memory) with room
# for the stream's last element, so a message and its copies come from the heap, not fresh mappings
FLUSH_BYTES = 96 << 10

_settings = {"dir": None, "threshold": THRESHOLD}


class PendingData(NamedTuple):
    """A data message of the in-process channel as it waits to be read (``Elements.Data`` once read)."""

    instruction_id: str
    transform_id: str
    data: bytes


class SpillingInputs:
    """The list of pending data-plane messages: in memory up to ``threshold`` bytes, then on disk."""

    def __init__(self, items: Optional[List[Any]] = None) -> None:
        self._memory: List[Tuple[int, Any]] = []  # (sequence, message)
        self._disk: List[Tuple[int, Any, int, int]] = []  # (sequence, kind, offset, length)
        self._bytes = 0
        self._seq = 0
        self._file = None
        self._end = 0
        self._lock = threading.Lock()
        for item in items or []:
            self.append(item)

    def append(self, element: Any) -> None:
        from apache_beam.portability.api import beam_fn_api_pb2

        pending = isinstance(element, PendingData)
        with self._lock:
            seq = self._seq
            self._seq += 1
            size = len(element.data) if pending else element.ByteSize()
            if self._bytes + size <= _settings["threshold"] or not (pending or isinstance(
                    element, (beam_fn_api_pb2.Elements.Data, beam_fn_api_pb2.Elements.Timers))):
                self._memory.append((seq, element))
                self._bytes += size
                return
            if self._file is None:
                self._file = tempfile.TemporaryFile(dir=_settings["dir"], prefix="lazaret-channel-")
            if pending:
                # kind: the ids themselves (0 / 1: a serialised Elements.Data / Elements.Timers)
                blob, kind = element.data, (element.instruction_id, element.transform_id)
            else:
                blob = element.SerializeToString()
                kind = 0 if isinstance(element, beam_fn_api_pb2.Elements.Data) else 1
            self._file.seek(self._end)
            self._file.write(blob)
            self._disk.append((seq, kind, self._end, len(blob)))
            self._end += len(blob)

    def __len__(self) -> int:
        return len(self._memory) + len(self._disk)

    def __iter__(self) -> Iterator[Any]:
        from apache_beam.portability.api import beam_fn_api_pb2

        memory, disk = list(self._memory), list(self._disk)
        i = j = 0
        while i < len(memory) or j < len(disk):
            if j >= len(disk) or (i < len(memory) and memory[i][0] < disk[j][0]):
                yield memory[i][1]
                i += 1
                continue
            _seq, kind, offset, length = disk[j]
            j += 1
            with self._lock:
                self._file.flush()
                self._file.seek(offset)
                blob = self._file.read(length)
            if isinstance(kind, tuple):
                yield PendingData(kind[0], kind[1], blob)
                continue
            cls = beam_fn_api_pb2.Elements.Data if kind == 0 else beam_fn_api_pb2.Elements.Timers
            yield cls.FromString(blob)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _input_elements(self, instruction_id, unused_expected_inputs, abort_callback=None):
    """Beam's ``InMemoryDataChannel.input_elements`` over SpillingInputs (same filtering, same order)."""
    from apache_beam.portability.api import beam_fn_api_pb2

    pending, others = self._inputs, []
    self._inputs = SpillingInputs()
    for element in pending:
        if element.instruction_id == instruction_id:
            if isinstance(element, PendingData):
                if element.data:  # Beam's in-memory stream never marks data is_last
                    yield beam_fn_api_pb2.Elements.Data(instruction_id=element.instruction_id,
                                                        transform_id=element.transform_id, data=element.data)
                continue
            if isinstance(element, beam_fn_api_pb2.Elements.Timers):
                if not element.is_last:
                    yield element
            if isinstance(element, beam_fn_api_pb2.Elements.Data):
                if element.data or element.is_last:
                    yield element
        else:
            others.append(element)
    if isinstance(pending, SpillingInputs):
        pending.close()
    for element in others:  # messages of other bundles stay, after anything appended meanwhile
        self._inputs.append(element)


def _compatible() -> bool:
    from apache_beam.runners.worker import data_plane

    cls = getattr(data_plane, "InMemoryDataChannel", None)
    return (cls is not None and hasattr(cls, "input_elements") and hasattr(cls, "output_stream")
            and "_inputs" in cls.__init__.__code__.co_names)


def output_stream(self, instruction_id, transform_id):
    """``InMemoryDataChannel.output_stream`` whose messages wait as :class:`PendingData` and flush at
    ``FLUSH_BYTES`` (Beam's: an ``Elements.Data`` per flush of the module-wide threshold)."""
    from apache_beam.runners.worker import data_plane

    def add_to_inverse_output(data: bytes) -> None:
        if data:  # Beam's stream also sends its empty last buffer, which input_elements skips anyway
            self._inverse._inputs.append(PendingData(instruction_id, transform_id, data))

    stream = data_plane.ClosableOutputStream.create(add_to_inverse_output, add_to_inverse_output,
                                                    self._data_buffer_time_limit_ms)
    stream._size_flush_threshold = FLUSH_BYTES
    return stream


def spilling_init(original_init: Any):
    """``InMemoryDataChannel.__init__`` that makes its pending-message list a :class:`SpillingInputs`
    (a row of ``lazaret.runners.spill.REPLACED``, applied with the other in-process replacements)."""

    def __init__(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        self._inputs = SpillingInputs(self._inputs)

    return __init__


@contextlib.contextmanager
def install(spill_dir: Optional[str] = None, threshold: Optional[int] = None):
    """Use SpillingInputs in every in-process data channel created inside the ``with`` block."""
    from apache_beam.runners.worker import data_plane

    if not _compatible():
        LOG.warning("in-process data channel spill not installed: this Beam's InMemoryDataChannel differs")
        yield False
        return
    cls = data_plane.InMemoryDataChannel
    saved = (cls.__init__, cls.input_elements, dict(_settings), cls.output_stream)
    original_init = saved[0]

    def __init__(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        self._inputs = SpillingInputs(self._inputs)

    _settings.update(dir=spill_dir, threshold=THRESHOLD if threshold is None else threshold)
    cls.__init__ = __init__
    cls.input_elements = _input_elements
    cls.output_stream = output_stream
    try:
        yield True
    finally:
        cls.__init__, cls.input_elements, cls.output_stream = saved[0], saved[1], saved[3]
        _settings.clear()
        _settings.update(saved[2])
