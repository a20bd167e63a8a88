"""Helpers shared by tests in more than one folder: subprocesses killed with SIGKILL."""
from __future__ import annotations

import os
import signal
import subprocess
from contextlib import contextmanager
from typing import Iterator


@contextmanager
def reaped(*procs: subprocess.Popen) -> Iterator[tuple[subprocess.Popen, ...]]:
    """Kill and wait for every process in ``procs`` that still runs when the block ends, pass or fail."""
    try:
        yield procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def sigkill(proc: subprocess.Popen, timeout: float) -> int:
    """Send ``proc`` SIGKILL and return its exit status once it has ended (``-signal.SIGKILL`` if the kill did it)."""
    os.kill(proc.pid, signal.SIGKILL)
    return proc.wait(timeout=timeout)
