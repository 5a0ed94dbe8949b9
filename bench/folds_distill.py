"""Issue 12's figures on the sample (CPU): all-fold MiniLM, distilled MiniLM, 05 blend on full OOF, pseudo-labels.

    OUTPUT_DIR=/tmp/i12-out .venv/bin/python bench/folds_distill.py [key=value ...]   # 04 overrides, e.g. epochs=1

Steps (each skipped when its run folder is finished; an all-fold run resumes fold by fold):
1. 02 baseline (cpu-sample) -> runs/baseline (its oof.csv is the teacher);
2. 04 MiniLM (cpu-sample + overrides), folds="all" -> runs/minilm_all;
3. the same, distilled from the baseline's OOF (alpha 0.5, T 2) -> runs/minilm_all_distill;
4. 05 on the full OOF: blend baseline + minilm_all, and baseline alone (cross-fitted log loss);
5. pseudo-labels: the 200-row test sample scored by the baseline and added to training (then the same with
   those 200 rows taken out of training first, so they are new to it).
Prints one JSON with every figure (bootstrap 95% intervals over rows) and writes it to OUTPUT_DIR/figures.json.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from kagglelib.data.frame import WINNER_COLUMNS, rows_by_id, targets
from kagglelib.data.load import load_arena
from kagglelib.inference.pseudo import pseudo_label
from kagglelib.scoring.metrics import bootstrap_means, log_loss, normalise, prior_probs
from kagglelib.analysis.ablation import bootstrap_log_loss
from kagglelib.run.layout import heldout_predictions, labels_and_probs
from kagglelib.training.baseline import BaselineConfig, run_baseline
from kagglelib.inference.submit import InferenceConfig, run_inference
from kagglelib.core.paths import sample_paths
from kagglelib.run.config import make_config
from kagglelib.training.config import EncoderTrainConfig
from kagglelib.training.fit import train

OUT = Path(os.environ.get("OUTPUT_DIR", "/tmp/i12-out"))
TRAIN, TEST = (str(p) for p in sample_paths())


def overrides(argv: list[str]) -> dict:
    """key=value pairs, values parsed as JSON where they parse."""
    out = {}
    for a in argv:
        k, v = a.split("=", 1)
        try:
            out[k] = json.loads(v)
        except ValueError:
            out[k] = v
    return out


def baseline(name: str, train_path: str = TRAIN) -> dict:
    if not (OUT / "runs" / name / "metrics.json").exists():
        run_baseline(BaselineConfig(output_dir=str(OUT), run_name=name, train_path=train_path, profile="cpu-sample"))
    m = json.loads((OUT / "runs" / name / "metrics.json").read_text())
    return {k: m.get(k) for k in ("oof_log_loss", "n_train", "n_soft_rows", "train_report")}


def heldout(run: str) -> tuple[np.ndarray, np.ndarray]:
    return labels_and_probs(heldout_predictions(OUT / "runs" / run))


def row_losses(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    return -np.log(normalise(p)[np.arange(len(y)), y])


def figure(run: str) -> dict:
    y, p = heldout(run)
    m = json.loads((OUT / "runs" / run / "metrics.json").read_text())
    return {"oof_log_loss": log_loss(y, p), "n": len(y), "ci95": bootstrap_log_loss(y, p, 2000, 0),
            "prior_log_loss": log_loss(y, prior_probs(y, len(y))),
            "per_fold": [(r["fold"], r["valid_log_loss"], r["n_valid"]) for r in m.get("per_fold", [])]}


def main() -> None:
    torch.set_num_threads(int(os.environ.get("THREADS", "2")))
    kw = {"profile": "cpu-sample", "output_dir": str(OUT), "progress": False, **overrides(sys.argv[1:])}
    res: dict = {"encoder_overrides": overrides(sys.argv[1:]), "baseline": baseline("baseline")}
    train(make_config(EncoderTrainConfig, run_name="minilm_all", folds="all", **kw))
    teacher = str(OUT / "runs" / "baseline")   # 02's out-of-fold predictions
    train(make_config(EncoderTrainConfig, run_name="minilm_all_distill", folds="all", teacher=teacher, distill_alpha=0.5,
                             distill_temperature=2.0, **kw))
    for run in ("baseline", "minilm_all", "minilm_all_distill"):
        res[run] = figure(run)
    y, plain = heldout("minilm_all")
    diff = row_losses(y, heldout("minilm_all_distill")[1]) - row_losses(y, plain)
    boot = bootstrap_means(diff, 2000, 0)
    res["distill_minus_plain"] = {"mean": float(diff.mean()), "ci95": np.percentile(boot, [2.5, 97.5]).tolist()}
    for name, runs in (("blend_base_minilm", "baseline,minilm_all"), ("blend_base_only", "baseline")):
        s = run_inference(InferenceConfig(output_dir=str(OUT), run_name=name, runs=runs, profile="cpu-sample"))
        res[name] = {"weights": s["weights"], "n": s["n_valid_common"],
                     "crossfit_log_loss": s["valid_final_crossfit"]["log_loss"]}
    # Pseudo-labels. A: the test sample (the first 200 train rows, see data/README.md) added to training.
    pseudo_label("baseline", TEST, OUT / "pseudo_test.csv", output_dir=OUT)
    res["A_train+pseudo_test"] = baseline("baseline_plus_pseudo", f"{TRAIN},{OUT / 'pseudo_test.csv'}")
    # B: those 200 rows first taken out of training, so the pseudo-labelled rows are new to the model.
    raw = pd.read_csv(TRAIN, dtype=str, keep_default_na=False)
    test_ids = set(pd.read_csv(TEST, dtype=str)["id"])
    raw[~raw["id"].isin(test_ids)].to_csv(OUT / "train910.csv", index=False)
    raw[raw["id"].isin(test_ids)].to_csv(OUT / "true200.csv", index=False)
    res["B_910"] = baseline("baseline_910", str(OUT / "train910.csv"))
    pseudo_label("baseline_910", TEST, OUT / "pseudo200.csv", output_dir=OUT)
    truth = rows_by_id(load_arena(TRAIN), load_arena(TEST)["id"])["label"].to_numpy()
    res["B_pseudo_labels_vs_true"] = log_loss(truth, targets(load_arena(OUT / "pseudo200.csv")))
    res["B_910+pseudo200"] = baseline("baseline_910_pseudo", f"{OUT / 'train910.csv'},{OUT / 'pseudo200.csv'}")
    baseline("baseline_910_true200", f"{OUT / 'train910.csv'},{OUT / 'true200.csv'}")
    oof = pd.read_csv(OUT / "runs" / "baseline_910_true200" / "oof.csv")
    keep = ~oof["id"].astype(str).isin(test_ids)
    res["B_910+true200_on_the_910"] = log_loss(oof.loc[keep, "label"].to_numpy(),
                                                        oof.loc[keep, list(WINNER_COLUMNS)].to_numpy())
    text = json.dumps(res, indent=1, default=str)
    (OUT / "figures.json").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
