"""Fuzz every reader of the package with mutated inputs and count what happens.

    nice -n 10 python bench/fuzz.py                       # 1,000 inputs per reader
    python bench/fuzz.py --examples 50 --readers "DOTA labels" "mesh.obj"

The inputs come from the strategies of tests/fuzz_strategies.py (the property tests in
tests/test_fuzz_readers.py draw from the same ones, fewer of them): a valid tiny fixture
per reader (stage-2 labels, camera, mesh, configs, `--set`, COCO detections and keypoints,
the keypoint list format, DOTA, ISBI, SPEED poses, images of every mode) with its fields,
types, tokens and bytes mutated. Hypothesis draws them from a fixed seed, so a run is
reproducible; nothing is shrunk, every input is counted once.

Prints one row per reader: examples, the package's error (a DataError naming the file),
correct results (a result that passes the reader's checks), and the failures: other
exceptions (RuntimeWarnings included), DataErrors naming no file, wrong results. The bar
is zero failures. Writes bench/results/fuzz/result.json (`results_io.write_result`) with
the first few failing inputs of each kind.
"""

import argparse
import collections
import sys
import time
from pathlib import Path

from results_io import write_result  # bench/ is on the path when run as a script

REPO = Path(__file__).resolve().parents[1]
FAILURES = ("other", "unnamed", "wrong")


def fuzz_reader(target, examples, seed, keep=5):
    """Run `examples` drawn inputs through one reader: (counts by kind, a few failing examples)."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hypothesis_seed

    from tests.fuzz_strategies import outcome, strategy

    counts, failures = collections.Counter(), []

    @hypothesis_seed(seed)  # the same inputs every run
    @settings(max_examples=examples, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(strategy(target))
    def run(drawn):
        kind, detail = outcome(target, drawn)
        counts[kind] += 1
        if kind in FAILURES and len(failures) < keep:
            failures.append({"kind": kind, "detail": detail[:300], "input": repr(drawn)[:300]})

    run()
    return counts, failures


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=1000, help="inputs per reader (%(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="hypothesis seed (%(default)s)")
    parser.add_argument("--readers", nargs="*", help="reader names (default: all)")
    parser.add_argument("--output-dir", default=str(REPO / "bench" / "results" / "fuzz"),
                        help="folder for result.json (%(default)s)")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO))  # tests.fuzz_strategies
    from tests.fuzz_strategies import TARGETS

    names = args.readers or list(TARGETS)
    unknown = sorted(set(names) - set(TARGETS))
    if unknown:
        parser.error(f"unknown reader(s) {unknown}; known: {list(TARGETS)}")
    rows, start = [], time.perf_counter()
    header = f"{'reader':32s} {'examples':>8s} {'pkg errors':>10s} {'correct':>8s} {'other exc':>9s} " \
             f"{'unnamed':>7s} {'wrong':>5s} {'s':>6s}"
    print(header)
    for name in names:
        began = time.perf_counter()
        counts, failures = fuzz_reader(TARGETS[name], args.examples, args.seed)
        row = {"reader": name, "examples": sum(counts.values()), "package_errors": counts["error"],
               "correct_results": counts["correct"], "other_exceptions": counts["other"],
               "errors_naming_no_file": counts["unnamed"], "wrong_results": counts["wrong"],
               "seconds": round(time.perf_counter() - began, 1), "failures": failures}
        rows.append(row)
        print(f"{name:32s} {row['examples']:8d} {row['package_errors']:10d} {row['correct_results']:8d} "
              f"{row['other_exceptions']:9d} {row['errors_naming_no_file']:7d} {row['wrong_results']:5d} "
              f"{row['seconds']:6.1f}", flush=True)
        for failure in failures[:2]:
            print(f"    {failure['kind']}: {failure['detail'][:150]}")
    failed = sum(row[key] for row in rows for key in ("other_exceptions", "errors_naming_no_file", "wrong_results"))
    total = sum(row["examples"] for row in rows)
    print(f"{total} inputs, {failed} failures (bar: 0), {time.perf_counter() - start:.0f} s")
    path = write_result(Path(args.output_dir) / "result.json",
                        {"readers": rows, "inputs": total, "failures": failed, "bar": "failures == 0"},
                        args=args, argv=argv)
    print(f"wrote {path}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
