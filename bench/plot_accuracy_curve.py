"""Draw the whole held-out curve of a stage-2 accuracy run from its JSON.

    python bench/plot_accuracy_curve.py bench/results/gpu/stage2_accuracy.json --output-dir bench/results/gpu

A table of such a run shows some of its rows; this draws every one: the held-out mean and
median error (px in the 128x128 input frame, log scale), PCK at 2, 5 and 10 px and the
training loss against the training images seen. Writes `<json stem>_curve.png` into
--output-dir (default: beside the JSON).
"""

import argparse
from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib.ticker import FormatStrFormatter
import numpy as np

from common import cli
from common.data_io import atomic_path, load_json
from common.errors import DataError


def plot_curve(rows, path, title):
    """rows: the `rows` of a bench/stage2_accuracy.py JSON (one per evaluation)."""
    seen = np.array([r["images_seen"] for r in rows], dtype=np.float64)
    fig, (ax_px, ax_pck) = plt.subplots(1, 2, figsize=(11, 4))
    ax_px.plot(seen, [r["euclidean_mean_px"] for r in rows], marker="o", markersize=3, label="mean")
    ax_px.plot(seen, [r["euclidean_median_px"] for r in rows], marker="o", markersize=3, label="median")
    ax_px.set_yscale("log")
    ax_px.yaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax_px.yaxis.set_minor_formatter(FormatStrFormatter("%g"))
    ax_px.set_xlabel("training images seen")
    ax_px.set_ylabel("held-out error, px (128x128 input)")
    ax_px.grid(True, which="both", alpha=0.3)
    loss_ax = ax_px.twinx()
    loss_ax.plot(seen, [r["train_loss"] for r in rows], color="grey", linestyle="--", label="train loss")
    loss_ax.set_ylabel("train loss")
    lines = ax_px.get_legend_handles_labels()
    more = loss_ax.get_legend_handles_labels()
    ax_px.legend(lines[0] + more[0], lines[1] + more[1], fontsize="small")
    for threshold in ("2", "5", "10"):
        ax_pck.plot(seen, [r["pck"][threshold] for r in rows], marker="o", markersize=3, label=f"PCK@{threshold}")
    ax_pck.set_ylim(0, 1)
    ax_pck.set_xlabel("training images seen")
    ax_pck.set_ylabel("held-out PCK")
    ax_pck.grid(True, alpha=0.3)
    ax_pck.legend(fontsize="small")
    fig.suptitle(title, fontsize="medium")
    fig.tight_layout()
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=100, format="png")
    finally:
        plt.close(fig)
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("json", help="a bench/stage2_accuracy.py result JSON")
    parser.add_argument("--output-dir", help="folder for the PNG (default: beside the JSON)")
    args = parser.parse_args(argv)
    source = Path(args.json)
    result = load_json(source)
    rows = result.get("rows") if isinstance(result, dict) else None
    if not rows:
        raise DataError("field 'rows' is missing or empty: not a stage2_accuracy.py result", source)
    run = result.get("run", {})
    device = run.get("device") or result.get("device", "?")
    backend = run.get("backend") or result.get("backend", "?")
    title = f"{source}: {len(rows)} evaluations, {backend}, {device}"
    path = plot_curve(rows, Path(args.output_dir or source.parent) / f"{source.stem}_curve.png", title)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(cli.run(main))
