"""Rerun mutmut's timed-out and unchecked mutants, each in a fresh pytest process.

mutmut 3 runs each mutant in a child forked from a process that has already imported
TensorFlow. There a mutant of a Keras layer can run until mutmut's timeout whatever it
changes, while in a fresh process the same tests end in about 10 s (all 185 layers
mutants that mutmut timed out or left unchecked did): killed, or surviving for what
it is. Run after `mutmut run` (`make mutate` calls it), in the repository root:

    python scripts/mutants_alone.py 'common.layers*' tests/common/test_layers.py
    python scripts/mutants_alone.py 'common.layers*' --report mutants_alone.tsv   # mutmut's test selection

Each mutant's tests run with `-x` (the first failure kills it) and no timeout but
--timeout seconds. Prints one line per mutant; writes --report (tab-separated: name,
killed / survived / timeout, seconds, first failing test) and lists the survivors
(`mutmut show NAME` for each one's diff). Exit status 1 if any survived.
"""

import argparse
import fnmatch
import os
import subprocess
import sys
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def mutants_to_rerun(pattern):
    """Names whose mutmut status is timeout or not checked, matching `pattern`."""
    out = subprocess.run([str(Path(sys.executable).parent / "mutmut"), "results", "--all", "true"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    names = []
    for line in out.splitlines():
        name, _, status = line.strip().rpartition(": ")
        if status in ("timeout", "not checked") and fnmatch.fnmatch(name, pattern):
            names.append(name)
    return names


def run_one(name, tests, timeout):
    env = dict(os.environ, MUTANT_UNDER_TEST=name)
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:randomly", "-p", "no:xdist", "-o", "addopts=",
               *tests]
    start = time.perf_counter()
    try:
        done = subprocess.run(command, cwd=ROOT / "mutants", env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "timeout", time.perf_counter() - start, ""
    failed = next((line for line in done.stdout.splitlines() if line.startswith(("FAILED", "ERROR"))), "")
    return ("survived" if done.returncode == 0 else "killed"), time.perf_counter() - start, failed[:200]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("pattern", help="mutant names, as `mutmut run` takes them (e.g. 'common.layers*')")
    parser.add_argument("tests", nargs="*", help="test files, relative to the repository root (default: "
                        "[tool.mutmut] pytest_add_cli_args_test_selection in pyproject.toml)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per mutant (%(default)s)")
    parser.add_argument("--report", default="mutants_alone.tsv", help="(%(default)s)")
    args = parser.parse_args(argv)
    if not (ROOT / "mutants").is_dir():
        sys.exit("no mutants/ folder: run `mutmut run` first")
    tests = args.tests or tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mutmut"][
        "pytest_add_cli_args_test_selection"]
    names = mutants_to_rerun(args.pattern)
    rows = []
    for i, name in enumerate(names, 1):
        status, seconds, failed = run_one(name, tests, args.timeout)
        rows.append((name, status, f"{seconds:.0f}", failed))
        print(f"[{i}/{len(names)}] {status:8s} {seconds:5.0f} s  {name}", flush=True)
    partial = Path(args.report).with_name(Path(args.report).name + ".partial")
    partial.write_text("".join("\t".join(row) + "\n" for row in rows))
    os.replace(partial, args.report)
    survivors = [row[0] for row in rows if row[1] != "killed"]
    print(f"{len(rows)} rerun: {len(rows) - len(survivors)} killed, {len(survivors)} survived or timed out; "
          f"report: {args.report}")
    for name in survivors:
        print(f"  {name}")
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
