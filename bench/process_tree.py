"""A command's wall time and the peak memory of its whole process tree.

The platform's footprint is spread over a driver, Ray's daemons and every Ray worker, so a
command's memory is summed over its process tree, sampled twice a second:

- resident set size (RSS): shared pages (Ray's object store, mapped model files) count
  once per process that maps them, which overstates physical memory;
- proportional set size (PSS): each shared page split among the processes that map it,
  the tree's real share of the machine's memory. Reading it costs tens of milliseconds of
  CPU per sample, so it is sampled every 5 s only (a peak between samples can be missed;
  steady training holds its memory).
"""

from __future__ import annotations

import itertools
import subprocess
import threading
import time
from pathlib import Path

import psutil

_PSS_EVERY = 10  # samples


def tree_rss(root: psutil.Process) -> int:
    total = 0
    for process in [root, *root.children(recursive=True)]:
        try:
            total += process.memory_info().rss
        except psutil.Error:  # a process that ended between listing and reading
            continue
    return total


def tree_pss(root: psutil.Process) -> int:
    total = 0
    for process in [root, *root.children(recursive=True)]:
        try:
            total += process.memory_full_info().pss
        except (psutil.Error, AttributeError):  # ended, or no PSS on this system
            continue
    return total


def measured(command: list[str], cwd: Path, timeout_s: float | None = None,
             env: dict[str, str] | None = None) -> dict:
    """Runs ``command``; returns its exit code, output, wall time and peak tree RSS / PSS."""
    started = time.perf_counter()
    child = subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, env=env)
    peak_rss, peak_pss, stop = 0, 0, threading.Event()

    def sample() -> None:
        nonlocal peak_rss, peak_pss
        root = psutil.Process(child.pid)
        for count in itertools.count():
            if stop.is_set():
                return
            try:
                peak_rss = max(peak_rss, tree_rss(root))
                if count % _PSS_EVERY == 0:
                    peak_pss = max(peak_pss, tree_pss(root))
            except psutil.Error:
                return
            stop.wait(0.5)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        output = child.communicate(timeout=timeout_s)[0]
    except subprocess.TimeoutExpired:
        child.kill()
        output = child.communicate()[0] + f"\n(killed after {timeout_s:.0f} s)"
    stop.set()
    sampler.join()
    return {"exit_code": child.returncode, "output": output,
            "wall_s": round(time.perf_counter() - started, 1),
            "peak_rss_gib": round(peak_rss / 2**30, 3),
            "peak_pss_gib": round(peak_pss / 2**30, 3)}
