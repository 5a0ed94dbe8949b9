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

import hashlib
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Sequence

import numpy as np
import pandas as pd

from .artifacts import CONFIG, METRICS, heldout_file
from .config import RunConfig
from .data import WINNER_COLUMNS, swap_ab, swap_probs
from .io import atomic_path, comma_list, read_json

log = logging.getLogger(__name__)
Predictor = Callable[[pd.DataFrame], np.ndarray]


def tta_predict(predict: Predictor, df: pd.DataFrame, tta: bool = True) -> np.ndarray:
    """Predict ``df``; with ``tta`` average with the un-swapped prediction on ``swap_ab(df)``."""
    probs = np.asarray(predict(df), dtype=np.float64)
    if not tta:
        return probs
    return (probs + swap_probs(np.asarray(predict(swap_ab(df)), dtype=np.float64))) / 2


def _chunk_file(cache_dir: Path, k: int, rows: pd.DataFrame, cache_key: str = "") -> Path:
    """Chunk k's cache file, named by a hash of its rows' ids and texts and ``cache_key`` (run + settings)."""
    from .data import content_fingerprint

    key = hashlib.sha256(f"{cache_key}\n{content_fingerprint(rows)}".encode()).hexdigest()[:20]
    return cache_dir / f"chunk_{k:05d}_{key}.npz"


def _load_chunk(path: Path, ids: np.ndarray) -> np.ndarray | None:
    """A finished chunk's probabilities if the file exists and holds exactly these ids, else None."""
    if not path.exists():
        return None
    with np.load(path, allow_pickle=False) as z:
        if z["ids"].astype(str).tolist() != ids.astype(str).tolist():
            log.warning("%s holds other ids (test file changed?); recomputing it", path)
            return None
        if not np.isfinite(z["probs"]).all():
            log.warning("%s holds non-finite probabilities (written by an older version); recomputing it", path)
            return None
        return z["probs"]


def _save_chunk(path: Path, ids: np.ndarray, probs: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, ids=ids.astype(str), probs=probs)


def predict_chunked(predictors: Predictor | Sequence[Predictor], df: pd.DataFrame, cache_dir: str | Path | None = None,
                    chunk_rows: int = 2048, tta: bool = True, time_budget_s: float | None = None,
                    progress: bool = True, cache_key: str = "") -> tuple[np.ndarray, dict]:
    """TTA probabilities for every row (NaN where the time budget stopped) and a status dict.

    ``predictors`` may be a list (one per device); chunk k goes to predictor ``k % len(predictors)``.
    With ``cache_dir`` set, finished chunks are saved and reused on the next call when the chunk's ids and
    texts and ``cache_key`` (the run's manifest and the inference settings) are the same.
    ``time_budget_s`` None: no limit; 0 or less: no new chunk starts (cached chunks are still used).
    """
    predictors = list(predictors) if isinstance(predictors, (list, tuple)) else [predictors]
    n = len(df)
    starts = list(range(0, n, chunk_rows)) or [0]
    cache = Path(cache_dir) if cache_dir is not None else None
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
    ids = df["id"].to_numpy()
    out = np.full((n, 3), np.nan)
    outcome = [""] * len(starts)   # per chunk: reused | computed | skipped_for_time
    begin = time.time()
    deadline = begin + time_budget_s if time_budget_s is not None else None
    slowest = [0.0]

    def run_chunk(k: int) -> str:
        lo, hi = starts[k], min(starts[k] + chunk_rows, n)
        if hi <= lo:
            return "computed"
        path = _chunk_file(cache, k, df.iloc[lo:hi], f"{cache_key}|tta={tta}") if cache is not None else None
        done = _load_chunk(path, ids[lo:hi]) if path is not None else None
        if done is not None:
            out[lo:hi] = done
            return "reused"
        if deadline is not None and time.time() + slowest[0] >= deadline:
            return "skipped_for_time"
        t0 = time.time()
        probs = tta_predict(predictors[k % len(predictors)], df.iloc[lo:hi].reset_index(drop=True), tta)
        slowest[0] = max(slowest[0], time.time() - t0)
        from .predict import check_finite
        check_finite(probs, ids[lo:hi], f"chunk {k}")   # a NaN chunk stops the run and is never cached
        if path is not None:
            _save_chunk(path, ids[lo:hi], probs)
            for other in cache.glob(f"chunk_{k:05d}_*.npz"):   # this chunk's results for other content/settings
                if other != path:
                    other.unlink(missing_ok=True)
        out[lo:hi] = probs
        return "computed"

    def run_worker(w: int) -> None:
        for k in range(w, len(starts), len(predictors)):
            outcome[k] = run_chunk(k)
            if bar is not None:
                bar.update(1)

    from tqdm.auto import tqdm
    bar = tqdm(total=len(starts), desc="chunks", unit="chunk") if progress else None
    try:
        if len(predictors) == 1:
            run_worker(0)
        else:
            with ThreadPoolExecutor(len(predictors)) as pool:
                list(pool.map(run_worker, range(len(predictors))))
    finally:
        if bar is not None:
            bar.close()
    status = {"chunks": len(starts), "seconds": time.time() - begin, "complete": bool(np.isfinite(out).all())}
    status.update({kind: outcome.count(kind) for kind in ("reused", "computed", "skipped_for_time")})
    return out, status


