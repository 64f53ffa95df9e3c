"""scripts/fork_each_test.py: a test leaning on another fails in its forked child, as alone."""

import os
import subprocess
import sys
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"

LEANING = '''
import os
import pytest

STATE = []


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    return tmp_path_factory.mktemp("shared")


def test_writes(shared):
    STATE.append(1)
    (shared / "made").write_text("x")


def test_needs_module_state():
    assert STATE == [1]


def test_needs_file_of_earlier_test(shared):
    assert (shared / "made").exists()


def test_process_dies():
    os._exit(3)


def test_skips():
    pytest.skip("skipped on purpose")
'''


def run_pytest(folder, *plugin):
    env = dict(os.environ, PYTHONPATH=str(SCRIPTS))
    command = [sys.executable, "-m", "pytest", "-o", "addopts=", "-p", "no:randomly", "-p", "no:cacheprovider",
               "-p", "no:xdist", "-q", "-rfs", *plugin, "test_leaning.py"]
    return subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True).stdout


def test_forked_children_see_no_state_of_earlier_tests(tmp_path):
    (tmp_path / "test_leaning.py").write_text(LEANING)
    together = run_pytest(tmp_path, "-k", "not dies")  # a dying test would end the whole session
    assert "3 passed, 1 skipped, 1 deselected" in together, together
    alone = run_pytest(tmp_path, "-p", "fork_each_test")
    assert "3 failed, 1 passed, 1 skipped" in alone, alone
    assert "FAILED test_leaning.py::test_needs_module_state" in alone
    assert "FAILED test_leaning.py::test_needs_file_of_earlier_test" in alone
    assert "FAILED test_leaning.py::test_process_dies - the test's process died" in alone
    assert "SKIPPED" in alone and "skipped on purpose" in alone
