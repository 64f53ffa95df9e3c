"""The process pool: order, errors returned for --skip-bad, and workers that die with their parent."""

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from common.errors import DataError
from common.parallel import beside_the_model, parallel_map, prefetch_batches


def _check(item):
    if item == 2:
        raise DataError("cannot read image", f"img{item}.png")
    return item * 10


def test_errors_come_back_in_place_when_asked():
    results = list(parallel_map(_check, range(4), 2, progress=False, errors="return"))
    assert results[:2] == [0, 10] and results[3] == 30
    assert isinstance(results[2], DataError) and str(results[2]) == "img2.png: cannot read image"
    assert (results[2].path, results[2].message) == ("img2.png", "cannot read image")  # apart, for skipped.tsv
    with pytest.raises(DataError, match="img2.png"):
        list(parallel_map(_check, range(4), 1, progress=False))


def living_in_group(pgid):
    """The processes of group `pgid` that are alive (zombies are dead: they only wait to be reaped)."""
    alive = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2:].split()  # after "pid (name) ": state, ppid, pgrp
            if int(fields[2]) == pgid and fields[0] != "Z":
                alive.append(int(entry.name))
    return alive


def wait_until_gone(pgid, seconds=15):
    end = time.monotonic() + seconds
    while living_in_group(pgid) and time.monotonic() < end:
        time.sleep(0.1)
    return living_in_group(pgid)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_workers_and_the_resource_tracker_die_with_a_killed_parent():
    code = ("import sys, time\nfrom common.parallel import parallel_map\n"
            "for i, _ in enumerate(parallel_map(time.sleep, [0.05] * 10000, 2, progress=False)):\n"
            "    if i == 3:\n        print('started', flush=True)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, start_new_session=True,
                            env={**os.environ, "PYTHONPATH": os.getcwd()})
    try:
        assert proc.stdout.readline().strip() == "started"
        assert len(living_in_group(proc.pid)) >= 3  # the parent, 2 workers (and the resource tracker)
        proc.kill()
        proc.wait()
        assert wait_until_gone(proc.pid) == []  # before the fix: the workers and the tracker, for good
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _priority():
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a nice value per thread is Linux's")
def test_beside_the_model_lowers_its_own_thread_only():
    """The decoding threads yield to the model's; the model's thread keeps its priority."""
    before, seen = _priority(), {}

    def work(niceness):
        beside_the_model(niceness)
        seen[niceness] = _priority()

    for niceness in (3, 40):
        thread = threading.Thread(target=work, args=(niceness,))
        thread.start()
        thread.join()
    assert seen == {3: min(19, before + 3), 40: 19}  # capped at the lowest priority
    assert _priority() == before


_started = []


def _decode(i):
    _started.append(i)
    time.sleep(0.01 * (2 - i % 3))  # the first of a batch ends last
    if i == 5:
        raise DataError("cannot read image", f"img{i}.png")
    return i * 10, _priority()


def test_prefetch_batches_in_order_ahead_and_yielding_to_the_model():
    """use_vis.py and pose_vis.py decode the next frames in threads: batches in order, at most
    `ahead` of them decoded before they are taken, errors in place, priority lowered."""
    _started.clear()
    batches = prefetch_batches(_decode, range(7), 3, workers=2, ahead=2, errors="return")
    first = next(batches)
    assert [r[0] for r in first] == [0, 10, 20] and len(_started) <= 6
    rest = list(batches)
    assert [len(b) for b in rest] == [3, 1]
    assert [r[0] for r in rest[0][:2]] == [30, 40] and rest[1][0][0] == 60
    assert isinstance(rest[0][2], DataError) and str(rest[0][2]) == "img5.png: cannot read image"
    if sys.platform.startswith("linux"):
        assert {r[1] for r in first} == {min(19, _priority() + 10)}
        same = next(prefetch_batches(_decode, range(3), 3, niceness=0))
        assert {r[1] for r in same} == {_priority()}
    with pytest.raises(DataError, match="img5.png"):
        list(prefetch_batches(_decode, range(7), 3, workers=2))
    # Stopped after the first batch (the model failed): the batch queued behind it is cancelled.
    _started.clear()
    batches = prefetch_batches(_decode, range(30), 3, workers=1, ahead=2)
    next(batches)
    batches.close()
    assert 3 <= len(_started) <= 4