def run_kind(run_dir: str | Path) -> str:
    """'transformer' for a run with a saved model, 'baseline' for a feature-model run."""
    run_dir = Path(run_dir)
    info_path = run_dir / "run_info.json"
    if info_path.exists():
        return read_json(info_path)["kind"]
    if (run_dir / "model").is_dir() or fold_run_dirs(run_dir):
        return "transformer"
    if read_json(run_dir / CONFIG).get("config_class") == "BaselineConfig":
        return "baseline"
    raise ValueError(f"{run_dir}: neither a model/ folder nor a baseline run; cannot predict with it")


def fold_run_dirs(run_dir: str | Path) -> list[Path]:
    """The fold sub-runs (``fold<k>/`` with a saved model) of an all-fold run, by fold number."""
    found = [p for p in Path(run_dir).glob("fold*") if p.name[4:].isdigit() and (p / "model").is_dir()]
    return sorted(found, key=lambda p: int(p.name[4:]))


def run_fingerprint(run_dir: str | Path, tta: bool, **settings: Any) -> str:
    """Cache key of a run's chunks: the run's manifest hash (every artifact), TTA and the other settings."""
    from .runs import manifest_hash

    data = json.dumps({"manifest": manifest_hash(run_dir), "tta": tta, **settings}, sort_keys=True, default=str)
    return hashlib.sha256(data.encode()).hexdigest()[:16]


def transformer_predictor(run_dir: str | Path, device: str | None = None, precision: str = "auto",
                          quantization: str | None = None, batch_tokens: int | None = None,
                          progress: bool = False) -> Predictor:
    """A predictor for a saved transformer run (LoRA adapter + head, or full weights) on one device.

    ``batch_tokens`` None: 16384 on a GPU, 2048 on CPU (measured faster there: less padding, better cache use).
    An all-fold run (``fold<k>/`` sub-runs, no ``model/``) predicts the mean of its fold models' probabilities.
    """
    import torch

    folds = fold_run_dirs(run_dir) if not (Path(run_dir) / "model").is_dir() else []
    if folds:
        # Each fold model is loaded once and kept (fine for encoders; a LoRA run holds one base per fold).
        members = [transformer_predictor(f, device, precision, quantization, batch_tokens, progress) for f in folds]
        return lambda df: np.mean([np.asarray(m(df), dtype=np.float64) for m in members], axis=0)

    from .models import load_for_inference, resolve_precision
    from .predict import predict_probs
    from .text import INSTRUCTION, encode_pairs

    # Precision follows this predictor's own GPU (a T4 gets fp16 even when the run trained in bf16 on an A100).
    precision = resolve_precision(precision, device)
    if quantization == "auto":
        quantization = auto_quantization(run_dir, device)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[precision]
    model, tokenizer, text_cfg, task = load_for_inference(run_dir, device=device, dtype=dtype,
                                                          quantization=quantization)
    suffix = INSTRUCTION if task == "next_token" else ""
    on_gpu = str(device or next(model.parameters()).device).startswith("cuda")
    batch_tokens = batch_tokens or (16384 if on_gpu else 2048)

    def predict(df: pd.DataFrame) -> np.ndarray:
        ids = encode_pairs(tokenizer, df, text_cfg, suffix=suffix)
        return predict_probs(model, ids, task=task, batch_tokens=batch_tokens, device=device, progress=progress,
                             row_ids=df["id"].to_numpy() if "id" in df.columns else None)

    return predict


