"""Worker processes for the CPU work beside an event loop (HTML parsing, image work).

On Linux the workers are forked, so they start at once with every module this process has
imported (a spawned worker would import Beam and the rest again, seconds per worker), unless
this process has loaded a library that does not survive a fork (TensorFlow's thread pools:
its forked children can die at random); then, and on other systems, they come from a fork
server, which imports what they need once. Either way they log the way this process does, so their
progress lines reach the same place (a terminal, a kfp task's log).
"""

from __future__ import annotations

import gc
import logging
import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor

log = logging.getLogger("alignpipe")
FORK_UNSAFE_MODULES = ("tensorflow", "jax", "torch")


def process_pool(workers: int = 0) -> ProcessPoolExecutor:
    """A pool of `workers` processes (0: one per core)."""
    fork_safe = sys.platform == "linux" and not any(m in sys.modules for m in FORK_UNSAFE_MODULES)
    context = multiprocessing.get_context("fork" if fork_safe else "forkserver")
    root = logging.getLogger()
    formatter = root.handlers[0].formatter if root.handlers else None
    fmt = formatter._fmt if formatter is not None else None
    pool = ProcessPoolExecutor(
        workers or os.cpu_count() or 1,
        mp_context=context,
        initializer=_log_like_parent,
        initargs=(log.getEffectiveLevel(), fmt),
    )
    if fork_safe:
        # Start the workers now, with the collector's bookkeeping of every object made
        # permanent: a collection in a child would otherwise write to (and so copy) nearly
        # every page it shares with this process.
        gc.freeze()
        pool.submit(int).result()
        gc.unfreeze()
    return pool


def _log_like_parent(level: int, fmt: str | None) -> None:
    root = logging.getLogger()
    if not root.handlers:  # spawned: nothing configured yet
        logging.basicConfig(level=level, format=fmt or logging.BASIC_FORMAT)
    log.setLevel(level)
