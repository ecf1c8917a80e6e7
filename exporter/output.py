"""Writing a command's output to a reader that may go away."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import IO, Any


def write_output(out: IO[str], write: Callable[[IO[str]], Any]) -> None:
    """``write(out)`` and flush; a reader that went away (``| head``) stops it quietly."""
    try:
        write(out)
        out.flush()
    except BrokenPipeError:
        # Keep Python from complaining at exit, when it flushes stdout once more.
        if out is sys.stdout:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
