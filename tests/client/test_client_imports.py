"""Importing the package installs nothing: the client's process hooks come with first use."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

# Run in a fresh interpreter: the test process has imported (and used) everything already.
_IMPORT_EVERYTHING = r"""
import atexit, gc, importlib, os, pkgutil, sys, tempfile, threading

at_fork, at_exit = [], []
register_at_fork, register_at_exit = os.register_at_fork, atexit.register

def record_at_fork(**hooks):
    at_fork.append(hooks)
    register_at_fork(**hooks)

def record_at_exit(hook, *args, **kwargs):
    at_exit.append(hook)
    return register_at_exit(hook, *args, **kwargs)

os.register_at_fork, atexit.register = record_at_fork, record_at_exit
callbacks = list(gc.callbacks)

import exporter

names = [info.name for info in pkgutil.walk_packages(exporter.__path__, "exporter.")]
for name in names:
    if name.rpartition(".")[2] != "__main__":  # (that one runs the command line)
        importlib.import_module(name)
assert {"exporter.cli", "exporter.client.log_cli", "exporter.client.recorder", "exporter.client.gc_guard",
        "exporter.client.request_log"} <= set(names), names

def ours(hook):
    return (getattr(hook, "__module__", None) or "").startswith("exporter")

# The standard library may register its own at-fork hooks on import (random, logging): not ours.
assert gc.callbacks == callbacks, gc.callbacks
assert [h for h in at_fork if any(map(ours, h.values()))] == [], at_fork
assert [h for h in at_exit if ours(h)] == [], at_exit

from prometheus_client import CollectorRegistry
from exporter.client import Recorder, RequestLog

directory = tempfile.mkdtemp()
together = threading.Barrier(8)

def use(i, wait=False):
    if wait:  # all first uses at once: the hooks are still installed once
        together.wait()
    Recorder(CollectorRegistry())
    RequestLog(os.path.join(directory, f"{i}.sqlite3"))

threads = [threading.Thread(target=use, args=(i, True)) for i in range(8)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
use(8)  # and a later use adds none

added = [c for c in gc.callbacks if c not in callbacks]
assert len(added) == 1 and ours(added[0]), gc.callbacks
assert len([h for h in at_fork if any(map(ours, h.values()))]) == 1, at_fork
assert len([h for h in at_exit if ours(h)]) == 1, at_exit
print("ok", len(names))
"""


def test_importing_installs_no_hooks_and_first_use_installs_them_once() -> None:
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", _IMPORT_EVERYTHING], cwd=root, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ok ")
