"""Ordered parallel map over processes, for per-image CPU work (rendering, resizing).

`workers=1` runs in-process (no pickling, easy to debug). Above that, a spawn-context
process pool: safe after JAX or TensorFlow have started threads, which fork is not.
Results come back in input order, so callers can stream them into a memory map.
"""

import concurrent.futures
import multiprocessing
import os

from tqdm import tqdm


def default_workers():
    """All cores the process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def parallel_map(fn, items, workers=1, desc=None, unit="img", progress=True):
    """Yield fn(item) for each item, in order. fn must be a module-level function."""
    items = list(items)
    bar = tqdm(total=len(items), desc=desc, unit=unit, disable=not progress)
    try:
        if workers <= 1 or len(items) <= 1:
            for item in items:
                yield fn(item)
                bar.update(1)
            return
        context = multiprocessing.get_context("spawn")
        chunksize = max(1, min(16, len(items) // (4 * workers)))
        with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
            for result in pool.map(fn, items, chunksize=chunksize):
                yield result
                bar.update(1)
    finally:
        bar.close()
