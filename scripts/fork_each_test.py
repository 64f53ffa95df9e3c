"""pytest plugin: run each test in a child process forked after collection.

`scripts/test_each_alone.py --fork` loads it (`-p fork_each_test`). Every child starts from
the state right after collection: no fixture has run, no earlier test has left a file, a
model or a module state behind, and each child sets up (and tears down) every fixture it
uses itself. So a test leaning on another fails as it would run alone, without paying the
imports again for every test. What the children share is the test modules' import-time
state, which a fresh `pytest <node id>` would rebuild the same way.
Linux/macOS only (os.fork). TensorFlow and JAX are imported by collection but not started:
forking before either runs an op is safe.
"""

import json
import os

import pytest
from _pytest.runner import runtestprotocol  # what pytest-xdist and pytest-rerunfailures call too


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item, nextitem):
    hook, config = item.ihook, item.config
    hook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: this test alone, every fixture torn down at the end (nextitem=None)
        os.close(read)
        try:
            reports = runtestprotocol(item, log=False, nextitem=None)
            payload = [config.hook.pytest_report_to_serializable(config=config, report=r) for r in reports]
            data = json.dumps(payload).encode()
        except BaseException as err:  # noqa: BLE001 - anything the child hits is the test's failure
            data = json.dumps({"error": repr(err)}).encode()
        with os.fdopen(write, "wb") as out:
            out.write(data)
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as inp:
        data = inp.read()
    _, status = os.waitpid(pid, 0)
    try:
        payload = json.loads(data)
    except ValueError:
        payload = {"error": f"the test's process died (wait status {status}) before reporting"}
    if isinstance(payload, dict):
        reports = [pytest.TestReport(item.nodeid, item.location, {}, "failed", payload["error"], "call")]
    else:
        reports = [config.hook.pytest_report_from_serializable(config=config, data=d) for d in payload]
        for report in reports:  # JSON turns a skip's (path, line, reason) tuple into a list
            if isinstance(report.longrepr, list):
                report.longrepr = tuple(report.longrepr)
    for report in reports:
        hook.pytest_runtest_logreport(report=report)
    hook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
    return True
