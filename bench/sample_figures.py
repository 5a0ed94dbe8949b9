"""Issue 21's figures on the bundled sample, from the runs `bash run_all.sh` left (every fold, out of fold).

    python bench/sample_figures.py [--output-dir outputs]

Prints, with 95% bootstrap intervals over rows (paired for differences): 04's out-of-fold log loss against the
class prior, 02's, the 02 + 04 blend (weights and temperature cross-fitted: each row scored by a blend fitted on
the other rows, as 05 does) against 02 alone, the same blend with each of 06's variants of 04 in its place, and 06's
factor table (variants of 04 against it).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kagglelib.analysis.ablation import bootstrap_log_loss  # noqa: E402
from kagglelib.analysis.factors import paired_difference  # noqa: E402
from kagglelib.run.layout import heldout_predictions, labels_and_probs  # noqa: E402
from kagglelib.scoring.ensemble import crossfit_blend  # noqa: E402
from kagglelib.scoring.metrics import log_loss, prior_probs  # noqa: E402


def shared_rows(baseline: pd.DataFrame, other: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(labels, baseline probabilities, other run's probabilities) on the rows both runs held out."""
    merged = baseline.merge(other, on="id", suffixes=("_b", ""))
    labels, probs = labels_and_probs(merged)
    base = merged[[f"{c}_b" for c in ("winner_model_a", "winner_model_b", "winner_tie")]].to_numpy(float)
    return labels, base, probs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--output-dir", default="outputs")
    ap.add_argument("--baseline", default="baseline")
    ap.add_argument("--encoder", default="encoder")
    args = ap.parse_args()
    runs = Path(args.output_dir) / "runs"
    baseline = heldout_predictions(runs / args.baseline)
    labels, base, enc = shared_rows(baseline, heldout_predictions(runs / args.encoder))
    prior = log_loss(labels, prior_probs(labels, len(labels)))
    print(f"rows held out by both runs: {len(labels)}; class prior log loss {prior:.4f}")
    for name, p in ((args.encoder, enc), (args.baseline, base)):
        lo, hi = bootstrap_log_loss(labels, p)
        print(f"{name:>10} OOF log loss {log_loss(labels, p):.4f} [{lo:.4f}, {hi:.4f}]")
    blend = crossfit_blend([base, enc], labels)
    d, lo, hi = paired_difference(labels, base, blend)
    print(f"     blend OOF log loss {log_loss(labels, blend):.4f}; minus {args.baseline}: {d:+.4f} [{lo:+.4f}, {hi:+.4f}]")
    # The same blend with each of 06's variants of the encoder in its place (what a better 04 would add to 02).
    for run in sorted(p.name for p in runs.glob(f"{args.encoder}__*") if (p / "oof.csv").exists()):
        y, b, v = shared_rows(baseline, heldout_predictions(runs / run))
        d, lo, hi = paired_difference(y, b, crossfit_blend([b, v], y))
        print(f"  blend with {run} ({log_loss(y, v):.4f}): minus {args.baseline}: {d:+.4f} [{lo:+.4f}, {hi:+.4f}]")
    table = Path(args.output_dir) / "ablation" / "factor_table.csv"
    if table.exists() and table.stat().st_size > 1:
        print(pd.read_csv(table).round(4).to_string(index=False))


if __name__ == "__main__":
    main()
