"""Ordered parallel map over processes, for per-image CPU work (rendering, resizing), and
batches prefetched in threads beside a model (`prefetch_batches`).

`workers=1` runs in-process (no pickling, easy to debug). Above that, a spawn-context
process pool: safe after JAX or TensorFlow have started threads, which fork is not.
Results come back in input order, so callers can stream them into a memory map.
"""

import collections
import concurrent.futures
import multiprocessing
import os
import signal
import sys
import threading
import time

from tqdm import tqdm

from common.errors import DataError


def default_workers():
    """All cores the process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def beside_the_model(niceness=10):
    """Lower the calling thread's CPU priority by `niceness` (capped at 19), for work done
    in threads beside a model's call, such as decoding the next batch.

    A model runtime splits each operator over all cores and waits for the slowest part.
    A decoding thread at the same priority takes a core halfway through an operator and
    leaves the other core waiting; at a lower one it runs in the gaps between operators
    and calls. Linux keeps a nice value per thread; elsewhere, or where the system
    refuses, nothing changes.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        thread = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, thread, min(19, os.getpriority(os.PRIO_PROCESS, thread) + niceness))
    except OSError:
        pass


def parallel_map(fn, items, workers=1, desc=None, unit="img", progress=True, errors="raise"):
    """Yield fn(item) for each item, in order. fn must be a module-level function.

    errors="return": a `DataError` that fn raises for an item is yielded in its place
    instead of ending the map (`--skip-bad`)."""
    items = list(items)
    if errors == "return":
        fn, items = _returning_errors, [(fn, item) for item in items]
    bar = tqdm(total=len(items), desc=desc, unit=unit, disable=not progress)
    try:
        if workers <= 1 or len(items) <= 1:
            for item in items:
                yield fn(item)
                bar.update(1)
            return
        context = multiprocessing.get_context("spawn")
        chunksize = max(1, min(16, len(items) // (4 * workers)))
        pool = concurrent.futures.ProcessPoolExecutor(workers, mp_context=context, initializer=_die_with_parent,
                                                      initargs=(os.getpid(),))
        try:
            for result in pool.map(fn, items, chunksize=chunksize):
                yield result
                bar.update(1)
        finally:  # an error (a bad image) or a closed generator: do not wait for the queued items
            pool.shutdown(wait=True, cancel_futures=True)
    finally:
        bar.close()


def prefetch_batches(fn, items, batch_size, workers=None, ahead=2, errors="raise", niceness=10):
    """Yield [fn(item) for item in batch] for consecutive batches of `items`, computed in
    threads up to `ahead` batches before the caller takes them: the next frames decode
    while a model runs on these. fn should spend its time where the GIL is released
    (Pillow's decoding and resampling do); the threads yield to the caller's by
    `niceness` (`beside_the_model`; 0: the caller's priority), and at most `ahead`
    batches wait in memory.

    errors="return": a `DataError` that fn raises is yielded in its item's place
    (`--skip-bad`). An iteration stopped early (an error in the model) starts no more work.
    """
    items = list(items)
    if errors == "return":
        fn, items = _returning_errors, [(fn, item) for item in items]
    chunks = [items[i:i + batch_size] for i in range(0, len(items), batch_size)]
    with concurrent.futures.ThreadPoolExecutor(workers or default_workers(), initializer=beside_the_model,
                                               initargs=(niceness,)) as pool:
        pending = collections.deque()
        try:
            for k in range(len(chunks)):
                while len(pending) < ahead and k + len(pending) < len(chunks):
                    pending.append([pool.submit(fn, item) for item in chunks[k + len(pending)]])
                yield [future.result() for future in pending.popleft()]
        finally:
            for futures in pending:
                for future in futures:
                    future.cancel()


def _returning_errors(job):
    fn, item = job
    try:
        return fn(item)
    except DataError as err:
        return err


def _die_with_parent(parent):
    """Worker initializer: end this worker when the process that started the pool dies.

    A pool's workers wait on a queue whose write end they hold themselves, so a parent
    killed by SIGKILL (or the OOM killer) never tells them to stop: they, and through
    them multiprocessing's resource tracker, would run for good. On Linux the kernel
    sends SIGKILL at once (prctl PR_SET_PDEATHSIG); elsewhere a daemon thread checks
    every second whether the worker was re-parented. The second check after prctl
    covers a parent that died before it took effect.
    """
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            pr_set_pdeathsig = 1
            if libc.prctl(pr_set_pdeathsig, int(signal.SIGKILL), 0, 0, 0) == 0:
                if os.getppid() != parent:
                    os._exit(1)
                return
        except (OSError, AttributeError):
            pass  # no usable libc: the thread below
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True, name="die-with-parent").start()


def _watch_parent(parent):
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)
