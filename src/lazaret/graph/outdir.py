"""Where a scan writes: ``--out``, its staging folder beside it, and what may never be read as input.

Why a module of its own: the output folder is replaced wholesale (``--overwrite``), so a path mistake
deletes data. Before anything runs, the launcher refuses an ``--out`` that equals, contains or lies inside
an input; ``--overwrite`` replaces only a folder that is itself a previous Lazaret output; input
directories are walked without descending into Lazaret outputs or staging folders; and a staging folder
holds an advisory lock for the life of its run, so a later run can remove the ones a killed run left
(the kernel releases the lock when its holder dies, even by SIGKILL) without touching one in use.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import shutil
import uuid
from typing import Iterable, List, Optional

from lazaret.rules.errors import ConfigError

log = logging.getLogger("lazaret")

STAGING_INFIX = ".lazaret-staging-"
OLD_INFIX = ".lazaret-old-"
LOCK_NAME = ".lazaret-lock"
# Files whose presence marks a folder as a Lazaret scan output (summary.json and provenance.json are written
# by every finished scan, job_graph.json by a --dry_run).
OUTPUT_MARKERS = ("provenance.json", "summary.json", "job_graph.json")
SEEK_DIR = "_seek"  # in a staging folder: gzip seek indexes (lazaret.io.readers), removed before --out
_STAGING_RE = re.compile(re.escape(STAGING_INFIX) + r"[0-9a-f]{8}$")

_held_locks: dict = {}  # staging path -> open lock file, held until the run ends (released on process death)


def _is_remote(path: str) -> bool:
    return "://" in path


def _real(path: str) -> str:
    return os.path.realpath(os.path.abspath(path))


def _inside(child: str, parent: str) -> bool:
    """``child`` equals ``parent`` or lies under it (both already resolved)."""
    parent = parent.rstrip("/") or "/"
    return child == parent or child.startswith(parent if parent.endswith("/") else parent + "/")


def is_lazaret_output(path: str) -> bool:
    """A folder a scan wrote (or is writing): it holds a marker file, or is named like a staging/old folder."""
    name = os.path.basename(path.rstrip("/"))
    if STAGING_INFIX in name or OLD_INFIX in name:
        return True
    return any(os.path.isfile(os.path.join(path, m)) for m in OUTPUT_MARKERS + (LOCK_NAME,))


def in_lazaret_output(path: str, root: str) -> bool:
    """``path`` (a file matched by a glob) lies in a Lazaret output or staging folder below ``root``."""
    root_real = _real(root or ".")
    parent = os.path.dirname(_real(path))
    while _inside(parent, root_real) and parent != root_real:
        if is_lazaret_output(parent):
            return True
        parent = os.path.dirname(parent)
    return False


def skip_dir(path: str) -> bool:
    """While walking an input directory: do not descend into Lazaret outputs and staging folders."""
    if is_lazaret_output(path):
        log.warning("input walk: skipping %s (a Lazaret output or staging folder is never read as input)",
                    path)
        return True
    return False


def check_out_against_inputs(out: str, raw_inputs: Iterable[str], files: Iterable[str]) -> None:
    """ConfigError (exit 2) when ``out`` equals, contains or lies inside an input, or an input file lies in it.

    ``raw_inputs`` are the arguments as given (folders, files, globs); ``files`` the expanded input files.
    Paths are compared after resolving symbolic links, so a link to the corpus counts as the corpus.
    """
    if _is_remote(out):
        out_norm = out.rstrip("/")
        for item in raw_inputs:
            base = re.split(r"[*?\[]", item, maxsplit=1)[0].rstrip("/")
            if base and (_inside(out_norm, base) or _inside(base, out_norm)):
                raise ConfigError(f"the output folder overlaps the input {item!r}; choose an --out outside "
                                  "every input (and not above one)", path=out, field="--out")
        return
    out_real = _real(out)
    for item in raw_inputs:
        if _is_remote(item) or any(ch in item for ch in "*?["):
            continue  # a glob's matches are checked one by one below
        if not os.path.exists(item):
            continue
        real = _real(item)
        if _inside(out_real, real):
            what = "is" if out_real == real else "lies inside"
            raise ConfigError(f"the output folder {what} the input {item!r}; the scan would read its own "
                              "outputs and --overwrite would delete the input. Choose an --out outside every "
                              "input", path=out, field="--out")
        if _inside(real, out_real):
            raise ConfigError(f"the output folder contains the input {item!r}; replacing it would delete the "
                              "input. Choose an --out outside every input", path=out, field="--out")
    for f in files:
        if _is_remote(f) or "\x00" in f:  # remote, or a stand-in for an undecodable name (io.readers)
            continue
        if _inside(_real(f), out_real):
            raise ConfigError(f"the input file {f!r} lies inside the output folder", path=out, field="--out")


def remove_stale_staging(out: str) -> List[str]:
    """Remove ``OUT.lazaret-staging-*`` folders that no live run holds (their lock is free); return them.

    A staging folder without a lock file (left by an older Lazaret) cannot be proven idle: it is left in
    place with a warning naming it.
    """
    if _is_remote(out):
        return []
    out = out.rstrip("/")
    parent = os.path.dirname(os.path.abspath(out))
    prefix = os.path.basename(out) + STAGING_INFIX
    removed: List[str] = []
    try:
        names = sorted(os.listdir(parent))
    except OSError:
        return removed
    for name in names:
        if not name.startswith(prefix) or not _STAGING_RE.search(name):
            continue
        path = os.path.join(parent, name)
        if path in _held_locks or not os.path.isdir(path) or os.path.islink(path):
            continue
        lock = os.path.join(path, LOCK_NAME)
        try:
            fd = os.open(lock, os.O_RDWR | os.O_NOFOLLOW)
        except OSError:
            log.warning("staging folder %s has no lock file (an older Lazaret left it?); not removed", path)
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue  # a live run holds it
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
            log.warning("removed %s, left by a run that was killed", path)
        finally:
            os.close(fd)
    return removed


def prepare(out: str, overwrite: bool, kinds: Iterable[str]) -> str:
    """Check ``out``, clean stale staging folders and create this run's locked staging folder beside it."""
    if not _is_remote(out) and os.path.lexists(out):
        if not os.path.isdir(out):
            raise ConfigError("exists and is not a directory", path=out, field="--out")
        if os.listdir(out):
            if not overwrite:
                raise ConfigError("output directory exists and is not empty; pass --overwrite to replace it",
                                  path=out, field="--out")
            if not is_lazaret_output(out):
                raise ConfigError("--overwrite replaces only a previous Lazaret output (a folder holding "
                                  f"{' or '.join(OUTPUT_MARKERS)}); this folder is not one, so it is left alone",
                                  path=out, field="--out")
    staging = f"{out.rstrip('/')}{STAGING_INFIX}{uuid.uuid4().hex[:8]}"
    if not _is_remote(staging):
        remove_stale_staging(out)
        os.makedirs(staging)
        fd = os.open(os.path.join(staging, LOCK_NAME), os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.write(fd, f"pid {os.getpid()}\n".encode())
        _held_locks[staging] = fd
        for kind in kinds:
            os.makedirs(os.path.join(staging, kind), exist_ok=True)
    return staging


def release(staging: str, final: Optional[str] = None) -> None:
    """Drop this run's lock (and its file, from wherever the staging folder now is)."""
    fd = _held_locks.pop(staging, None)
    if final and not _is_remote(final):
        try:
            os.remove(os.path.join(final, LOCK_NAME))
        except OSError:
            pass
    if fd is not None:
        os.close(fd)


def finalise(staging: str, out: str) -> None:
    """Swap the staging directory into place; the old output (if any) is removed only after."""
    if _is_remote(out):
        from apache_beam.io.filesystems import FileSystems

        FileSystems.rename([staging], [out])
        return
    trash = None
    if os.path.exists(out):
        trash = f"{out.rstrip('/')}{OLD_INFIX}{uuid.uuid4().hex[:8]}"
        os.rename(out, trash)
    os.rename(staging, out)
    release(staging, out)
    if trash:
        shutil.rmtree(trash, ignore_errors=True)


def discard(staging: str) -> None:
    """A failed run: remove its staging folder, then drop the lock."""
    if not _is_remote(staging):
        shutil.rmtree(staging, ignore_errors=True)
    release(staging)
