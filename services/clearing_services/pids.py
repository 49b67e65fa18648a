"""Processes the project starts in sessions of their own (the local broker, the
embedded chain node): is one alive, is it ours, and stopping it.

Why shared: both are started detached, recorded in a pid file, and must be told
apart from an unrelated process that reused the pid.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

STOP_POLL_SECONDS = 0.1
KILL_POLL_SECONDS = 0.05


def alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is dead for our purposes
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def cmdline(pid: int) -> str:
    """The process's command line, '' when it cannot be read."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def recorded_pid(pid_file: Path, *marks: str) -> int | None:
    """The pid a pid file (JSON with "pid") names, if that process is alive and its
    command line holds every one of ``marks`` (so a reused pid is not taken for ours)."""
    try:
        pid = int(json.loads(pid_file.read_text())["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    line = cmdline(pid)
    return pid if alive(pid) and all(mark in line for mark in marks) else None


def signal_group(pid: int, signum: int) -> None:
    """Signal the process group of ``pid`` (it runs in a session of its own)."""
    try:
        os.killpg(pid, signum)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)


def running(pid: int, child: subprocess.Popen[bytes] | None) -> bool:
    """Alive, reaping the exit status when the process is our child (no zombie)."""
    if child is not None and child.pid == pid:
        return child.poll() is None
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    return alive(pid)


def terminate(pid: int, child: subprocess.Popen[bytes] | None, timeout_seconds: float) -> None:
    """SIGTERM to the group, then SIGKILL after ``timeout_seconds``; returns once gone."""
    signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_seconds
    while running(pid, child) and time.monotonic() < deadline:
        time.sleep(STOP_POLL_SECONDS)
    if running(pid, child):
        signal_group(pid, signal.SIGKILL)
        while running(pid, child):
            time.sleep(KILL_POLL_SECONDS)
