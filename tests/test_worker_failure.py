"""Worker failure: a check that raises on a record is retried, then the record is rejected (dead letter),
and the run completes; a killed worker never leaves output that looks complete."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import apache_beam as beam
import pytest

from helpers import quarantine_rows, summary

ROOT = pathlib.Path(__file__).resolve().parent.parent


class ExplodesOnBoom(beam.DoFn):
    """A check with a bug: it raises on any record whose text contains BOOM."""

    def process(self, record):
        from lazaret.checks.findings import make_finding

        if "BOOM" in record["text"]:
            raise RuntimeError("synthetic failure: " + record["text"])
        yield make_finding(record, "rule", "explodes_on_boom", "all", 0.0)


def buggy_expand(records, ctx):
    from lazaret.checks import CheckResult
    from lazaret.checks.guard import Guarded

    return CheckResult(records | "Buggy" >> Guarded("buggy", ExplodesOnBoom()))


@pytest.mark.slow
def test_raising_check_rejects_only_that_record(tmp_path):
    from lazaret.checks import Check, register, unregister
    from lazaret.cli import _parser
    from lazaret.scan import run_scan

    data = tmp_path / "d.jsonl"
    rows = [{"id": f"r{i}", "text": f"record {i} " + ("BOOM secret-value-123" if i == 3 else "fine")}
            for i in range(8)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    args, beam_args = _parser().parse_known_args(["scan", str(data), "--out", str(out), "--quiet",
                                                  "--checks", "pii,buggy", "--pii-nlp", "none"])
    register(Check(name="buggy", expand=buggy_expand))
    try:
        assert run_scan(args, beam_args) == 0
    finally:
        unregister("buggy")
    s = summary(out)
    assert s["conservation"]["holds"] and s["records_in"] == 8
    rejects = [r for r in quarantine_rows(out) if r["action"] == "reject"]
    assert [r["record_id"] for r in rejects] == ["r3"]
    reason = rejects[0]["reasons"][0]
    assert reason["rule"] == "processing_error" and "buggy" in reason["detail"] and "3 attempts" in reason["detail"]
    assert "secret-value" not in reason["detail"]  # the exception message quoted the record: not copied
    assert s["actions"]["clean"] == 7


@pytest.mark.slow
def test_killed_worker_leaves_no_complete_looking_output(tmp_path):
    """Kill one multi_processing worker mid-run: either the run recovers with complete, correct output, or
    it fails and no output directory (nor staging directory) is left that looks complete."""
    psutil = pytest.importorskip("psutil")
    data = tmp_path / "d.jsonl"
    with open(data, "w") as fh:
        for i in range(6000):
            fh.write(json.dumps({"id": f"r{i}", "text": f"Record number {i} talks about Paris and Rome. " * 3})
                     + "\n")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "lazaret", "scan", str(data), "--out", str(out), "--quiet", "--checks", "pii",
           "--runner=DirectRunner", "--direct_running_mode=multi_processing", "--direct_num_workers=2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    parent = psutil.Process(proc.pid)
    killed = None
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        workers = [c for c in parent.children(recursive=True) if "python" in (c.name() or "")]
        if len(workers) >= 2 and time.time() > deadline - 112:
            killed = workers[-1]
            killed.send_signal(signal.SIGKILL)
            break
        time.sleep(0.5)
    try:
        proc.wait(timeout=300)
    except subprocess.TimeoutExpired:
        for c in parent.children(recursive=True):
            c.kill()
        proc.kill()
        pytest.fail("scan hung after a worker was killed")
    assert killed is not None, "the run ended before a worker could be killed; make the input larger"
    leftovers = list(tmp_path.glob("out.lazaret-staging-*"))
    assert not leftovers, f"staging left behind: {leftovers}"
    print("scan exit status after a worker was killed:", proc.returncode)
    if proc.returncode == 0:
        s = summary(out)
        assert s["conservation"]["holds"] and s["records_in"] == 6000
    else:
        assert not out.exists(), "a failed run left an output directory"
        assert proc.returncode == 1


def test_a_worker_that_dies_unasked_signals_the_scan_one_that_is_stopped_does_not(monkeypatch):
    """``lazaret.runners.worker_exit``: the runner thread of a worker that exits with an error before the runner
    stopped it records why and sends SIGTERM to the scan's process (which ``lazaret.cli`` turns into exit 1);
    after ``stop_worker`` the same exit is no failure."""
    from lazaret.runners import worker_exit as W

    sent = []
    monkeypatch.setattr(W.os, "kill", lambda pid, sig: sent.append((pid, sig)))
    monkeypatch.setattr(W, "FALLBACK_S", 3600.0)
    monkeypatch.setattr(W, "WORKER_EXITS", [])
    monkeypatch.setattr(W.signal, "getsignal", lambda signum: (lambda *a: None))  # the CLI's handler

    class Worker:
        def run(self):
            raise RuntimeError("Worker subprocess exited with return code -9")

    class Handler:
        def __init__(self):
            self.worker = Worker()

        def stop_worker(self):
            pass

    run = W.reporting_run(Worker.run)
    with pytest.raises(RuntimeError):
        run(Worker())
    assert sent == [(os.getpid(), signal.SIGTERM)] and "return code -9" in W.WORKER_EXITS[0]
    handler = Handler()
    W.marking_stop(Handler.stop_worker)(handler)
    with pytest.raises(RuntimeError):
        run(handler.worker)
    assert len(sent) == 1 and len(W.WORKER_EXITS) == 1


def test_without_a_sigterm_handler_a_dead_worker_interrupts_the_caller_and_spares_its_process(monkeypatch):
    """A program that runs the scan in-process (no ``lazaret.cli`` SIGTERM handler) gets a KeyboardInterrupt in
    its main thread, not a SIGTERM to its process and no forced exit 20 s later."""
    from lazaret.runners import worker_exit as W

    calls = []
    monkeypatch.setattr(W.os, "kill", lambda pid, sig: calls.append("kill"))
    monkeypatch.setattr(W.threading, "Timer", lambda *a, **k: calls.append("timer"))
    monkeypatch.setattr(W._thread, "interrupt_main", lambda: calls.append("interrupt"))
    monkeypatch.setattr(W.signal, "getsignal", lambda signum: signal.SIG_DFL)
    monkeypatch.setattr(W, "WORKER_EXITS", [])

    class Worker:
        def run(self):
            raise RuntimeError("Worker subprocess exited with return code -9")

    with pytest.raises(RuntimeError):
        W.reporting_run(Worker.run)(Worker())
    assert calls == ["interrupt"] and "return code -9" in W.WORKER_EXITS[0]
