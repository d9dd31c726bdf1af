"""A disk-backed data channel for Beam's in-process worker, so one bundle's output cannot fill memory.

Why: in the default local mode (FnApiRunner with its embedded worker) the runner hands a bundle to the worker
and gets control back only when the bundle is finished; everything the bundle emitted waits meanwhile in
``InMemoryDataChannel._inputs``, a Python list of data-plane messages. The read step is one bundle per
input file, so a 7 MB gzip of 21.5 million short lines kept every one of its encoded records in that list:
RSS grew linearly with the file (issue 19: 2.9 GB after 7.25 M records). ``lazaret.runners.spill`` bounds the
runner's buffers *between* stages; this bounds the channel *inside* a bundle the same way: past
``THRESHOLD`` bytes, each message is serialised to an unlinked temporary file and only its position is
kept; the runner reads the messages back one at a time, in order.

Applied for the duration of an in-process run as two rows of ``lazaret.runners.spill.REPLACED`` (``lazaret scan``
without ``--no-spill``); it replaces ``InMemoryDataChannel.__init__`` and ``input_elements`` (internal Beam
API). :func:`install` applies the same two alone, for tests.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import threading
from typing import Any, Iterator, List, Optional, Tuple

LOG = logging.getLogger(__name__)

THRESHOLD = 8 << 20  # bytes of messages kept in memory before the channel spills

_settings = {"dir": None, "threshold": THRESHOLD}


class SpillingInputs:
    """The list of pending data-plane messages: in memory up to ``threshold`` bytes, then on disk."""

    def __init__(self, items: Optional[List[Any]] = None) -> None:
        self._memory: List[Tuple[int, Any]] = []  # (sequence, message)
        self._disk: List[Tuple[int, int, int, int]] = []  # (sequence, kind, offset, length)
        self._bytes = 0
        self._seq = 0
        self._file = None
        self._end = 0
        self._lock = threading.Lock()
        for item in items or []:
            self.append(item)

    def append(self, element: Any) -> None:
        from apache_beam.portability.api import beam_fn_api_pb2

        with self._lock:
            seq = self._seq
            self._seq += 1
            size = element.ByteSize()
            if self._bytes + size <= _settings["threshold"] or not isinstance(
                    element, (beam_fn_api_pb2.Elements.Data, beam_fn_api_pb2.Elements.Timers)):
                self._memory.append((seq, element))
                self._bytes += size
                return
            if self._file is None:
                self._file = tempfile.TemporaryFile(dir=_settings["dir"], prefix="lazaret-channel-")
            blob = element.SerializeToString()
            self._file.seek(self._end)
            self._file.write(blob)
            kind = 0 if isinstance(element, beam_fn_api_pb2.Elements.Data) else 1
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
    return cls is not None and hasattr(cls, "input_elements") and "_inputs" in cls.__init__.__code__.co_names


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
    saved = (cls.__init__, cls.input_elements, dict(_settings))
    original_init = saved[0]

    def __init__(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        self._inputs = SpillingInputs(self._inputs)

    _settings.update(dir=spill_dir, threshold=THRESHOLD if threshold is None else threshold)
    cls.__init__ = __init__
    cls.input_elements = _input_elements
    try:
        yield True
    finally:
        cls.__init__, cls.input_elements = saved[0], saved[1]
        _settings.clear()
        _settings.update(saved[2])
