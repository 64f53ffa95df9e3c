"""Score predicted poses against labels with the SPEED challenge's metric.

    python stage2_visible_keypoints/score_poses.py --pred runs/demo/predictions/poses.json \\
        --labels runs/demo/renders/test.json

Both files are JSON lists in the SPEED label layout (`filename`, `q_vbs2tango`,
`r_Vo2To_vbs_true`): `use_vis.py` writes its `poses.json` so, and the files of another
pose pipeline can be scored the same way. Records are matched by file name. A labelled
image with no predicted pose counts as unsolved (it lowers `solved_fraction`; the
errors are over the solved ones); predictions for unlabelled images are counted and
left out. Prints the errors and writes them to --out as JSON.
"""

import argparse
from pathlib import Path

import numpy as np

from common import cli
from common.data_io import save_json
from common.errors import DataError
from common.pose import pose_error_summary
from stage2_visible_keypoints.data import read_poses


def score_poses(pred_path, label_path):
    """`common.pose.pose_error_summary` of the predictions in `pred_path` against `label_path`."""
    predicted, labels = read_poses(pred_path), read_poses(label_path)
    if not labels:
        raise DataError("no labelled images", label_path)
    names = sorted(labels)
    if predicted and not set(predicted) & set(labels):
        raise DataError(f"no predicted file name is in the labels ({label_path})", pred_path)
    missing = (np.full(4, np.nan), np.full(3, np.nan))
    q_pred, r_pred = (np.stack(part) for part in zip(*(predicted.get(n, missing) for n in names)))
    q_true, r_true = (np.stack(part) for part in zip(*(labels[n] for n in names)))
    summary = pose_error_summary(q_pred, r_pred, q_true, r_true)
    summary["predicted_not_labelled"] = len(set(predicted) - set(labels))
    summary["files"] = {"pred": str(pred_path), "labels": str(label_path)}
    return summary


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pred", required=True, help="predicted poses (use_vis.py's poses.json)")
    parser.add_argument("--labels", required=True, help="label file ({split}.json of the data folder)")
    parser.add_argument("--out", help="JSON output (default: pose_scores.json beside --pred)")
    args = parser.parse_args(argv)
    summary = score_poses(args.pred, args.labels)
    print(f"{summary['solved']} of {summary['images']} labelled images have a pose"
          + (f" ({summary['predicted_not_labelled']} predicted images are not labelled)"
             if summary["predicted_not_labelled"] else ""))
    if summary["solved"]:
        print(f"{'':18s}{'mean':>10s}{'median':>10s}{'p95':>10s}")
        for key, label in (("rotation_deg", "rotation, deg"), ("translation_m", "translation, m"),
                           ("translation_rel", "translation / dist"), ("speed_score", "SPEED score")):
            stats = summary[key]
            print(f"{label:18s}" + "".join(f"{stats[s]:10.4f}" for s in ("mean", "median", "p95")))
    out = args.out or str(Path(args.pred).with_name("pose_scores.json"))
    save_json(out, summary)
    print(f"written: {out}")


if __name__ == "__main__":
    raise SystemExit(cli.run(main))
