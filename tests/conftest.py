"""Shared fixtures: where the public datasets live, and skipping cleanly when they are absent."""

from __future__ import annotations

import os
import pathlib
import sys
import threading
import traceback

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
SHARED_DATA = pathlib.Path(os.environ.get("LAZARET_SHARED_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def repo_root() -> pathlib.Path:
    return ROOT


@pytest.fixture(scope="session")
def shared_data() -> pathlib.Path:
    """The ../shared/data folder, or a skip when this is a user's clone without it."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared datasets not present at {SHARED_DATA}")
    return SHARED_DATA


POISONING_BASES_ENABLE = "LAZARET_POISONING_BASES"
ENGINES_ENABLE = "LAZARET_ENGINES"
# opt-in groups: marker -> the variable that asks for it
OPT_IN = {"poisoning_bases": POISONING_BASES_ENABLE, "engines": ENGINES_ENABLE}


def opted_in(config, marker: str, env: str) -> bool:
    """An opt-in group of tests is asked for: its variable set to 1, or its marker selected with ``-m``."""
    markexpr = config.getoption("markexpr") or ""
    return os.environ.get(env) == "1" or (marker in markexpr and f"not {marker}" not in markexpr)


def pytest_collection_modifyitems(config, items):
    """Two groups run only when asked for; ``make test-more`` runs both, and CI runs it after ``make test``, which
    must stay under 20 minutes on 2 cores: ``engines`` (``sample_data`` on Flink and Spark, byte-identical to the
    in-process scan: 4-7 minutes of job-server JVMs and Flink's plan) and ``poisoning_bases`` (one planted attack
    on a whole shared-data base, 40-180 s each, each a regression of one finding on real data)."""
    for marker, env in OPT_IN.items():
        if opted_in(config, marker, env):
            continue
        skip = pytest.mark.skip(reason=f"opt-in: set {env}=1 or run with -m {marker} (make test-more)")
        for item in items:
            if marker in item.keywords:
                item.add_marker(skip)


_EXIT_STATUS = [0]
THREAD_GRACE_S = 30.0


def pytest_sessionfinish(session, exitstatus):
    _EXIT_STATUS[0] = int(exitstatus)


def _lingering_threads():
    """Threads that would keep the interpreter from exiting: non-daemon threads, and the workers of any
    ``concurrent.futures`` pool (joined at exit by an atexit hook even when they are daemon threads)."""
    from concurrent.futures import thread as cf_thread

    pool_workers = set(getattr(cf_thread, "_threads_queues", {}).keys())
    return [t for t in threading.enumerate()
            if t is not threading.main_thread() and t.is_alive() and (not t.daemon or t in pool_workers)]


def _release_idle_pool_workers() -> None:
    """What the interpreter's exit hook for ``concurrent.futures`` does first: wake every idle pool worker
    with the sentinel that ends it. A worker still busy in a work item stays alive, and is reported."""
    from concurrent.futures import thread as cf_thread

    queues = getattr(cf_thread, "_threads_queues", {})
    with cf_thread._global_shutdown_lock:
        cf_thread._shutdown = True  # the suite is over: no pool may take new work
    for q in list(queues.values()):
        q.put(None)


def pytest_unconfigure(config):
    """A test that leaves a thread behind makes the interpreter hang at exit after every test passed (stop
    24's CI run passed 214 tests, then hung until the 90-minute limit). Give such threads a grace period,
    then print each one's name and stack and leave with the suite's own status rather than hang."""
    import time

    _release_idle_pool_workers()
    deadline = time.monotonic() + THREAD_GRACE_S
    left = _lingering_threads()
    while left and time.monotonic() < deadline:
        left[0].join(timeout=max(0.1, deadline - time.monotonic()))
        left = _lingering_threads()
    if not left:
        return
    frames = sys._current_frames()
    print(f"\nconftest: {len(left)} thread(s) still alive after the suite; exiting without waiting for them:",
          file=sys.stderr)
    for t in left:
        print(f"--- thread {t.name!r} (daemon={t.daemon}, {type(t).__module__}.{type(t).__name__})", file=sys.stderr)
        traceback.print_stack(frames.get(t.ident), file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(_EXIT_STATUS[0])
