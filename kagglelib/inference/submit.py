"""Test-time inference: swap TTA, resumable chunked prediction, several devices, loading saved runs.

A *predictor* is any function ``DataFrame -> (n, 3) probabilities`` in row order. This module turns
saved runs into predictors and runs them over a test set:

- swap TTA: ``(p(x) + swap_probs(p(swap_ab(x)))) / 2``, exactly position-symmetric;
- chunks of ``chunk_rows`` rows, each written atomically to ``cache_dir`` as it finishes, so a rerun
  after a crash or a Kaggle time-out skips finished chunks; a chunk file is named by a hash of its rows'
  ids and texts, the run's manifest and the inference settings, so any change recomputes that chunk;
- a time budget: a chunk is not started when the time left is less than the slowest chunk so far (a
  spent budget, 0 or less, starts none); unfinished rows come back as NaN (the ensemble then falls back
  to the runs that finished, or the class prior; ``fallback_rows.csv`` lists them);
- several devices (Kaggle 2xT4): one model per device, chunks dealt round-robin to one thread per
  device (PyTorch releases the GIL inside kernels), results reassembled in row order.

Imports nothing from training; a Kaggle kernel needs only torch, transformers, peft and pandas.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np
import pandas as pd

from ..core.checks import check_settings
from ..core.io import comma_list, refuse_input, table_format, write_csv, write_json
from ..core.paths import KAGGLE_WORKING, detect_env
from ..data.folds import load_training
from ..data.frame import WINNER_COLUMNS, content_fingerprint, prob_frame
from ..data.load import load_arena
from ..models.build import warn_8bit
from ..run.config import RunConfig, save_config
from ..run.folder import Run
from ..run.layout import RULE_FLAGS
from ..run.preflight import check_unique_ids
from ..run.store import Staging
from ..scoring.ensemble import apply_blend, apply_rules, crossfit_blend, fit_blend, fit_rules
from ..scoring.metrics import summarise
from ..scoring.submission import validate_submission, write_submission
from .predictors import release_models, run_fingerprint, run_predictors, visible_devices
from .pseudo import write_soft_file
from .tta import predict_chunked

log = logging.getLogger(__name__)


@dataclass
class InferenceConfig(RunConfig):
    """Notebook 05 parameters: which runs to blend and how to run them (defaults: cpu-sample's)."""

    run_name: str = "submission"          # the submission's own folder under <output_dir>/runs/
    runs: list = field(default_factory=lambda: ["baseline", "encoder"])  # run names or folders to blend
    tta: bool = True                      # swap TTA: predict A/B and B/A, average after un-swapping
    ensemble: str = "fit"                 # fit: weights minimising validation log loss | equal
    calibrate: bool = True                # temperature fitted on the blended validation predictions
    postprocess: bool = True              # identical / empty-response rules, kept only if they help on validation
    chunk_rows: int = 256                 # rows per resumable chunk (CPU: small batches are faster)
    batch_tokens: int = 2048              # token budget per batch (rows x longest row)
    devices: str = "auto"                 # auto: every visible GPU (else cpu) | "cuda:0,cuda:1" | "cpu"
    precision: str = "auto"               # auto | bf16 | fp16 | fp32 (fp32 on CPU)
    quantization: str = ""                # "" keeps each run's | auto (4bit when 16-bit weights > 60% of the GPU) | none | 8bit | 4bit
    time_budget_s: float = 3600.0         # stop starting chunks after this many seconds (Kaggle: 9 h); 0: none

    pseudo_label_path: str = ""           # also write the blended test probabilities as a soft-labelled train file

    TRAIN_OPTIONAL: ClassVar[bool] = True  # train_path: "" = not read; else checked against the runs' provenance

    PROFILE_DEFAULTS: ClassVar[dict[str, dict[str, Any]]] = {
        # Plan (kaggle-t4, runs gemma_lora,encoder): the A100-trained 9B loads 4-bit ("auto": its 17 GiB of 16-bit
        # weights exceed a T4), ~10 GiB per T4 at 16384 tokens/batch, one model per T4; see README for the hours.
        "kaggle-t4": {"chunk_rows": 2048, "batch_tokens": 16384, "time_budget_s": 8.5 * 3600, "quantization": "auto"},
        # Plan: the 9B in bf16 with eager attention (no flash-attn) needs 37 GiB of an A100-40 at 65536 tokens per
        # batch, 28 GiB at 32768.
        "colab-a100": {"chunk_rows": 4096, "batch_tokens": 32768, "time_budget_s": 20 * 3600.0, "quantization": "auto"},
    }

    SETTING_RULES: ClassVar[dict[str, str]] = {"chunk_rows": "int>=1", "batch_tokens": "int>=1",
                                               "time_budget_s": "num>=0"}

    def __post_init__(self) -> None:
        super().__post_init__()
        check_settings(self, self.SETTING_RULES)
        if self.pseudo_label_path:   # written at the end of a long run: its name is checked now
            table_format(self.pseudo_label_path, "pseudo_label_path")
            refuse_input(self.pseudo_label_path, [self.test_path, self.train_path], "pseudo_label_path")
        if isinstance(self.runs, str):
            self.runs = comma_list(self.runs)
        if not self.runs:
            raise ValueError("runs is empty: name at least one run folder to predict with")
        repeated = sorted({r for r in self.runs if self.runs.count(r) > 1})
        if repeated:   # a run listed twice would get two shares of an 'equal' blend
            raise ValueError(f"runs lists {repeated} more than once; list each run once")
        if self.ensemble not in ("fit", "equal"):
            raise ValueError(f"ensemble must be 'fit' or 'equal', got {self.ensemble!r}")
        if self.quantization not in ("", "auto", "none", "4bit", "8bit"):
            raise ValueError(f"quantization must be '', auto, none, 4bit or 8bit, got {self.quantization!r}")
        if self.quantization == "8bit":
            warn_8bit()


def validation_predictions(run: Run) -> pd.DataFrame:
    """A run's held-out predictions with real labels (oof.csv or valid_preds.csv), indexed by id as str."""
    preds = run.heldout()
    if preds.index.duplicated().any():   # the blend is fitted on rows matched by id: a repeat would count twice
        dup = preds.index[preds.index.duplicated()]
        raise ValueError(f"{run.heldout_file}: id {dup[0]!r} occurs on several rows ({len(dup)} repeats); the ensemble "
                         "matches held-out rows by id, so the run's train file needs unique ids")
    # Rows trained on soft (pseudo) labels have no real label to fit a blend on.
    return preds[~preds["soft"].astype(bool)] if "soft" in preds.columns else preds


def fallback_rows(ids: Any, probs: list[np.ndarray], names: list[str]) -> pd.DataFrame:
    """Per test row some run did not predict (time budget): the runs that did, and what the row got."""
    have = np.stack([np.isfinite(np.asarray(p)).all(axis=1) for p in probs])   # (runs, n)
    rows = np.flatnonzero(~have.all(axis=0))
    predicted = [",".join(n for n, h in zip(names, have[:, i]) if h) for i in rows]
    got = ["class prior of the validation labels, then the temperature" if not p else
           "blend of the runs that predicted it (weights renormalised)" for p in predicted]
    return pd.DataFrame({"id": np.asarray(ids)[rows], "runs_predicted": predicted, "fallback": got})


def submission_layout(runs: Sequence[Run], valid: Sequence[pd.DataFrame]) -> str:
    """The label layout (kaggle | wsdm) every run recorded; an error when runs disagree or cannot tell."""
    layouts = {}
    for run, v in zip(runs, valid):
        if run.layout is not None:
            layouts[str(run.path)] = run.layout
        elif "label" in v.columns and (v["label"] == 2).any():   # ties exist only in the Kaggle 3-class layout
            layouts[str(run.path)] = "kaggle"
        else:
            raise ValueError(f"{run.path}: no run_info.json recording its label layout (kaggle or wsdm) and its "
                             "held-out labels cannot tell; re-run it (02, 03 or 04) with this kagglelib")
    if len(set(layouts.values())) > 1:
        raise ValueError(f"runs disagree on the label layout {layouts}: blend runs trained on one competition's data")
    return next(iter(layouts.values()))


def heldout_rule_masks(valid: Sequence[pd.DataFrame], ids: pd.Index) -> dict[str, np.ndarray] | None:
    """Rule masks of the common held-out rows, from the flags a run stored with them (None: no run has them)."""

    for v in valid:
        if all(c in v.columns for c in RULE_FLAGS):
            return {k: v.loc[ids, k].to_numpy(dtype=bool) for k in RULE_FLAGS}
    return None


def run_keys(runs: Sequence[Run]) -> list[str]:
    """One name per run for its files, cache and blend weight: the folder name, or name-<manifest hash> when two
    runs share a folder name (two attached datasets each holding a ``baseline``); the same run twice is an error."""
    identities = [r.identity for r in runs]
    names = [r.name for r in runs]
    keys = [n if names.count(n) == 1 else f"{n}-{i[:8]}" for n, i in zip(names, identities)]
    if len(set(keys)) < len(keys):
        twice = next(r.path for r, k in zip(runs, keys) if keys.count(k) > 1)
        raise ValueError(f"run {twice} is given twice (same name and manifest): list each run once")
    return keys


def check_provenance(train_path: str, runs: Sequence[Run | Path]) -> list[dict[str, Any]]:
    """Compare a train file's content fingerprint with the one each run recorded; warn about mismatches."""
    fingerprint = content_fingerprint(load_training(train_path)) if train_path else None
    rows = []
    for run in runs:
        run = run if isinstance(run, Run) else Run.at(run)
        source = run.provenance
        row = {"run": run.name, "train_file": source.get("train_file"), "n_rows": source.get("n_rows"),
               "fingerprint": (source.get("content_fingerprint") or "")[:12] or None, "matches_train_path": None}
        if fingerprint is not None:
            row["matches_train_path"] = source.get("content_fingerprint") == fingerprint
            if not row["matches_train_path"]:
                log.warning("run %s was not trained on %s (content fingerprints differ%s); its held-out figures "
                            "and blend weights may not carry over", run.name, train_path,
                            "" if source else ": the run records none")
        rows.append(row)
    return rows


def run_inference(cfg: InferenceConfig) -> dict[str, Any]:
    """Predict the test file with every run (TTA, chunks, devices), blend, calibrate, write submission.csv.

    The submission run is staged and committed atomically (:mod:`kagglelib.runs`); chunk caches live in
    ``<output_dir>/cache/inference/<run>/`` so that they survive a kill.
    """

    with Run.create(cfg.output_dir, cfg.run_name) as stage:
        return _run_inference(cfg, stage)


def _run_inference(cfg: InferenceConfig, stage: Staging) -> dict[str, Any]:
    out_dir = stage.path
    start = time.monotonic()   # the time budget counts from here, on the monotonic clock
    save_config(cfg, out_dir, notebook="05_tta_inference")
    test = load_arena(cfg.test_path)
    check_unique_ids(test, cfg.test_path, "a submission has one row per test id")
    runs = [Run.open(r, cfg.output_dir) for r in cfg.runs]   # each checked and read once
    provenance = check_provenance(cfg.train_path, runs)   # reads train_path only when it is set
    # The submission layout comes from the run folders (the train file is not read; it is not in Kaggle's kernel),
    # checked before hours of inference: "wsdm" means an id,winner submission.
    keys = run_keys(runs)   # by content: two runs named alike stay two members
    valid = [validation_predictions(r) for r in runs]   # read once: the layout now, the blend below
    layout = submission_layout(runs, valid)
    devices = visible_devices(cfg.devices)
    deadline = start + cfg.time_budget_s   # 0: no chunk starts

    test_probs, statuses = [], []
    for key, run in zip(keys, runs):
        predictors = run_predictors(run, devices, cfg.precision, cfg.quantization, cfg.batch_tokens)
        cache = Path(cfg.output_dir) / "cache" / "inference" / key
        chunk_key = run_fingerprint(run, cfg.tta, precision=cfg.precision, quantization=cfg.quantization,
                                    batch_tokens=cfg.batch_tokens, devices=devices)   # whatever changes the output
        left = max(deadline - time.monotonic(), 0.0)
        probs, status = predict_chunked(predictors, test, cache, cfg.chunk_rows, cfg.tta, left, cache_key=chunk_key)
        test_probs.append(probs)
        statuses.append({"run": key, "kind": run.kind, **status})
        write_csv(prob_frame(test["id"], probs), out_dir / f"test_preds_{key}.csv")
        release_models(predictors)   # this run's models leave the GPUs before the next run's load
        del predictors

    # Ensemble weights, temperature and rules are fitted on the rows every run held out.
    common = valid[0].index
    for v in valid[1:]:
        common = common.intersection(v.index)
    if len(common) == 0:
        raise ValueError(f"runs {cfg.runs} share no validation ids; train them on the same train file")
    labels = valid[0].loc[common, "label"].to_numpy(dtype=np.int64)
    valid_probs = [v.loc[common, list(WINNER_COLUMNS)].to_numpy(dtype=np.float64) for v in valid]
    weights, temperature = fit_blend(valid_probs, labels, cfg.ensemble, cfg.calibrate)
    valid_final = apply_blend(valid_probs, weights, temperature)
    # Weights and temperature fitted on these same rows flatter them; the cross-fitted figure does not.
    valid_crossfit = crossfit_blend(valid_probs, labels, cfg.ensemble, cfg.calibrate)
    # Rule masks of the held-out rows come from the flags the runs stored with them (no train file).
    masks = heldout_rule_masks(valid, common) if cfg.postprocess else None
    rules = fit_rules(masks, valid_final, labels) if masks is not None else None
    if rules is not None:
        valid_final = apply_rules(masks, valid_final, rules)
        valid_crossfit = apply_rules(masks, valid_crossfit, rules)

    prior = np.bincount(labels, minlength=3) / len(labels)
    final = apply_blend(test_probs, weights, temperature, fallback=prior)
    fallback = fallback_rows(test["id"], test_probs, keys)
    if len(fallback):
        write_csv(fallback, out_dir / "fallback_rows.csv")
        log.warning("%d of %d test rows lack a prediction from some run (time budget); %d got the class prior; "
                    "see fallback_rows.csv", len(fallback), len(test), int((fallback["runs_predicted"] == "").sum()))
    if rules is not None:
        final = apply_rules(test, final, rules)
    sub_path = write_submission(test["id"], final, stage.submission_file, layout)
    validate_submission(sub_path, cfg.test_path)
    # The file to upload: <output_dir>/submission.csv, and /kaggle/working/submission.csv in a Kaggle kernel.
    copies = [Path(cfg.output_dir) / sub_path.name] + ([KAGGLE_WORKING / sub_path.name]
                                                         if detect_env() == "kaggle" else [])
    for copy in copies:
        validate_submission(write_submission(test["id"], final, copy, layout), cfg.test_path)

    if cfg.pseudo_label_path:
        if not all(s["complete"] for s in statuses):
            raise RuntimeError("pseudo-labels need a prediction for every test row; the time budget stopped early")
        write_soft_file(test, final, cfg.pseudo_label_path, {
            "input": cfg.test_path, "tta": cfg.tta, "temperature": temperature, "rules": rules is not None,
            "runs": [{"run": k, "path": str(r.path), "identity": r.identity, "weight": float(w)}
                     for k, r, w in zip(keys, runs, weights)]},
            inputs=[cfg.test_path, cfg.train_path])

    summary = {
        "runs": keys, "weights": dict(zip(keys, weights.tolist())),
        # what the blend was fitted on, by content: pseudo-labelling with this blend refuses a member changed since
        "members": [{"run": k, "name": r.name, "path": str(r.path), "identity": r.identity}
                    for k, r in zip(keys, runs)],
        "temperature": temperature, "tta": cfg.tta, "devices": devices, "n_test": len(test),
        "n_valid_common": len(common), "valid_per_run": {k: summarise(labels, p) for k, p in zip(keys, valid_probs)},
        "valid_final_insample": summarise(labels, valid_final),
        "valid_final_crossfit": summarise(labels, valid_crossfit),
        "rules": rules.report if rules is not None else ([] if not cfg.postprocess else [
            {"rule": "all", "accepted": False, "reason": "no run's held-out file has rule flags (older runs)"}]),
        "layout": layout, "provenance": provenance,
        "status": statuses, "seconds": time.monotonic() - start,
        "complete": all(s["complete"] for s in statuses), "submission": [str(c) for c in copies],
        "fallback": {"rows": len(fallback), "rows_on_prior": int((fallback["runs_predicted"] == "").sum()),
                     "first_ids": fallback["id"].astype(str).head(10).tolist(),
                     "file": "fallback_rows.csv" if len(fallback) else None},
    }
    write_json(summary, stage.metrics_file)
    return summary
