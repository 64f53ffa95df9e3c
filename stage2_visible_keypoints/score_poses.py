"""Score predicted poses against labels with the SPEED challenge's metric.

    python stage2_visible_keypoints/score_poses.py --pred runs/demo/predictions/poses.json \\
        --labels runs/demo/renders/test.json

Both files are JSON lists in the SPEED label layout (`filename`, `q_vbs2tango` or
`q_vbs2tango_true`, `r_Vo2To_vbs_true`): `use_vis.py` writes its `poses.json` so, and the
files of another pose pipeline can be scored the same way. Records are matched by file
name, exactly. A labelled image with no predicted pose counts as unsolved (it lowers
`solved_fraction`; the errors are over the solved ones); predictions for unlabelled
images are counted and left out. The score is the plain metric (rotation in radians +
translation error over distance), with no error floor. Prints the errors and writes them
as JSON to `{output_dir}/{pred}_scores.json` (default: beside --pred).
"""

import argparse
from pathlib import Path

from common import cli
from common.data_io import save_json


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pred", required=True, help="predicted poses (use_vis.py's poses.json)")
    parser.add_argument("--labels", required=True, help="label file ({split}.json of the data folder)")
    cli.add_output_dir(parser, "where {pred}_scores.json goes (default: the folder of --pred)")
    args = parser.parse_args(argv)
    from stage2_visible_keypoints.data import score_poses  # after parsing: --help starts at once
    pred = Path(args.pred)
    out = Path(args.output_dir or pred.parent) / f"{pred.stem}_scores.json"
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
    save_json(out, summary)
    print(f"written: {out}")


if __name__ == "__main__":
    raise SystemExit(cli.run(main))
