"""Whether this thread is inside a garbage collection, so possibly running a finalizer."""

from __future__ import annotations

import gc
import threading


class _GarbageCollection(threading.local):
    """Whether this thread is inside a garbage collection, so possibly inside a finalizer.

    A ``close()`` cannot tell whether its caller is the application or a finalizer (the 0.x
    SDK closes the response in its stream generator's ``finally``, which the collector runs);
    this tells it. Kept by a ``gc.callbacks`` hook, per thread: the collector runs finalizers
    in the thread that triggered it.
    """

    active = False


in_gc = _GarbageCollection()


def _note_gc(phase: str, info: dict[str, int], state: _GarbageCollection = in_gc) -> None:
    # (state bound as a default: callbacks can still run while module globals are torn down)
    state.active = phase == "start"


_install_lock = threading.Lock()
_installed = False


def install() -> None:
    """Start keeping ``in_gc`` (once per process; the first Recorder calls it): a hook in
    ``gc.callbacks``, so none is set merely by importing the package."""
    global _installed
    if _installed:
        return
    with _install_lock:
        if not _installed:
            gc.callbacks.append(_note_gc)
            _installed = True
