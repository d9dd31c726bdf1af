"""Beam's graph-time introspection, computed once per object while a scan builds and runs its pipeline.

Why: building and starting lazaret's scan graph (~300 transforms) calls ``PipelineOptions.view_as`` ~1,250
times and ``userstate.get_dofn_specs`` ~1,070 times (Beam 2.77). Each ``view_as`` builds an argparse parser
for the options class and parses the flags again; each ``get_dofn_specs`` runs ``inspect.signature`` on every
method of the DoFn (~35,000 signatures in all). On a 50-record ``--checks dedup`` scan that was 0.39 + 0.38
CPU-s of a 2.5 CPU-s process (timed inside the two functions, ``taskset -c 0``), paid again by every scan
whatever its size. Both answers are fixed for a given object:

- a view's values live in the options' shared ``_all_options`` dict (Beam: "modifications of values in any
  view-object will apply to current object and other view-objects"), and its parsed flags depend only on
  the options' flags and the view's class, so one view per (options object, class) answers as a new one
  would; nothing is stored on the options object itself (it is pickled with the pipeline).
- a DoFn's state and timer specs are the defaults of its methods' parameters, set when its class is defined.

Both caches hold their keys weakly (a DoFn or options object that is gone leaves nothing behind), are used
only inside :func:`cached`, and only on ``lazaret.runners.spill.PINNED_BEAM``; anywhere else Beam runs as
it ships. ``lazaret scan`` wraps its graph construction and run in :func:`cached`.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from typing import Any, Iterator, List, Tuple

_lock = threading.Lock()
_active = [0]  # nesting depth of cached()


def _view_as(original: Any) -> Any:
    views: "weakref.WeakKeyDictionary[Any, dict]" = weakref.WeakKeyDictionary()

    def view_as(self: Any, cls: type) -> Any:
        try:
            per_class = views.get(self)
            if per_class is None:
                per_class = views.setdefault(self, {})
        except TypeError:  # an options subclass that cannot be weakly referenced or hashed: no cache
            return original(self, cls)
        view = per_class.get(cls)
        if view is None or view._flags is not self._flags or view._all_options is not self._all_options:
            view = per_class[cls] = original(self, cls)
        return view

    view_as.__wrapped__ = original  # type: ignore[attr-defined]
    return view_as


def _get_dofn_specs(original: Any) -> Any:
    specs: "weakref.WeakKeyDictionary[Any, Any]" = weakref.WeakKeyDictionary()

    def get_dofn_specs(dofn: Any) -> Any:
        try:
            found = specs.get(dofn)
        except TypeError:  # unhashable or not weakly referenceable DoFn: no cache
            return original(dofn)
        if found is None:
            found = original(dofn)
            try:
                specs[dofn] = found
            except TypeError:
                pass
        return found

    get_dofn_specs.__wrapped__ = original  # type: ignore[attr-defined]
    return get_dofn_specs


def _targets() -> List[Tuple[Any, str, Any]]:
    """(owner, name, replacement maker) of every symbol replaced here."""
    from apache_beam.options import pipeline_options
    from apache_beam.transforms import userstate

    return [(pipeline_options.PipelineOptions, "view_as", _view_as),
            (userstate, "get_dofn_specs", _get_dofn_specs)]


@contextlib.contextmanager
def cached() -> Iterator[bool]:
    """Beam's ``view_as`` and ``get_dofn_specs`` memoised per object for the ``with`` block (yields whether
    they are); Beam's own functions are put back after it, whatever happens inside."""
    from lazaret.runners import spill

    if spill._beam_version() != spill.PINNED_BEAM:
        yield False
        return
    with _lock:
        _active[0] += 1
        saved = []
        if _active[0] == 1:
            for owner, name, make in _targets():
                original = owner.__dict__[name]
                saved.append((owner, name, original))
                setattr(owner, name, make(original))
    try:
        yield True
    finally:
        with _lock:
            for owner, name, original in saved:
                setattr(owner, name, original)
            _active[0] -= 1