def auto_quantization(run_dir: str | Path, device: str | None) -> str | None:
    """'4bit' for a LoRA run whose 16-bit weights would fill > 60% of this GPU (a 9B on a T4), 'none' if they fit,
    None (the run's own setting) off CUDA. Decided by :func:`kagglelib.plan.resolve_quantization`."""
    import torch

    from .plan import model_shape, resolve_quantization

    if not torch.cuda.is_available() or not str(device or "cuda").startswith("cuda"):
        return None
    cfg = read_json(Path(run_dir) / CONFIG)
    memory = torch.cuda.get_device_properties(torch.device(device or "cuda")).total_memory
    return resolve_quantization("auto", cfg, model_shape(cfg["backbone"]), memory)


def baseline_predictor(run_dir: str | Path) -> Predictor:
    """A predictor for a saved feature-model run (02): its saved featurizer state + fold models (no trainer import)."""
    from .predictor import load_baseline

    return load_baseline(run_dir)


def release_models(*holders: Any) -> None:
    """Drop the references the caller passed (predictors closing over models), collect, and empty the CUDA cache.

    Called between runs so the next run's models never share a GPU with the previous ones (two 9B per T4 = OOM).
    """
    import gc

    import torch

    for h in holders:
        if isinstance(h, list):
            h.clear()
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def visible_devices(devices: str = "auto") -> list[str]:
    """'auto' -> every visible CUDA device (else ['cpu']); or a comma list such as 'cuda:0,cuda:1'."""
    if devices != "auto":
        return comma_list(devices)
    import torch

    n = torch.cuda.device_count()
    return [f"cuda:{i}" for i in range(n)] or ["cpu"]


def run_predictors(run_dir: str | Path, devices: Sequence[str], precision: str = "auto",
                   quantization: str | None = None, batch_tokens: int | None = None) -> list[Predictor]:
    """One predictor per device for a transformer run; one predictor for a baseline run."""
    if run_kind(run_dir) == "baseline":
        return [baseline_predictor(run_dir)]
    if run_kind(run_dir) == "pairwise":   # frozen encoder + heads: one CPU/GPU-agnostic predictor
        from .pairwise import load_predictor as pairwise_predictor

        return [pairwise_predictor(run_dir)]
    return [transformer_predictor(run_dir, device=d, precision=precision, quantization=quantization,
                                  batch_tokens=batch_tokens) for d in devices]


def load_predictor(run: str | Path, output_dir: str | Path | None = None, device: str | None = None) -> Predictor:
    """A predictor for a run given by name (under output_dir/runs or /kaggle/input) or folder."""
    from .paths import find_run

    return run_predictors(find_run(run, output_dir), [device or visible_devices()[0]])[0]


def predict_pair(prompt: str | list[str], response_a: str | list[str], response_b: str | list[str],
                 predict: Predictor, tta: bool = True) -> dict[str, float]:
    """Probabilities that A wins / B wins / tie for one battle (texts or lists of turns)."""
    as_turns = (lambda x: [x] if isinstance(x, str) else list(x))
    df = pd.DataFrame({"id": [0], "prompt": [as_turns(prompt)], "response_a": [as_turns(response_a)],
                       "response_b": [as_turns(response_b)], "model_a": [""], "model_b": [""]})
    p = tta_predict(predict, df, tta)[0]
    return {"winner_model_a": float(p[0]), "winner_model_b": float(p[1]), "winner_tie": float(p[2])}


