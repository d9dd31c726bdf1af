"""A local ``multi_processing`` worker that dies mid-run ends the scan with an error instead of hanging it.

Why: Beam's local runner starts each SDK worker as a subprocess from a thread (``SubprocessSdkWorker.run``).
When that process dies (killed by the OOM killer, a signal, a crash in native code), the thread raises and
ends, but the runner's main thread keeps waiting for the bundle the worker had: the scan hangs for ever
(``tests/test_worker_failure.py`` saw it at load 4-9). Here the thread, on a worker exit it did not ask for,
records why and sends the scan's own process SIGTERM; ``lazaret.cli`` turns that into a failed scan (exit 1,
staging folder removed, the reason printed), the way a SIGTERM from outside unwinds a scan. If the main thread
does not unwind within ``FALLBACK_S`` (blocked in native code), the thread removes the staging folder itself and
ends the process with status 1. Without a SIGTERM handler (a program that calls ``scan.run_scan`` itself) the
thread interrupts the main thread instead (KeyboardInterrupt there) and leaves the process alone.

An exit the runner asked for (``stop_worker`` at the end of the run) is not a failure, whatever its code.
Applied with the other runner rows of ``lazaret.runners.spill.REPLACED`` (local runners only, pinned Beam).
"""

from __future__ import annotations

import _thread
import os
import signal
import sys
import threading
from typing import Any, Callable, List

# why each unasked-for worker exit happened ("Worker subprocess exited with return code -9"), in order
WORKER_EXITS: List[str] = []
# what to undo if the scan's main thread cannot unwind (``lazaret.scan`` registers its staging folder's removal)
CLEANUPS: List[Callable[[], None]] = []
# seconds the main thread gets to unwind after the SIGTERM: it may be blocked in native code (a gRPC wait)
# that does not return to Python while the dead worker's bundle is pending, so the signal handler never runs
FALLBACK_S = 20.0


def _force_exit() -> None:
    """The main thread did not unwind: undo what it would have undone, say why, leave with status 1."""
    for undo in list(CLEANUPS):
        try:
            undo()
        except Exception:  # noqa: BLE001 - leave anyway
            pass
    print(f"lazaret scan: FAILED: {WORKER_EXITS[0]}; the staging folder is removed", file=sys.stderr)
    sys.stderr.flush()
    os._exit(1)


def reporting_run(run: Callable[[Any], None]) -> Callable[[Any], None]:
    """``SubprocessSdkWorker.run`` that, when the worker exits with an error before the runner stopped it,
    records the reason and signals the scan's process."""

    def run_and_report(self) -> None:
        try:
            run(self)
        except Exception as exc:  # noqa: BLE001 - any failure of the worker's process ends the scan
            if not getattr(self, "_lazaret_stopping", False):
                WORKER_EXITS.append(f"a Beam worker process died mid-run ({exc})")
                if callable(signal.getsignal(signal.SIGTERM)):
                    timer = threading.Timer(FALLBACK_S, _force_exit)
                    timer.daemon = True
                    timer.start()
                    os.kill(os.getpid(), signal.SIGTERM)
                else:
                    # no SIGTERM handler (a program running the scan in-process, not ``lazaret scan``): a
                    # KeyboardInterrupt in its main thread, so the caller sees an exception and keeps its process
                    _thread.interrupt_main()
            raise

    return run_and_report


def marking_stop(stop_worker: Callable[[Any], None]) -> Callable[[Any], None]:
    """``SubprocessSdkWorkerHandler.stop_worker`` that marks the worker's exit as asked for first."""

    def stop(self) -> None:
        worker = getattr(self, "worker", None)
        if worker is not None:
            worker._lazaret_stopping = True
        stop_worker(self)

    return stop
