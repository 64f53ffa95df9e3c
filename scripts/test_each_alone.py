"""Run every collected test on its own, `pytest <node id>` in a fresh process, so that a
test leaning on another (a file, a model or a module state left by an earlier test) fails
here even where the whole suite passes.

Slow: each node pays the imports and its fixtures again. `--jobs 2` runs two test files at
once; the nodes of one file always run one after another, as they may share fixed paths.
`--fork` is the fast equivalent: one pytest session collects once and runs each test in a
child forked from that state (scripts/fork_each_test.py), so no fixture, file or module
state of another test exists, but the imports are paid once.

    python scripts/test_each_alone.py tests/common/test_metrics.py tests/stage2
    python scripts/test_each_alone.py --jobs 2 --report bench/results/test_alone/report.txt
    python scripts/test_each_alone.py --fork --jobs 2

Prints one line per node and, at the end, the nodes that failed or skipped (a node that
skips alone but runs in the suite leans on another). Exit status 1 if any failed.
"""

import argparse
import os
import subprocess
import sys
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# No random order, no xdist: each node alone, as a developer runs it.
PYTEST = [sys.executable, "-m", "pytest", "-o", "addopts=", "-p", "no:randomly", "-p", "no:cacheprovider", "-q"]


def collect(paths):
    out = subprocess.run(PYTEST + ["--collect-only", *paths], cwd=ROOT, capture_output=True, text=True)
    nodes = [line for line in out.stdout.splitlines() if "::" in line]
    if not nodes:
        sys.exit(f"no tests collected in {' '.join(paths)}:\n{out.stdout[-2000:]}{out.stderr[-2000:]}")
    return nodes


def run_node(node):
    start = time.monotonic()
    out = subprocess.run(PYTEST + ["-x", node], cwd=ROOT, capture_output=True, text=True)
    seconds = time.monotonic() - start
    log = out.stdout + out.stderr
    if out.returncode != 0:
        return "FAIL", seconds, log
    # "1 passed" alone; "1 skipped" (or "1 passed, 1 skipped") is listed: it may lean on another.
    return ("skip" if " skipped" in log else "ok"), seconds, log


def run_file(nodes, lines):
    results = []
    for node in nodes:
        status, seconds, log = run_node(node)
        line = f"{status:4}  {seconds:5.1f}s  {node}"
        if status == "FAIL":
            line += "\n" + "\n".join("      " + s for s in log.splitlines()[-20:])
        print(line, flush=True)
        lines.append(line)
        results.append((status, node))
    return results


def run_forked(args):
    """pytest's own report (-rfs: the failed and skipped tests listed); --report gets it too."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT / "scripts"),
                                                                     os.environ.get("PYTHONPATH")])))
    jobs = ["-n", str(args.jobs), "--dist", "loadfile"] if args.jobs > 1 else ["-p", "no:xdist"]
    command = PYTEST[:-1] + ["-p", "fork_each_test", "-rfs", "--durations=10", *jobs, *args.paths]
    out = subprocess.run(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    print(out.stdout)
    if args.report:
        Path(args.report).parent.mkdir(parents=True, exist_ok=True)
        Path(args.report).write_text(f"$ {' '.join(command[1:])}\n" + out.stdout)
    return out.returncode


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("paths", nargs="*", default=["tests"], help="test files or folders (tests)")
    parser.add_argument("--jobs", type=int, default=1, help="test files run at once (%(default)s)")
    parser.add_argument("--report", help="also write the lines and the summary to this file")
    parser.add_argument("--fork", action="store_true", help="one pytest session, each test in a forked child")
    args = parser.parse_args(argv)
    if args.fork:
        return run_forked(args)

    by_file = defaultdict(list)
    for node in collect(args.paths):
        by_file[node.split("::")[0]].append(node)
    lines = []
    start = time.monotonic()
    with ThreadPoolExecutor(max(1, args.jobs)) as pool:
        results = [r for rs in pool.map(lambda nodes: run_file(nodes, lines), by_file.values()) for r in rs]
    failed = [node for status, node in results if status == "FAIL"]
    skipped = [node for status, node in results if status == "skip"]
    summary = [f"{len(results)} tests run alone in {time.monotonic() - start:.0f} s ({args.jobs} at once), "
               f"{len(failed)} failed, {len(skipped)} skipped"]
    summary += [f"skipped alone: {node}" for node in skipped] + [f"failed alone: {node}" for node in failed]
    print("\n".join(summary))
    if args.report:
        Path(args.report).parent.mkdir(parents=True, exist_ok=True)
        Path(args.report).write_text("\n".join(sorted(lines) + [""] + summary) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