@dataclass
class InferenceConfig(RunConfig):
    """Notebook 05 parameters: which runs to blend and how to run them (None: the profile's default)."""

    run_name: str = "submission"          # the submission's own folder under <output_dir>/runs/
    runs: list = field(default_factory=lambda: ["baseline", "encoder"])  # run names or folders to blend
    tta: bool = True                      # swap TTA: predict A/B and B/A, average after un-swapping
    ensemble: str = "fit"                 # fit: weights minimising validation log loss | equal
    calibrate: bool = True                # temperature fitted on the blended validation predictions
    postprocess: bool = True              # identical / empty-response rules, kept only if they help on validation
    chunk_rows: int | None = None         # rows per resumable chunk
    batch_tokens: int | None = None       # token budget per batch (rows x longest row)
    devices: str = "auto"                 # auto: every visible GPU (else cpu) | "cuda:0,cuda:1" | "cpu"
    precision: str = "auto"               # auto | bf16 | fp16 | fp32 (fp32 on CPU)
    quantization: str | None = None       # None: profile's | "" keeps each run's | auto (4bit when 16-bit weights > 60% of the GPU) | none | 8bit | 4bit
    time_budget_s: float | None = None    # stop starting chunks after this many seconds (Kaggle: 9 h); 0: none

    pseudo_label_path: str = ""           # also write the blended test probabilities as a soft-labelled train file

    TRAIN_OPTIONAL: ClassVar[bool] = True  # train_path: "" = not read; else checked against the runs' provenance

    PROFILE_DEFAULTS: ClassVar[dict[str, dict[str, Any]]] = {
        "cpu-sample": {"chunk_rows": 256, "batch_tokens": 2048, "time_budget_s": 3600.0, "quantization": ""},  # CPU: small batches are faster
        # Plan (kaggle-t4, runs gemma_lora,encoder): the A100-trained 9B loads 4-bit ("auto": its 17 GiB of 16-bit
        # weights exceed a T4), ~10 GiB per T4 at 16384 tokens/batch, one model per T4; see README for the hours.
        "kaggle-t4": {"chunk_rows": 2048, "batch_tokens": 16384, "time_budget_s": 8.5 * 3600, "quantization": "auto"},
        # Plan: the 9B in bf16 with eager attention (no flash-attn) needs 37 GiB of an A100-40 at 65536 tokens per
        # batch, 28 GiB at 32768.
        "colab-a100": {"chunk_rows": 4096, "batch_tokens": 32768, "time_budget_s": 20 * 3600.0, "quantization": "auto"},
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.runs, str):
            self.runs = comma_list(self.runs)
        if not self.runs:
            raise ValueError("runs is empty: name at least one run folder to predict with")
        if self.ensemble not in ("fit", "equal"):
            raise ValueError(f"ensemble must be 'fit' or 'equal', got {self.ensemble!r}")
        if self.quantization not in ("", "auto", "none", "4bit", "8bit"):
            raise ValueError(f"quantization must be '', auto, none, 4bit or 8bit, got {self.quantization!r}")
        if self.quantization == "8bit":
            from .models import warn_8bit
            warn_8bit()


def validation_predictions(run_dir: Path) -> pd.DataFrame:
    """A run's held-out predictions (oof.csv or valid_preds.csv), indexed by id as str."""
    from .ensemble import read_predictions

    path = heldout_file(run_dir)
    if path is None:
        raise FileNotFoundError(f"{run_dir}: no oof.csv or valid_preds.csv to fit the ensemble on")
    preds = read_predictions(str(path))
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


