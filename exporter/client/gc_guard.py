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


gc.callbacks.append(_note_gc)
