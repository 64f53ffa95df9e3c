"""The whole study in one command: heatmap vs regression vs SoftArgMax, ablations, losses.

    python baselines/run_study.py --config configs/baselines.yaml            # the documented setting
    python baselines/run_study.py --config configs/baselines.yaml --quick    # the same, small (minutes)

Renders the stick figures, caches them, trains every arm and writes into
study.output_dir (default results/): comparison.json, ablation.json, loss_study.json,
study.json (timings), pck_curve.png, failure_gallery.png, heatmaps_epochs.png,
ablation.png, loss_study.png, and runs/ (one folder per trained arm). A killed study
resumes: finished arms are reused. --set study.parts=[comparison] runs one part.
"""

import argparse
import json

from common import cli
from baselines.config import BaselinesConfig

# --quick: every part and arm, with fewer images, epochs and seeds (applied before --set).
QUICK = ("study.train_images=400", "study.test_images=100", "study.comparison_epochs=2",
         "study.ablation_epochs=1", "study.ablation_seeds=[0]", "study.loss_epochs=1", "study.loss_seeds=[0]",
         "study.sigmas=[1,2,4]", "study.loss_arms=[mse,focal,mse_peak,wing,mse+augment+clipnorm]")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_config_arguments(parser)
    parser.add_argument("--quick", action="store_true", help="small setting: " + " ".join(QUICK))
    parser.add_argument("--output-dir", help="study.output_dir")
    args = parser.parse_args(argv)
    from baselines.study import run_study  # after parsing: --help needs no Keras
    if args.output_dir:
        args.set.insert(0, f"study.output_dir={json.dumps(args.output_dir)}")
    if args.quick:
        args.set[:0] = list(QUICK)
    cfg = cli.config_from_args(BaselinesConfig, args)
    summary, results = run_study(cfg)
    for part, result in results.items():
        if part == "comparison":
            for kind, record in result["models"].items():
                print(f"{kind:10s} PCK " + json.dumps(record["test"]["pck"]) +
                      f" mean error {record['test']['mean_error_px']:.2f} px")
    print(f"study: {summary['seconds']} s ({summary['part_seconds']}), tables and plots in {summary['output_dir']}")


if __name__ == "__main__":
    raise SystemExit(cli.run(main))