def submission_layout(run_dirs: Sequence[Path], valid: Sequence[pd.DataFrame]) -> str:
    """The label layout (kaggle | wsdm) every run recorded; an error when runs disagree or cannot tell."""
    from .predictor import read_run_info

    layouts = {}
    for run_dir, v in zip(run_dirs, valid):
        info = read_run_info(run_dir)
        if info is not None:
            layouts[run_dir.name] = info["layout"]
        elif "label" in v.columns and (v["label"] == 2).any():   # ties exist only in the Kaggle 3-class layout
            layouts[run_dir.name] = "kaggle"
        else:
            raise ValueError(f"{run_dir}: no run_info.json recording its label layout (kaggle or wsdm) and its "
                             "held-out labels cannot tell; re-run it (02, 03 or 04) with this kagglelib")
    if len(set(layouts.values())) > 1:
        raise ValueError(f"runs disagree on the label layout {layouts}: blend runs trained on one competition's data")
    return next(iter(layouts.values()))


def heldout_rule_masks(valid: Sequence[pd.DataFrame], ids: pd.Index) -> dict[str, np.ndarray] | None:
    """Rule masks of the common held-out rows, from the flags a run stored with them (None: no run has them)."""
    from .predictor import RULE_FLAGS

    for v in valid:
        if all(c in v.columns for c in RULE_FLAGS):
            return {k: v.loc[ids, k].to_numpy(dtype=bool) for k in RULE_FLAGS}
    return None


def check_provenance(train_path: str, run_dirs: Sequence[Path]) -> list[dict[str, Any]]:
    """Compare a train file's content fingerprint with the one each run recorded; warn about mismatches."""
    from .data import content_fingerprint, load_training
    from .predictor import read_run_info

    fingerprint = content_fingerprint(load_training(train_path)) if train_path else None
    rows = []
    for run_dir in run_dirs:
        source = (read_run_info(run_dir) or {}).get("provenance", {})
        row = {"run": run_dir.name, "train_file": source.get("train_file"), "n_rows": source.get("n_rows"),
               "fingerprint": (source.get("content_fingerprint") or "")[:12] or None, "matches_train_path": None}
        if fingerprint is not None:
            row["matches_train_path"] = source.get("content_fingerprint") == fingerprint
            if not row["matches_train_path"]:
                log.warning("run %s was not trained on %s (content fingerprints differ%s); its held-out figures "
                            "and blend weights may not carry over", run_dir.name, train_path,
                            "" if source else ": the run records none")
        rows.append(row)
    return rows


def run_inference(cfg: InferenceConfig) -> dict[str, Any]:
    """Predict the test file with every run (TTA, chunks, devices), blend, calibrate, write submission.csv.

    The submission run is staged and committed atomically (:mod:`kagglelib.runs`); chunk caches live in
    ``<output_dir>/cache/inference/<run>/`` so that they survive a kill.
    """
    from .runs import staged_run

    with staged_run(cfg.output_dir, cfg.run_name) as stage:
        return _run_inference(cfg, stage.path)


