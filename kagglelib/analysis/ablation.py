"""Notebook 06: the ablation table with bootstrap intervals, per-run calibration and bias probes, all read from
``<output_dir>/runs/*/`` (``run_ablation`` writes them to ``<output_dir>/ablation/``), and the seeds' grid.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ..core.io import read_csv_table, save_figure, write_csv, write_json, write_text
from ..data.folds import load_training
from ..data.frame import WINNER_COLUMNS, rows_by_id
from ..inference.predictors import load_predictor
from ..inference.tta import tta_predict
from ..run.config import RunConfig, make_config, save_config
from ..run.folder import Run
from ..run.layout import (ABLATION_DIR, ABLATION_FIGURES, ABLATION_TABLE_CSV, ABLATION_TABLE_MD, BIAS_REPORT,
                          CALIBRATION_CSV, heldout_predictions, labels_and_probs,
                          list_runs)
from ..run.store import Staging
from ..scoring.calibration import calibration_report
from ..scoring.metrics import bootstrap_means, log_loss, normalise, prior_probs, summarise
from ..scoring.plots import ablation_points, bias_bars, factor_effects, reliability
from ..training.config import DecoderTrainConfig
from ..training.fit import train
from .factors import factor_table, train_variants
from .probes import bias_frame, bias_report


# Settings shown in the table, with the config keys they may come from (first found wins).
SETTINGS = {
    "kind": ("config_class",),
    "backbone": ("backbone", "model"),
    "task": ("task",),
    "head_layers": ("head_layers",),
    "lora_init": ("lora_init", "init_lora_weights"),
    "lora_r": ("lora_r",),
    "quantization": ("quantization",),
    "max_length": ("max_length",),
    "tta": ("tta",),
    "folds": ("folds",),
    "teacher": ("teacher",),
    "profile": ("profile",),
}


SEED_FACTORS = ("head_layers=3;pairwise_head=order;pairwise_head=order,pairwise_tta=true;pairwise_tune=ffn;"
                "pairwise_tune=ffn,use_lora=true;pairwise_tune=ffn,use_lora=true,lora_init=pissa")


@dataclass
class AblationConfig(RunConfig):
    """Notebook 06 parameters (defaults: cpu-sample's)."""

    run_name: str = "ablation"       # not a run folder: results go to <output_dir>/ablation/
    include: str = ""                # comma list of run names to keep (empty: all runs)
    exclude: str = "submission"      # comma list of run names to leave out
    n_bootstrap: int = 1000          # bootstrap resamples of the held-out rows for intervals
    probe_rows: int = 120            # real rows used by the bias probes
    seed: int = 0                    # bootstrap and probe-row sampling
    grid: bool = False               # first train the seeds' ablation grid (run_grid) with this profile
    reference: str = "encoder"       # the factor table's reference run (kagglelib.analysis.factors)
    factors: str = SEED_FACTORS      # variants of the reference trained first, "field=value,...;..." ("": none)

    PROFILE_DEFAULTS: ClassVar[dict[str, dict[str, Any]]] = {
        # factors: on the sample (the default) 04's pairwise run and its variants train on every fold of the real
        # MiniLM: SEED_FACTORS (each compared with the run it differs from in one setting).
        "kaggle-t4": {"probe_rows": 1000, "factors": ""}, "colab-a100": {"probe_rows": 2000, "factors": ""},
    }


FACTOR_TABLE_CSV = "factor_table.csv"
FACTOR_TABLE_MD = "factor_table.md"


def is_smoke(run_dir: Path) -> bool:
    """A run of a tiny random model (a pipeline check, never a result)."""
    return Run.at(run_dir).is_smoke


def bootstrap_log_loss(labels: np.ndarray, probs: np.ndarray, n: int = 1000, seed: int = 0) -> tuple[float, float]:
    """95% percentile interval of the log loss over bootstrap resamples of the rows."""
    p = normalise(probs)
    means = bootstrap_means(-np.log(p[np.arange(len(labels)), labels]), n, seed)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def run_row(run_dir: Path, n_bootstrap: int = 1000, seed: int = 0) -> dict[str, Any]:
    """One table row: the run's settings and its held-out metrics (recomputed from its predictions)."""
    run = Run.at(run_dir)
    cfg, m = run.config, run.metrics
    row: dict[str, Any] = {"run": run_dir.name}
    for name, keys in SETTINGS.items():
        row[name] = next((cfg[k] for k in keys if cfg.get(k) not in (None, "")), "")
    row["smoke"] = bool(cfg.get("smoke") or m.get("smoke") or str(row["backbone"]).startswith("tiny-"))
    row["n_train"] = m.get("n_train")
    row["seconds"] = m.get("seconds")
    preds = heldout_predictions(run_dir)
    if preds is None:
        return row
    labels, probs = labels_and_probs(preds)
    row.update(n_heldout=len(labels), **summarise(labels, probs))
    row["ll_low"], row["ll_high"] = bootstrap_log_loss(labels, probs, n_bootstrap, seed)
    row["prior_log_loss"] = log_loss(labels, prior_probs(labels, len(labels)))
    return row


def ablation_table(output_dir: str | Path, include: str = "", exclude: str = "", n_bootstrap: int = 1000,
                   seed: int = 0) -> pd.DataFrame:
    """Every run's settings against its held-out log loss (with a 95% bootstrap interval) and accuracy."""
    rows = [run_row(r, n_bootstrap, seed) for r in list_runs(output_dir, include, exclude)]
    table = integer_columns(pd.DataFrame(rows))
    if "log_loss" in table.columns:
        table = table.sort_values("log_loss", na_position="last").reset_index(drop=True)
    return table


INT_COLUMNS = ("head_layers", "lora_r", "max_length", "n_train", "n_heldout")


def integer_columns(table: pd.DataFrame, columns: tuple[str, ...] = INT_COLUMNS) -> pd.DataFrame:
    """Counts as nullable integers, so runs lacking a setting do not turn the others into floats."""
    table = table.copy()
    for col in columns:
        if col in table.columns:
            table[col] = pd.to_numeric(table[col], errors="coerce").round().astype("Int64")
    return table


def to_markdown(table: pd.DataFrame, digits: int = 4) -> str:
    """A GitHub markdown table (no extra dependency)."""
    def fmt(v: Any) -> str:
        if v is pd.NA:
            return ""
        if isinstance(v, float):
            return "" if np.isnan(v) else f"{v:.{digits}f}"
        return str(v)

    head = "| " + " | ".join(map(str, table.columns)) + " |"
    sep = "|" + "|".join("---" for _ in table.columns) + "|"
    body = ["| " + " | ".join(fmt(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join([head, sep, *body]) + "\n"


def ablation_dir(output_dir: str | Path) -> Path:
    """``<output_dir>/ablation``, created if needed."""
    path = Path(output_dir) / ABLATION_DIR
    path.mkdir(parents=True, exist_ok=True)
    return path


def save_table(table: pd.DataFrame, out_dir: Path) -> None:
    """``ablation_table.csv`` and ``ablation_table.md`` (written atomically)."""
    write_csv(table, out_dir / ABLATION_TABLE_CSV)
    write_text(to_markdown(table), out_dir / ABLATION_TABLE_MD)


def calibration_table(run_dirs: list[Path], seed: int = 0) -> tuple[pd.DataFrame, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Per run: log loss and ECE before/after (cross-fitted) temperature scaling; plus each run's (labels, probs)."""
    rows, curves = [], {}
    for run_dir in run_dirs:
        preds = heldout_predictions(run_dir)
        if preds is None:
            continue
        labels, probs = labels_and_probs(preds)
        rows.append({"run": run_dir.name, "n": len(labels), **calibration_report(labels, probs, seed=seed)})
        curves[run_dir.name] = (labels, probs)
    return pd.DataFrame(rows), curves


def run_ablation(cfg: AblationConfig) -> dict[str, Any]:
    """Notebook 06's work: (the grid,) table, calibration and bias probes of every run, written to <output_dir>/ablation/."""
    out = ablation_dir(cfg.output_dir)
    save_config(cfg, out)
    if cfg.grid:
        run_grid({"output_dir": cfg.output_dir, "train_path": cfg.train_path, "profile": cfg.profile})
    if cfg.factors and (Path(cfg.output_dir) / "runs" / cfg.reference).is_dir():
        train_variants(cfg.output_dir, cfg.reference, cfg.factors)
    runs = list_runs(cfg.output_dir, cfg.include, cfg.exclude)
    if not runs:
        raise FileNotFoundError(f"no finished runs under {Path(cfg.output_dir) / 'runs'} (a run needs config.json, "
                                f"metrics.json and labelled held-out predictions; include={cfg.include!r}, "
                                f"exclude={cfg.exclude!r}): run notebooks 02-04 first")
    table = ablation_table(cfg.output_dir, cfg.include, cfg.exclude, cfg.n_bootstrap, cfg.seed)
    save_table(table, out)
    paired = factor_table(runs, cfg.reference, cfg.n_bootstrap, cfg.seed)
    write_csv(paired, out / FACTOR_TABLE_CSV)
    write_text(to_markdown(paired) if len(paired) else "", out / FACTOR_TABLE_MD)
    calibration, curves = calibration_table(runs, cfg.seed)
    write_csv(calibration, out / CALIBRATION_CSV)
    real = [r for r in runs if not is_smoke(r)]   # smoke runs are pipeline checks: never a bar in a shown figure
    # Factor variants (``<ref>__...``) are in the factor table; the probes cover the runs a user submits.
    report = bias_report([r for r in real if "__" not in r.name], cfg.probe_rows, cfg.seed,
                         cache_dir=Path(cfg.output_dir) / "cache" / "probes")
    write_json(report, out / BIAS_REPORT)
    bias = bias_frame(report)
    figures = {"ablation": ablation_points(table[~table["smoke"].astype(bool)]),
               "reliability": reliability({k: v for k, v in curves.items() if k in {r.name for r in real}})}
    if len(paired):
        figures["factors"] = factor_effects(paired)
    if len(bias):   # every run skipped (no model files to probe): no bias figure
        figures["bias"] = bias_bars(bias)
    for name, fig in figures.items():
        save_figure(fig, out / ABLATION_FIGURES[name])
        plt.close(fig)   # closed so a notebook shows each once, when it displays the returned figure
    return {"out_dir": out, "runs": runs, "table": table, "factors": paired, "calibration": calibration, "bias_report": report,
            "bias": bias, "skipped": {run: r["skipped"] for run, r in report.items() if "skipped" in r},
            "figures": figures}


# The seeds' ablation: one reference fine-tune and one variant per factor, same data, fold and seed.
SEEDS_GRID: dict[str, list[Any]] = {"head_layers": [3], "lora_init": ["pissa"], "task": ["next_token"],
                                    "folds": ["all"]}
GRID_REFERENCE: dict[str, Any] = {"head_layers": 1, "lora_init": "default", "task": "classifier", "folds": ""}
DISTILL_ROW: dict[str, Any] = {"distill_alpha": 0.5, "distill_temperature": 2.0}   # teacher: the folds-all row


def grid_params(base: dict[str, Any], factors: dict[str, list[Any]] | None = None,
                prefix: str = "grid") -> list[dict[str, Any]]:
    """Reference + one-factor-at-a-time variants as DecoderTrainConfig keyword dicts.

    A ``folds`` row holds out whole folds (its OOF covers every row); when it trains all folds, a
    distillation row follows: the reference distilled from that row's out-of-fold predictions.
    """
    factors = SEEDS_GRID if factors is None else factors
    ref = {**base, **GRID_REFERENCE, "run_name": f"{prefix}_ref"}
    out = [ref]
    for name, values in factors.items():
        extra = {"max_valid_rows": 0} if name == "folds" else {}
        out += [{**ref, name: v, **extra, "run_name": f"{prefix}_{name}-{v}"} for v in values if ref.get(name) != v]
    if "all" in factors.get("folds", []):
        out.append({**ref, **DISTILL_ROW, "teacher": f"{prefix}_folds-all", "run_name": f"{prefix}_distill"})
    return out


def tta_validation_run(run_dir: Path) -> Path:
    """A sibling run ``<name>_tta`` holding the run's validation predictions redone with swap TTA."""

    run = Run.at(run_dir)
    cfg = run.config
    preds = read_csv_table(run.valid_preds_file)
    rows = rows_by_id(load_training(cfg["train_path"]), preds["id"])
    probs = tta_predict(load_predictor(run_dir), rows)
    with Run.create(run_dir.parent.parent, f"{run_dir.name}_tta") as stage:   # committed atomically
        _write_tta_run(run, stage, cfg, preds, probs)
    return stage.final


def _write_tta_run(run: Run, out: Staging, cfg: dict[str, Any], preds: pd.DataFrame, probs: np.ndarray) -> None:

    labels = preds["label"].to_numpy(dtype=np.int64)
    write_json({**cfg, "tta": True, "derived_from": run.name}, out.config_file)
    m = run.metrics
    write_json({**{f"valid_{k}": v for k, v in summarise(labels, probs).items()}, "tta": True,
                "n_train": m.get("n_train"), "smoke": m.get("smoke"), "seconds": m.get("seconds")}, out.metrics_file)
    write_csv(preds.assign(**dict(zip(WINNER_COLUMNS, probs.T))), out.valid_preds_file)


def run_grid(base: dict[str, Any], factors: dict[str, list[Any]] | None = None, prefix: str = "grid",
             tta: bool = True) -> list[Path]:
    """Train the grid with notebook 03's trainer (and a TTA twin of the reference); returns the run folders."""

    dirs = []
    for params in grid_params(base, factors, prefix):
        cfg = make_config(DecoderTrainConfig, **params)
        train(cfg)
        dirs.append(cfg.run_dir)
    if tta:
        dirs.append(tta_validation_run(dirs[0]))
    return dirs