def _run_inference(cfg: InferenceConfig, out_dir: Path) -> dict[str, Any]:
    from . import metrics
    from .config import save_config
    from .data import load_arena, prob_frame
    from .ensemble import apply_blend, apply_rules, crossfit_blend, fit_blend, fit_rules
    from .io import write_csv, write_json
    from .paths import KAGGLE_WORKING, detect_env, find_run
    from .submission import validate_submission, write_submission

    start = time.time()
    save_config(cfg, out_dir, notebook="05_tta_inference")
    test = load_arena(cfg.test_path)
    run_dirs = [find_run(r, cfg.output_dir) for r in cfg.runs]
    provenance = check_provenance(cfg.train_path, run_dirs)   # reads train_path only when it is set
    # The submission layout comes from the run folders (the train file is not read; it is not in Kaggle's kernel),
    # checked before hours of inference: "wsdm" means an id,winner submission.
    valid = [validation_predictions(d) for d in run_dirs]   # read once: the layout now, the blend below
    layout = submission_layout(run_dirs, valid)
    devices = visible_devices(cfg.devices)
    deadline = start + cfg.time_budget_s if cfg.time_budget_s is not None else None   # 0: no chunk starts

    test_probs, statuses = [], []
    for run_dir in run_dirs:
        predictors = run_predictors(run_dir, devices, cfg.precision, cfg.quantization or None, cfg.batch_tokens)
        cache = Path(cfg.output_dir) / "cache" / "inference" / run_dir.name
        key = run_fingerprint(run_dir, cfg.tta, precision=cfg.precision, quantization=cfg.quantization,
                              batch_tokens=cfg.batch_tokens, devices=devices,
                              max_length=getattr(cfg, "max_length", None))   # any setting that changes the output
        left = None if deadline is None else max(deadline - time.time(), 0.0)
        probs, status = predict_chunked(predictors, test, cache, cfg.chunk_rows, cfg.tta, left, cache_key=key)
        test_probs.append(probs)
        statuses.append({"run": run_dir.name, "kind": run_kind(run_dir), **status})
        write_csv(prob_frame(test["id"], probs), out_dir / f"test_preds_{run_dir.name}.csv")
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
    fallback = fallback_rows(test["id"], test_probs, [d.name for d in run_dirs])
    if len(fallback):
        write_csv(fallback, out_dir / "fallback_rows.csv")
        log.warning("%d of %d test rows lack a prediction from some run (time budget); %d got the class prior; "
                    "see fallback_rows.csv", len(fallback), len(test), int((fallback["runs_predicted"] == "").sum()))
    if rules is not None:
        final = apply_rules(test, final, rules)
    sub_path = write_submission(test["id"], final, out_dir / "submission.csv", layout)
    validate_submission(sub_path, cfg.test_path)
    # The file to upload: <output_dir>/submission.csv, and /kaggle/working/submission.csv in a Kaggle kernel.
    copies = [Path(cfg.output_dir) / "submission.csv"] + ([KAGGLE_WORKING / "submission.csv"]
                                                         if detect_env() == "kaggle" else [])
    for copy in copies:
        validate_submission(write_submission(test["id"], final, copy, layout), cfg.test_path)

    if cfg.pseudo_label_path:
        from .pseudo import write_soft_file
        if not all(s["complete"] for s in statuses):
            raise RuntimeError("pseudo-labels need a prediction for every test row; the time budget stopped early")
        write_soft_file(test, final, cfg.pseudo_label_path, {
            "input": cfg.test_path, "tta": cfg.tta, "temperature": temperature, "rules": rules is not None,
            "runs": [{"run": d.name, "path": str(d), "weight": float(w)} for d, w in zip(run_dirs, weights)]})

    summary = {
        "runs": [d.name for d in run_dirs], "weights": dict(zip([d.name for d in run_dirs], weights.tolist())),
        "temperature": temperature, "tta": cfg.tta, "devices": devices, "n_test": len(test),
        "n_valid_common": len(common), "valid_per_run": {d.name: metrics.summarise(labels, p)
                                                         for d, p in zip(run_dirs, valid_probs)},
        "valid_final_insample": metrics.summarise(labels, valid_final),
        "valid_final_crossfit": metrics.summarise(labels, valid_crossfit),
        "rules": rules.report if rules is not None else ([] if not cfg.postprocess else [
            {"rule": "all", "accepted": False, "reason": "no run's held-out file has rule flags (older runs)"}]),
        "layout": layout, "provenance": provenance,
        "status": statuses, "seconds": time.time() - start,
        "complete": all(s["complete"] for s in statuses), "submission": [str(c) for c in copies],
        "fallback": {"rows": len(fallback), "rows_on_prior": int((fallback["runs_predicted"] == "").sum()),
                     "first_ids": fallback["id"].astype(str).head(10).tolist(),
                     "file": "fallback_rows.csv" if len(fallback) else None},
    }
    write_json(summary, out_dir / METRICS)
    return summary
