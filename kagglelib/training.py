"""Fine-tuning with the Hugging Face Trainer for every backbone and both tasks (notebooks 03 and 04).

``train(cfg)`` loads the train file, holds out one fold of :func:`kagglelib.data.make_folds`, encodes with
:func:`kagglelib.text.encode_pairs`, builds the model with :mod:`kagglelib.models`, trains with dynamic
padding, length-grouped batches, gradient accumulation, warmup + cosine/linear decay, label smoothing,
A/B swap augmentation, optional R-Drop and EMA of the trainable weights, early stopping on validation log
loss, checkpoints every N steps with resume, and writes the run folder::

    runs/<run_name>/config.json  metrics.json  valid_preds.csv  loss_curve.png  model/  [checkpoints/]

Works unchanged under ``torchrun``/``accelerate launch`` (DDP; gloo on CPU)::

    torchrun --nproc_per_node 2 -m kagglelib.training --config cfg.json
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import logging
import os
import resource
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import SequentialSampler
from transformers import EarlyStoppingCallback, Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_utils import get_last_checkpoint

from . import data, metrics, models, runs
from .artifacts import METRICS
from .calibration import softmax
from .config import METADATA_KEYS, RunConfig, from_params, save_config
from .io import read_json, save_figure, write_csv, write_json
from .predict import forward_logits, pad_batch, padding_side
from .predictor import provenance, rule_flags, write_run_info
from .text import INSTRUCTION, encode_pairs

log = logging.getLogger(__name__)
SWAP_MODES = ("none", "concat", "pair")
METHODS = ("finetune", "pairwise")   # EncoderTrainConfig.method


@dataclass
class TrainConfig(RunConfig):
    """All knobs of one fine-tuning run; ``None`` = the profile's value (see the subclasses' tables)."""

    # model (names shared with models.ModelSpec)
    backbone: str | None = None            # hub id / folder / Kaggle input name / minilm / tiny-gemma2 / tiny-deberta
    task: str = "classifier"               # classifier | next_token (causal LM scores "0"/"1"/"2")
    head_layers: int | None = None         # 1 or 3
    head_dropout: float = 0.1
    head_prior_init: bool = True           # start the head's bias at log(class prior of the training fold)
    use_lora: bool | None = None           # False = full fine-tuning
    lora_r: int | None = None
    lora_alpha: int | None = None
    lora_dropout: float = 0.05
    lora_targets: str = ""                 # "" = default for the model_type
    lora_init: str | None = None           # default | pissa | pissa_niter_4
    quantization: str = "none"             # none | 4bit | 8bit
    freeze_layers: int | None = None       # first N transformer layers frozen (no LoRA / no gradient)
    gradient_checkpointing: bool | None = None
    attn_implementation: str = "auto"
    precision: str | None = None           # auto | bf16 | fp16 | fp32
    allow_download: bool | None = None
    # text (names shared with text.TextConfig)
    max_length: int | None = None
    prompt_tokens: int | None = None
    response_tokens: int | None = None
    head_ratio: float = 0.5
    # data
    fold: int = 0                          # validation fold of data.make_folds
    folds: str = ""                        # "" = just ``fold``; "all" or "0,2": each fold in runs/<name>/fold<k>/ + oof.csv
    n_folds: int = 5
    fold_seed: int = 42
    max_train_rows: int | None = None      # 0 = all training-fold rows
    max_valid_rows: int | None = None      # 0 = the whole validation fold
    # optimisation
    epochs: float | None = None
    max_steps: int | None = None           # > 0 overrides epochs
    batch_size: int | None = None          # rows (pairs) per device per step
    eval_batch_size: int | None = None
    grad_accum: int | None = None
    lr: float | None = None
    head_lr: float | None = None           # learning rate of the classification head (None: the profile's)
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    scheduler: str | None = None           # cosine | linear
    label_smoothing: float = 0.0
    swap_aug: str | None = None            # none | concat (both orders as rows) | pair (both orders in one batch)
    rdrop_alpha: float = 0.0               # > 0: R-Drop symmetric-KL weight
    ema_decay: float = 0.0                 # > 0: EMA of the trainable weights, used for eval and the saved model
    early_stopping_patience: int = 0       # > 0: stop after this many evals without a better valid log loss, keep the best
    eval_steps: int | None = None          # 0 = evaluate once per epoch
    save_steps: int | None = None          # 0 = checkpoint at each evaluation
    save_total_limit: int = 2
    resume: str = "auto"                   # auto = latest checkpoint of this run if any; "" = fresh; or a path
    keep_checkpoints: bool = False         # keep checkpoints/ after a successful run
    seed: int = 42
    logging_steps: int | None = None
    progress: bool = True                  # tqdm bars
    # distillation: loss = (1 - alpha) * CE(labels) + alpha * T^2 * KL(teacher_T || student_T)
    teacher: str = ""                      # "" = none; a run (its oof.csv / valid_preds.csv) or a CSV id,winner_model_a,...
    distill_alpha: float = 0.5             # weight of the teacher term
    distill_temperature: float = 2.0       # T: both distributions softened by T
    teacher_other_data: bool = False       # True: the teacher never trained on these rows (skips the out-of-fold check)

    def __post_init__(self) -> None:
        super().__post_init__()
        if getattr(self, "method", "finetune") not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        missing = [f.name for f in dataclasses.fields(self) if getattr(self, f.name) is None]
        if missing:
            raise ValueError(f"{type(self).__name__}: no value and no {self.profile} default for {missing}")
        if self.swap_aug not in SWAP_MODES:
            raise ValueError(f"swap_aug must be one of {SWAP_MODES}, got {self.swap_aug!r}")
        if self.scheduler not in ("cosine", "linear"):
            raise ValueError(f"scheduler must be cosine or linear, got {self.scheduler!r}")
        if not 0 <= self.fold < self.n_folds:
            raise ValueError(f"fold must be in [0, {self.n_folds}), got {self.fold}")
        self.folds = ",".join(map(str, self.folds)) if isinstance(self.folds, (list, tuple)) else str(self.folds)
        fold_list(self)   # validates folds
        if not 0 <= self.distill_alpha <= 1:
            raise ValueError(f"distill_alpha must be in [0, 1], got {self.distill_alpha}")
        if not self.distill_temperature > 0:
            raise ValueError(f"distill_temperature must be > 0, got {self.distill_temperature}")
        models.spec_from(self)   # validates the model fields early
        models.text_config_from(self)   # validates the text fields early

    @property
    def smoke(self) -> bool:
        """True for randomly initialised tiny backbones: plumbing checks, never results."""
        return self.backbone in models.SMOKE_BACKBONES


# What the two GPU profiles of each class share (cpu-sample differs in every one of these keys).
_DECODER_GPU = dict(head_layers=1, lora_r=16, lora_alpha=32, lora_init="default", gradient_checkpointing=True,
                    prompt_tokens=256, response_tokens=768, max_train_rows=0, max_valid_rows=0, max_steps=0, lr=1e-4,
                    head_lr=1e-4, swap_aug="concat", eval_steps=0, save_steps=200, logging_steps=10,
                    eval_batch_size=8, grad_accum=4)
_ENCODER_GPU = dict(method="finetune", backbone="microsoft/deberta-v3-large", freeze_layers=0, gradient_checkpointing=True,
                    prompt_tokens=256, response_tokens=512, lr=1e-5, head_lr=1e-4, scheduler="cosine",
                    swap_aug="concat", logging_steps=10)


@dataclass
class DecoderTrainConfig(TrainConfig):
    """Notebook 03: any decoder LM (Gemma-2, Qwen, Llama) with LoRA, as a classifier or next-token scorer."""

    run_name: str = "gemma_lora"
    # the same on every profile
    use_lora: bool = True
    freeze_layers: int = 0
    epochs: float = 1.0
    batch_size: int = 4
    scheduler: str = "cosine"
    PROFILE_DEFAULTS: ClassVar[dict[str, dict[str, Any]]] = {
        # `python -m kagglelib.plan --profile colab-a100 --notebook 03`: 9B bf16 LoRA, 27 GiB of an A100-40's 39,
        # 3.6e18 FLOP, ~9.6 h at 35% of 312 TFLOP/s (Colab Pro+ sessions: 24 h; checkpoints every 200 steps).
        "colab-a100": {**_DECODER_GPU, "backbone": "google/gemma-2-9b-it", "precision": "bf16",
                       "allow_download": True, "max_length": 2048},
        # The 9B does not fit a 12 h T4 session (plan: 3.0e18 FLOP, ~60 h 4-bit on one T4). Gemma-2-2B in fp16
        # (4.9 GiB of weights, no 4-bit dequantisation cost) over the whole training fold once, without swap
        # copies (TTA covers order at inference): 3.7e17 FLOP, 6.9 GiB peak, ~5.7 h, half the session spare.
        "kaggle-t4": {**_DECODER_GPU, "backbone": "google/gemma-2-2b-it", "precision": "fp16",
                      "allow_download": False, "max_length": 1024, "swap_aug": "none"},
        # Smoke run on CPU: random tiny Gemma-2, exercises LoRA + PiSSA + 3-layer head + checkpoint/resume.
        "cpu-sample": dict(backbone="tiny-gemma2", head_layers=3, lora_r=8, lora_alpha=16, lora_init="pissa_niter_4",
                           gradient_checkpointing=False, precision="fp32", allow_download=False, max_length=192,
                           prompt_tokens=48, response_tokens=64, max_train_rows=64, max_valid_rows=48, max_steps=12,
                           eval_batch_size=32, grad_accum=1, lr=2e-3, head_lr=2e-3, swap_aug="pair", eval_steps=6,
                           save_steps=6, logging_steps=2),
    }


@dataclass
class EncoderTrainConfig(TrainConfig):
    """Notebook 04: DeBERTa-v3 / BERT-family / MiniLM classifier (full fine-tune by default)."""

    run_name: str = "encoder"
    # the same on every profile
    head_layers: int = 1
    use_lora: bool = False
    lora_r: int = 16
    lora_alpha: int = 32
    lora_init: str = "default"
    max_train_rows: int = 0
    max_valid_rows: int = 0
    epochs: float = 2.0
    max_steps: int = 0
    eval_steps: int = 0
    save_steps: int = 500
    # method="pairwise" (kagglelib.pairwise): frozen encoder over whole texts + swap-symmetric head, every fold
    method: str | None = None              # finetune | pairwise
    window_tokens: int = 128               # pairwise: tokens per encoder window (each text read in windows)
    max_windows: int = 4                   # pairwise: windows per text (beyond: the first ones and the last)
    pairwise_max_chars: int = 6000         # pairwise: head+tail character cut before tokenising
    pairwise_components: str = "8,32"      # pairwise: projection sizes the inner CV chooses from (0 = whole vectors)
    pairwise_l2: str = "0.1,0.3,1.0"       # pairwise: weight penalties the inner CV chooses from
    pairwise_emb_scale: float = 1.0        # pairwise: scale of the embedding columns after standardising
    pairwise_hidden: int = 64              # pairwise: hidden width of a 3-layer head
    pairwise_steps: int = 200              # pairwise: full-batch Adam steps per head
    pairwise_lr: float = 1e-2              # pairwise: Adam learning rate of the head
    PROFILE_DEFAULTS: ClassVar[dict[str, dict[str, Any]]] = {
        # Plan: without checkpointing 8x1536 needs ~64 GiB of activations (DeBERTa's 16 heads x 1536^2 scores per
        # layer); with it 12.8 GiB of an A100-40, ~1.2 h.
        "colab-a100": {**_ENCODER_GPU, "precision": "bf16", "allow_download": True, "max_length": 1536,
                       "batch_size": 8, "eval_batch_size": 16, "grad_accum": 2},
        # Plan: full fine-tune fp16, 9.8 GiB of 15, 3.9e17 FLOP, ~5.7 h on one T4 (2 epochs, swap copies).
        "kaggle-t4": {**_ENCODER_GPU, "precision": "fp16", "allow_download": False, "max_length": 1024,
                      "batch_size": 4, "eval_batch_size": 8, "grad_accum": 4},
        # Real pretrained MiniLM on the bundled sample. Fine-tuning it on ~900 rows scores worse than the class
        # prior out of fold (1.1098); the frozen pairwise recipe reads every text whole and learns (README).
        "cpu-sample": dict(method="pairwise", backbone="minilm", freeze_layers=1, gradient_checkpointing=False, precision="fp32",
                           allow_download=False, max_length=256, prompt_tokens=32, response_tokens=96, batch_size=8,
                           eval_batch_size=64, grad_accum=1, lr=1e-4, head_lr=3e-3, scheduler="linear",
                           swap_aug="none", logging_steps=20),
    }


# config_class -> class; "GemmaTrainConfig" stays so runs saved before the rename still load.
CONFIG_CLASSES = {"TrainConfig": TrainConfig, "DecoderTrainConfig": DecoderTrainConfig,
                  "GemmaTrainConfig": DecoderTrainConfig, "EncoderTrainConfig": EncoderTrainConfig}


def fold_list(cfg: TrainConfig) -> list[int]:
    """The validation folds this run trains: ``folds`` ("all", "0,2") or the single ``fold``."""
    text = str(cfg.folds).strip()
    if not text:
        return [cfg.fold]
    if text == "all":
        return list(range(cfg.n_folds))
    try:
        ks = sorted({int(t) for t in text.split(",") if t.strip()})
    except ValueError:
        raise ValueError(f"folds must be '', 'all' or a comma list of fold numbers, got {cfg.folds!r}") from None
    if not ks or not all(0 <= k < cfg.n_folds for k in ks):
        raise ValueError(f"folds must be in [0, {cfg.n_folds}), got {cfg.folds!r}")
    return ks


# ---------------------------------------------------------------- data

@dataclass
class Splits:
    """Encoded training rows and validation rows (validation in its original order)."""

    train: list[dict[str, Any]]
    valid: list[dict[str, Any]]
    valid_df: pd.DataFrame
    train_labels: np.ndarray
    layout: str = "kaggle"                 # the train file's label layout: kaggle 3-class | wsdm A/B
    source: dict[str, Any] = field(default_factory=dict)   # provenance of the train file (never read back)
    report: dict[str, Any] = field(default_factory=dict)   # train files, duplicates, leakage


@functools.lru_cache(maxsize=2)
def _arena_with_folds(paths: str, stamp: tuple, n_folds: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Loaded train file(s) and folds (grouped by prompt across files), cached per (file versions, folds)."""
    df = data.load_training(paths)
    return df, data.make_folds(df, n_folds, seed)


def data_warnings(cfg: TrainConfig) -> list[str]:
    """The train files' load-report warnings (e.g. no ties at all), for the run's metrics."""
    return arena_with_folds(cfg)[0].attrs["load_report"].warnings


def arena_with_folds(cfg: TrainConfig) -> tuple[pd.DataFrame, np.ndarray]:
    """The run's training rows (all train files, de-duplicated) and their fold numbers."""
    files = data.split_paths(cfg.train_path)
    stamp = tuple(Path(f).stat().st_mtime_ns for f in files)
    return _arena_with_folds(",".join(files), stamp, cfg.n_folds, cfg.fold_seed)


def data_report(cfg: TrainConfig, df: pd.DataFrame, folds: np.ndarray) -> dict[str, Any]:
    """Rows per train file, duplicates dropped, and training prompts shared with the test file or other folds."""
    test = data.load_arena(cfg.test_path) if cfg.test_path and Path(cfg.test_path).exists() else None
    return {**df.attrs.get("train_report", {}), **data.leakage_report(df, folds, test)}


def load_teacher(cfg: TrainConfig, df: pd.DataFrame, rows: np.ndarray) -> np.ndarray:
    """Teacher probabilities for ``df.iloc[rows]``, refused unless out-of-fold for every one of those rows.

    A teacher run's held-out file (oof.csv, valid_preds.csv) holds only predictions made by models that did
    not train on that row, with its ``fold`` record; a run trained on other train files, or a bare CSV (no
    fold record), is accepted only with ``teacher_other_data=True``.
    """
    from .config import load_config
    from .ensemble import read_predictions
    from .artifacts import heldout_file
    from .paths import find_run
    from .predictor import read_run_info

    source = Path(cfg.teacher).expanduser()
    if source.is_file():
        table, record, what = read_predictions(str(source)), None, f"teacher file {source}"
    else:
        run = find_run(cfg.teacher, cfg.output_dir)
        path = heldout_file(run)
        if path is None:
            raise FileNotFoundError(f"teacher run {run} has no oof.csv or valid_preds.csv")
        table, record, what = read_predictions(str(path)), load_config(run), f"teacher run {run} ({path.name})"
    if table.index.duplicated().any():
        raise ValueError(f"{what}: duplicate ids, e.g. {table.index[table.index.duplicated()][0]!r}")
    ids = df["id"].astype(str).to_numpy()[rows]
    missing = ~pd.Index(ids).isin(table.index)
    if not cfg.teacher_other_data:
        if record is None:
            raise ValueError(f"{what} has no fold record, so its probabilities cannot be checked to be out-of-fold; "
                             "use a teacher run, or set teacher_other_data=True if the teacher never trained on "
                             "these rows")
        # Same training rows: by content when the run recorded it (runs travel between machines), else by path.
        recorded = ((read_run_info(run) or {}).get("provenance") or {}).get("content_fingerprint")
        same = recorded == data.content_fingerprint(df) if recorded else \
            [Path(p).resolve() for p in data.split_paths(record.get("train_path", ""))] == \
            [Path(p).resolve() for p in data.split_paths(cfg.train_path)]
        if not same:
            raise ValueError(f"{what} trained on {record.get('train_path')!r}, not on {cfg.train_path!r}: its fold "
                             "record cannot vouch for these rows; set teacher_other_data=True if it never saw them")
        if "fold" not in table.columns:
            raise ValueError(f"{what}: no 'fold' column, so the predictions are not a fold record")
        if missing.any():
            raise ValueError(f"{what} has no out-of-fold prediction for {int(missing.sum())} of the {len(ids)} "
                             f"training rows (first id {ids[missing][0]!r}): its models trained on them or never "
                             "saw them. Train the teacher on every fold (folds='all') or use 02's oof.csv")
        if "label" in table.columns:   # same ids, other labels: not the same rows
            differ = table.loc[ids, "label"].to_numpy(dtype=np.int64) != df["label"].to_numpy()[rows]
            if differ.any():
                raise ValueError(f"{what}: labels differ from the train file's for {int(differ.sum())} rows "
                                 f"(first id {ids[differ][0]!r}); it was not trained on these rows")
    elif missing.any():
        raise ValueError(f"{what} has no prediction for {int(missing.sum())} of the {len(ids)} training rows "
                         f"(first id {ids[missing][0]!r})")
    probs = table.loc[ids, list(data.WINNER_COLUMNS)].to_numpy(dtype=np.float64)
    if not np.isfinite(probs).all() or (probs < 0).any() or np.abs(probs.sum(axis=1) - 1).max() > 1e-3:
        raise ValueError(f"{what}: teacher probabilities must be finite, >= 0 and sum to 1 per row")
    return probs / probs.sum(axis=1, keepdims=True)


def _row(x: list[int], label: int, target: np.ndarray | None, teacher: np.ndarray | None) -> dict[str, Any]:
    """One encoded row; ``targets``/``teacher`` only when the run has soft targets / a teacher."""
    r: dict[str, Any] = {"input_ids": x, "labels": int(label)}
    if target is not None:
        r["targets"] = [float(v) for v in target]
    if teacher is not None:
        r["teacher"] = [float(v) for v in teacher]
    return r


def load_splits(cfg: TrainConfig, tokenizer: Any) -> Splits:
    """Read the train file(s), split off fold ``cfg.fold``, subsample as configured, encode (with swaps)."""
    df, folds = arena_with_folds(cfg)
    rng = np.random.default_rng(cfg.seed)
    train_idx, valid_idx = np.flatnonzero(folds != cfg.fold), np.flatnonzero(folds == cfg.fold)
    if cfg.max_train_rows and len(train_idx) > cfg.max_train_rows:
        train_idx = np.sort(rng.choice(train_idx, cfg.max_train_rows, replace=False))
    if cfg.max_valid_rows and len(valid_idx) > cfg.max_valid_rows:
        valid_idx = np.sort(rng.choice(valid_idx, cfg.max_valid_rows, replace=False))
    suffix = INSTRUCTION if cfg.task == "next_token" else ""
    tcfg = models.text_config_from(cfg)
    train_df, valid_df = df.iloc[train_idx].reset_index(drop=True), df.iloc[valid_idx].reset_index(drop=True)
    valid_df["fold"] = folds[valid_idx]
    ids = encode_pairs(tokenizer, train_df, tcfg, suffix)
    labels = train_df["label"].to_numpy()
    # One-hot data keeps integer labels only (the loss is then exactly the hard-label one).
    soft = data.targets(train_df) if data.is_soft(train_df) else None
    teacher = load_teacher(cfg, df, train_idx) if cfg.teacher and cfg.distill_alpha > 0 else None
    none = [None] * len(train_df)
    rows = [_row(x, y, t, q) for x, y, t, q in zip(ids, labels, none if soft is None else soft,
                                                   none if teacher is None else teacher)]
    if cfg.swap_aug != "none":
        swapped = data.swap_ab(train_df)
        sids = encode_pairs(tokenizer, swapped, tcfg, suffix)
        s_soft = none if soft is None else data.swap_probs(soft)
        s_teacher = none if teacher is None else data.swap_probs(teacher)
        s_rows = [_row(x, y, t, q) for x, y, t, q in zip(sids, swapped["label"].to_numpy(), s_soft, s_teacher)]
        if cfg.swap_aug == "pair":   # both orders of a pair land in the same batch (the collator unpacks them)
            for r, sr in zip(rows, s_rows):
                r.update({f"swap_{k}": v for k, v in sr.items()})
        else:
            rows += s_rows
    vids = encode_pairs(tokenizer, valid_df, tcfg, suffix)
    valid = [{"input_ids": x, "labels": int(y)} for x, y in zip(vids, valid_df["label"].to_numpy())]
    return Splits(rows, valid, valid_df, labels, df.attrs["load_report"].layout, provenance(df, cfg.train_path),
                  data_report(cfg, df, folds))


@dataclass
class Collator:
    """Dynamic padding; a row carrying ``swap_input_ids`` contributes both A/B orders to the batch."""

    pad_token_id: int
    side: str = "right"

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        seqs, labels = [], []
        extra: dict[str, list[list[float]]] = {k: [] for k in ("targets", "teacher") if k in features[0]}
        for f in features:
            seqs.append(f["input_ids"])
            labels.append(f["labels"])
            for k in extra:
                extra[k].append(f[k])
            if "swap_input_ids" in f:
                seqs.append(f["swap_input_ids"])
                labels.append(f["swap_labels"])
                for k in extra:
                    extra[k].append(f[f"swap_{k}"])
        ids, mask = pad_batch(seqs, self.pad_token_id, self.side)
        out = {"input_ids": ids, "attention_mask": mask, "labels": torch.tensor(labels, dtype=torch.long)}
        out.update({k: torch.tensor(v, dtype=torch.float32) for k, v in extra.items()})
        return out


# ---------------------------------------------------------------- trainer

def probs_from_predictions(predictions: Any) -> np.ndarray:
    """float64 class probabilities from the Trainer's gathered logits (the first output when it is a tuple)."""
    logits = predictions[0] if isinstance(predictions, tuple) else predictions
    return softmax(np.asarray(logits, dtype=np.float64))


def compute_metrics(eval_pred: Any) -> dict[str, float]:
    """Validation log loss and accuracy from the Trainer's gathered logits."""
    probs = probs_from_predictions(eval_pred.predictions)
    labels = np.asarray(eval_pred.label_ids)
    return {"log_loss": metrics.log_loss(labels, probs), "accuracy": metrics.accuracy(labels, probs)}


def distill_loss(logits: torch.Tensor, teacher_probs: torch.Tensor, temperature: float) -> torch.Tensor:
    """T^2 * KL(teacher_T || student_T), batch mean; teacher_T = softmax(log p_teacher / T)."""
    t = temperature
    student = F.log_softmax(logits.float() / t, dim=-1)
    target = F.log_softmax(torch.log(teacher_probs.float().clamp_min(1e-12)) / t, dim=-1)
    return t * t * F.kl_div(student, target, log_target=True, reduction="batchmean")


class ArenaTrainer(Trainer):
    """Trainer with 3-class cross-entropy (label smoothing, R-Drop) for both tasks, a head LR and EMA eval."""

    def __init__(self, *args: Any, task: str, label_token_ids: list[int] | None, label_smoothing: float,
                 rdrop_alpha: float, head_lr: float, ema: "EmaCallback | None" = None, distill_alpha: float = 0.0,
                 distill_temperature: float = 1.0, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.distill_alpha, self.distill_temperature = distill_alpha, distill_temperature
        self.task, self.label_token_ids = task, label_token_ids
        self.label_smoothing, self.rdrop_alpha, self.head_lr, self.ema = label_smoothing, rdrop_alpha, head_lr, ema
        # Our loss is a per-row mean: let the Trainer divide it by the accumulation steps.
        self.model_accepts_loss_kwargs = False
        self.eval_probs: dict[int, np.ndarray] = {}   # validation probabilities per evaluated step (reused at the end)

    def compute_loss(self, model: nn.Module, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: Any = None) -> Any:
        # Soft targets (probabilities) when the data has them; one-hot data keeps integer labels.
        labels = inputs["targets"] if "targets" in inputs else inputs["labels"]
        teacher = inputs.get("teacher")
        ids, mask = inputs["input_ids"], inputs["attention_mask"]
        rdrop = self.rdrop_alpha > 0 and model.training
        if rdrop:   # one forward on the doubled batch: two dropout masks, one DDP-friendly pass
            ids, mask = torch.cat([ids, ids]), torch.cat([mask, mask])
        logits = forward_logits(model, ids, mask, self.task, self.label_token_ids)
        if rdrop:
            l1, l2 = logits.chunk(2)
            ce = 0.5 * (F.cross_entropy(l1, labels, label_smoothing=self.label_smoothing)
                        + F.cross_entropy(l2, labels, label_smoothing=self.label_smoothing))
            p1, p2 = F.log_softmax(l1, -1), F.log_softmax(l2, -1)
            kl = 0.5 * (F.kl_div(p1, p2, log_target=True, reduction="batchmean")
                        + F.kl_div(p2, p1, log_target=True, reduction="batchmean"))
            loss, logits = ce + self.rdrop_alpha * kl, l1
        else:
            loss = ce = F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)
        if teacher is not None and self.distill_alpha > 0:
            loss = loss + self.distill_alpha * (distill_loss(logits, teacher, self.distill_temperature) - ce)
        return (loss, {"logits": logits}) if return_outputs else loss

    def create_optimizer(self, model: nn.Module | None = None) -> torch.optim.Optimizer:
        """AdamW with weight decay off for biases/norms and a separate learning rate for the head."""
        opt_model = self.model if model is None else model
        if self.optimizer is None:
            decay = set(self.get_decay_parameter_names(opt_model))
            groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
            for name, p in opt_model.named_parameters():
                if p.requires_grad:
                    is_head = any(f"{h}." in name for h in models.HEAD_NAMES)
                    groups.setdefault((is_head, name in decay), []).append(p)
            param_groups = [{"params": ps, "weight_decay": self.args.weight_decay if dec else 0.0,
                             "lr": self.head_lr if head else self.args.learning_rate}
                            for (head, dec), ps in sorted(groups.items())]
            optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
            optimizer_kwargs.pop("lr", None)
            self.optimizer = optimizer_cls(param_groups, **optimizer_kwargs)
        return self.optimizer

    def _get_eval_sampler(self, eval_dataset: Any) -> Any:
        # Keep evaluation in dataset order (already length-sorted); the Trainer would length-group it randomly.
        return SequentialSampler(eval_dataset) if self.args.world_size <= 1 else None

    def evaluation_loop(self, *args: Any, **kwargs: Any) -> Any:
        output = super().evaluation_loop(*args, **kwargs)
        if kwargs.get("metric_key_prefix", "eval") == "eval" and output.predictions is not None:
            self.eval_probs[int(self.state.global_step)] = probs_from_predictions(output.predictions)
        return output

    def final_eval_probs(self) -> np.ndarray | None:
        """Validation probabilities of the final weights if an evaluation already computed them, else None."""
        step = int(self.state.global_step)
        if self.args.load_best_model_at_end and self.state.best_model_checkpoint:
            step = int(str(self.state.best_model_checkpoint).rstrip("/").rsplit("-", 1)[-1])
        elif self.ema is not None and self.ema.best is not None:
            step = self.ema.best_step
        return self.eval_probs.get(step)

    def evaluate(self, *args: Any, **kwargs: Any) -> dict[str, float]:
        if self.ema is None:
            return super().evaluate(*args, **kwargs)
        self.ema.swap(self.model)
        try:
            out = super().evaluate(*args, **kwargs)
            self.ema.note_eval(self.model, out.get(f"{kwargs.get('metric_key_prefix', 'eval')}_log_loss"),
                               int(self.state.global_step))
            return out
        finally:
            self.ema.swap(self.model)


class EmaCallback(TrainerCallback):
    """Exponential moving average of the trainable weights (LoRA + head, or all); saved with checkpoints.

    With ``keep_best`` (early stopping) it also keeps the averaged weights of the best evaluation, which
    :meth:`use_best` makes the final ones, as ``load_best_model_at_end`` does without EMA.
    """

    FILE, BEST_FILE = "ema.safetensors", "ema_best.safetensors"

    def __init__(self, model: nn.Module, decay: float, keep_best: bool = False):
        self.decay, self.keep_best = decay, keep_best
        self.shadow = {n: p.detach().float().clone() for n, p in model.named_parameters() if p.requires_grad}
        self.best: dict[str, torch.Tensor] | None = None
        self.best_loss = float("inf")
        self.best_step = -1

    def note_eval(self, model: nn.Module, loss: float | None, step: int = -1) -> None:
        """Called while the averaged weights are in the model: remember them if this evaluation is the best."""
        if self.keep_best and loss is not None and loss < self.best_loss:
            self.best_loss, self.best_step = float(loss), step
            self.best = {n: p.detach().float().clone() for n, p in _unwrap(model).named_parameters()
                         if n in self.shadow}

    def use_best(self) -> None:
        """Make the best evaluation's averaged weights the shadow ones (no-op without a best)."""
        if self.best is not None:
            self.shadow = {n: t.clone() for n, t in self.best.items()}

    def on_step_end(self, args: Any, state: Any, control: Any, model: nn.Module | None = None, **kwargs: Any) -> None:
        with torch.no_grad():
            for n, p in _unwrap(model).named_parameters():
                if n in self.shadow:
                    self.shadow[n].mul_(self.decay).add_(p.detach().float(), alpha=1 - self.decay)

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        from safetensors.torch import save_file
        if state.is_world_process_zero:
            ckpt = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            save_file(self.shadow, str(ckpt / self.FILE))
            if self.best is not None:
                save_file(self.best, str(ckpt / self.BEST_FILE), metadata={"log_loss": repr(self.best_loss)})

    def load(self, checkpoint: str | Path) -> None:
        """Restore the shadow weights saved in a checkpoint (resume)."""
        from safetensors.torch import load_file
        from safetensors import safe_open
        path, best = Path(checkpoint) / self.FILE, Path(checkpoint) / self.BEST_FILE
        if path.exists():
            self.shadow.update(load_file(str(path)))
        if self.keep_best and best.exists():
            self.best = load_file(str(best))
            with safe_open(str(best), framework="pt") as f:
                self.best_loss = float(f.metadata()["log_loss"])

    def swap(self, model: nn.Module) -> None:
        """Exchange the model's trainable weights with the shadow ones (call twice to undo)."""
        with torch.no_grad():
            for n, p in _unwrap(model).named_parameters():
                if n in self.shadow:
                    tmp = p.detach().float().clone()
                    p.copy_(self.shadow[n].to(p.dtype))
                    self.shadow[n] = tmp


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if hasattr(model, "module") and isinstance(model, nn.parallel.DistributedDataParallel) else model


class EvaluateAtEnd(TrainerCallback):
    """Evaluate after the last step (newer transformers do it themselves): its predictions are the final ones,
    so the validation fold is predicted once per evaluation and never again after training."""

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step >= state.max_steps:
            control.should_evaluate = True


class InterruptAt(TrainerCallback):
    """Simulated disconnect: raise right after the checkpoint at step ``step`` is written."""

    def __init__(self, step: int):
        self.step = step

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step >= self.step:
            raise TrainingInterrupted(state.global_step)


class TrainingInterrupted(RuntimeError):
    """Raised by :class:`InterruptAt`; ``args[0]`` is the step of the last checkpoint."""


# ---------------------------------------------------------------- orchestration

def training_argument_kwargs(cfg: TrainConfig, n_train_rows: int, world_size: int, out_dir: Path) -> dict[str, Any]:
    """TrainingArguments keywords valid for the installed transformers (renamed options picked by its signature)."""
    import inspect

    accepted = inspect.signature(TrainingArguments.__init__).parameters
    precision = models.resolve_precision(cfg.precision)
    per_epoch = max(1, -(-n_train_rows // (cfg.batch_size * world_size * cfg.grad_accum)))
    total = cfg.max_steps if cfg.max_steps and cfg.max_steps > 0 else int(np.ceil(per_epoch * cfg.epochs))
    eval_steps = cfg.eval_steps or per_epoch
    save_steps = cfg.save_steps or eval_steps
    load_best = cfg.early_stopping_patience > 0 and cfg.ema_decay == 0
    if load_best and save_steps % eval_steps:
        raise ValueError(f"early stopping restores the best checkpoint: save_steps ({save_steps}) must be a "
                         f"multiple of eval_steps ({eval_steps})")
    cuda = torch.cuda.is_available()
    kwargs: dict[str, Any] = dict(
        output_dir=str(out_dir), per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.eval_batch_size, gradient_accumulation_steps=cfg.grad_accum,
        num_train_epochs=cfg.epochs, max_steps=total, learning_rate=cfg.lr, weight_decay=cfg.weight_decay,
        # Whole steps: warmup_ratio was removed in 5.x and a float warmup_steps means a ratio only there.
        lr_scheduler_type=cfg.scheduler, warmup_steps=int(np.ceil(total * cfg.warmup_ratio)), optim="adamw_torch",
        bf16=precision == "bf16", fp16=precision == "fp16", use_cpu=not cuda,
        eval_strategy="steps", eval_steps=eval_steps,
        save_strategy="steps", save_steps=save_steps, save_total_limit=cfg.save_total_limit,
        load_best_model_at_end=load_best, metric_for_best_model="log_loss", greater_is_better=False,
        logging_steps=min(cfg.logging_steps, max(1, eval_steps)), logging_first_step=True,
        label_names=["labels"], remove_unused_columns=False, report_to="none", seed=cfg.seed, data_seed=cfg.seed,
        disable_tqdm=not cfg.progress, dataloader_num_workers=0,
        ddp_backend="gloo" if world_size > 1 and not cuda else None, ddp_find_unused_parameters=False)
    # QLoRA enables checkpointing in prepare_model_for_kbit_training already.
    checkpointing = cfg.gradient_checkpointing and cfg.quantization == "none"
    # activation_checkpointing* / train_sampling_strategy replaced gradient_checkpointing* / group_by_length
    # in transformers 5.x; the floor (requirements.txt) has only the old names.
    prefix = "activation" if "activation_checkpointing" in accepted else "gradient"
    kwargs[f"{prefix}_checkpointing"] = checkpointing
    kwargs[f"{prefix}_checkpointing_kwargs"] = {"use_reentrant": False}
    if "train_sampling_strategy" in accepted:
        kwargs["train_sampling_strategy"] = "group_by_length"
    else:
        kwargs["group_by_length"] = True
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise TypeError(f"TrainingArguments of transformers {transformers_version()} lacks {unknown}; "
                        "requirements.txt states the supported range")
    return kwargs


def transformers_version() -> str:
    import transformers
    return transformers.__version__


def training_arguments(cfg: TrainConfig, n_train_rows: int, world_size: int, out_dir: Path) -> TrainingArguments:
    """TrainingArguments for the run: steps, schedule, precision, eval/save cadence, DDP backend."""
    return TrainingArguments(**training_argument_kwargs(cfg, n_train_rows, world_size, out_dir))


def _peak_memory_mb() -> float:
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024   # Linux reports KiB


def history_from_logs(log_history: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(train loss records, evaluation records) from the Trainer's log history."""
    train = [{"step": r["step"], "epoch": r.get("epoch"), "loss": r["loss"], "lr": r.get("learning_rate")}
             for r in log_history if "loss" in r]
    evals = [{"step": r["step"], "epoch": r.get("epoch"), "valid_log_loss": r["eval_log_loss"],
              "valid_accuracy": r.get("eval_accuracy")} for r in log_history if "eval_log_loss" in r]
    return train, evals


def resume_checkpoint(cfg: TrainConfig, ckpt_dir: Path) -> str | None:
    """Checkpoint to resume from: ``resume`` path, the run's latest (auto), or None."""
    if cfg.resume in ("", "none", None):
        return None
    if cfg.resume != "auto":
        if not Path(cfg.resume).is_dir():
            raise FileNotFoundError(f"resume checkpoint {cfg.resume} not found")
        return cfg.resume
    return get_last_checkpoint(str(ckpt_dir)) if ckpt_dir.is_dir() else None


def train(cfg: TrainConfig, callbacks: list[TrainerCallback] | None = None,
          interrupt_at_step: int | None = None) -> dict[str, Any]:
    """Fine-tune, validate and save one run; returns the metrics dict (on every process).

    ``interrupt_at_step`` simulates a disconnect after that step's checkpoint and returns
    ``{"interrupted": True, ...}`` without final outputs; calling ``train`` again resumes (resume="auto").
    With ``folds`` set, trains each fold in its own sub-run (:func:`train_folds`).
    The run is staged and committed atomically (:mod:`kagglelib.runs`); checkpoints live in
    ``runs/.<run_name>.work/`` and are resumed only by a run with the same configuration and train file.
    """
    main_process = int(os.environ.get("RANK", "0")) == 0
    if getattr(cfg, "method", "finetune") == "pairwise":   # frozen encoder + head: every fold, no Trainer
        from .pairwise_training import train_pairwise

        with runs.staged_run(cfg.output_dir, cfg.run_name) as stage:
            return train_pairwise(cfg, stage.path, *arena_with_folds(cfg))
    with runs.staged_run(cfg.output_dir, cfg.run_name, main_process) as stage:
        if cfg.folds:
            out = train_folds(cfg, stage.path, callbacks, interrupt_at_step)
        else:
            out = _train(cfg, stage.path, callbacks, interrupt_at_step)
        stage.commit = main_process and not out.get("interrupted")
    if cfg.folds and stage.commit:   # the finished folds now live in the committed run
        shutil.rmtree(runs.work_dir(cfg.output_dir, cfg.run_name), ignore_errors=True)
    return out


def resume_state(cfg: TrainConfig) -> dict[str, Any]:
    """What checkpoints belong to: every setting that shapes training, and the train file's content hash."""
    skip = ("resume", "keep_checkpoints", "progress", "logging_steps")
    state = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in skip}
    return {**state, "train_sha256": runs.files_sha256(cfg.train_path)}


def _train(cfg: TrainConfig, run_dir: Path, callbacks: list[TrainerCallback] | None,
           interrupt_at_step: int | None, work: Path | None = None) -> dict[str, Any]:
    """One fold's training into ``run_dir``; ``work`` (default ``runs/.<run_name>.work``) keeps its checkpoints."""
    t0 = time.time()
    spec = models.spec_from(cfg)
    work = work if work is not None else runs.work_dir(cfg.output_dir, cfg.run_name)
    ckpt_dir = work / "checkpoints"
    state = resume_state(cfg)
    stale = cfg.resume == "auto" and ckpt_dir.is_dir() and not runs.same_state(work, state)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    model, tokenizer = models.build_model(spec)
    label_ids = models.label_token_ids(tokenizer) if cfg.task == "next_token" else None
    splits = load_splits(cfg, tokenizer)
    if cfg.task == "classifier" and cfg.head_prior_init:   # (a resumed run then loads its checkpoint over this)
        models.init_head_bias(model, np.bincount(splits.train_labels, minlength=3) / len(splits.train_labels))
    args = training_arguments(cfg, len(splits.train), world_size, ckpt_dir)
    # Validation rows sorted by length (less padding); predictions are put back in file order below.
    order = np.argsort([-len(r["input_ids"]) for r in splits.valid], kind="stable")
    ema = EmaCallback(model, cfg.ema_decay, keep_best=cfg.early_stopping_patience > 0) if cfg.ema_decay > 0 else None
    cbs = list(callbacks or []) + [EvaluateAtEnd()]
    if ema:
        cbs.append(ema)
    if cfg.early_stopping_patience > 0:
        cbs.append(EarlyStoppingCallback(early_stopping_patience=cfg.early_stopping_patience))
    if interrupt_at_step:
        cbs.append(InterruptAt(interrupt_at_step))
    trainer = ArenaTrainer(
        model=model, args=args, train_dataset=splits.train, eval_dataset=[splits.valid[i] for i in order],
        data_collator=Collator(tokenizer.pad_token_id, padding_side(cfg.task)), processing_class=tokenizer,
        compute_metrics=compute_metrics, callbacks=cbs, task=cfg.task, label_token_ids=label_ids,
        label_smoothing=cfg.label_smoothing, rdrop_alpha=cfg.rdrop_alpha, head_lr=cfg.head_lr or cfg.lr, ema=ema,
        distill_alpha=cfg.distill_alpha if cfg.teacher else 0.0, distill_temperature=cfg.distill_temperature)
    main = trainer.is_world_process_zero()
    # PiSSA's initial adapter is resumption state (needed to save the adapter as plain LoRA at the end): it lives
    # beside the checkpoints, not in the committed run, and a resumed run keeps the one its checkpoints started from.
    pissa_init = work / "pissa_init" if spec.use_lora and spec.lora_init != "default" else None
    resume = None if stale else resume_checkpoint(cfg, ckpt_dir)
    if main:
        save_config(cfg, run_dir, smoke=cfg.smoke, world_size=world_size)
        if pissa_init is not None and (resume is None or not pissa_init.is_dir()):
            models.save_pissa_init(model, pissa_init)
        if stale:   # resuming another configuration's checkpoints would mix two generations in one model
            log.warning("%s holds checkpoints of another configuration or train file; starting fresh", ckpt_dir)
        if resume is None or ckpt_dir.resolve() not in Path(resume).resolve().parents:
            shutil.rmtree(ckpt_dir, ignore_errors=True)   # no older checkpoint left for a later resume to pick
        work.mkdir(parents=True, exist_ok=True)
        runs.write_state(work, state)
    trainer.accelerator.wait_for_everyone()
    if ema and resume:
        ema.load(resume)
    try:
        result = trainer.train(resume_from_checkpoint=resume)
    except TrainingInterrupted as stop:
        # Remember the time spent so far, so the resumed run reports the whole training time.
        write_json({"seconds": time.time() - t0}, ckpt_dir / "elapsed.json")
        return {"interrupted": True, "global_step": int(stop.args[0]), "checkpoint": get_last_checkpoint(str(ckpt_dir))}
    earlier = read_json(ckpt_dir / "elapsed.json")["seconds"] if resume and (ckpt_dir / "elapsed.json").exists() else 0.0
    if ema:
        ema.use_best()            # with early stopping: the average at the best evaluation
        ema.swap(trainer.model)   # final weights = the average
    # The last evaluation already predicted the fold with the final weights (resumed runs may lack it).
    sorted_probs = trainer.final_eval_probs()
    if sorted_probs is None:
        sorted_probs = probs_from_predictions(trainer.predict([splits.valid[i] for i in order]).predictions)
    probs = np.empty((len(order), 3))
    probs[order] = sorted_probs
    labels = splits.valid_df["label"].to_numpy()
    if data.is_soft(splits.valid_df):   # soft validation rows: scored against their probabilities
        labels = data.targets(splits.valid_df)
    prior = metrics.prior_probs(splits.train_labels, len(labels))
    train_hist, eval_hist = history_from_logs(trainer.state.log_history)
    trainable, total = models.count_parameters(trainer.model)
    out: dict[str, Any] = {
        **metrics.summarise(labels, probs, prefix="valid_"),
        "prior_log_loss": metrics.log_loss(labels, prior), "prior_probs": prior[0].tolist(),
        "n_train": int(len(splits.train_labels)), "n_train_rows_seen_per_epoch": len(splits.train) * (
            2 if cfg.swap_aug == "pair" else 1), "n_valid": int(len(labels)), "fold": cfg.fold,
        "global_step": int(trainer.state.global_step), "epochs_done": float(trainer.state.epoch or 0),
        "train_loss": float(result.training_loss), "best_valid_log_loss": trainer.state.best_metric,
        "history": eval_hist, "train_history": train_hist, "trainable_params": trainable, "total_params": total,
        "world_size": world_size, "resumed_from": resume, "smoke": cfg.smoke, "backbone": cfg.backbone,
        "task": cfg.task, "seconds": round(earlier + time.time() - t0, 2), "peak_memory_mb": round(_peak_memory_mb(), 1),
        "data_warnings": data_warnings(cfg),   # e.g. no ties at all in the train file
        "data_report": splits.report, "teacher": cfg.teacher,
    }
    out["beats_prior"] = bool(out["valid_log_loss"] < out["prior_log_loss"])
    if main:
        preds = data.prob_frame(splits.valid_df["id"], probs, label=splits.valid_df["label"].to_numpy(),
                                fold=splits.valid_df["fold"].to_numpy())
        write_csv(preds.assign(**rule_flags(splits.valid_df)), run_dir / "valid_preds.csv")
        models.save_for_inference(trainer.model, tokenizer, run_dir / "model", pissa_init)
        write_run_info(run_dir, "transformer", splits.layout, splits.source, **models.inference_needs(spec))
        title = f"{cfg.run_name}: {cfg.backbone} ({cfg.task})" + ("  [SMOKE: random tiny model, not a result]"
                                                                  if cfg.smoke else "")
        import matplotlib.pyplot as plt

        from .plots import loss_curve
        fig = loss_curve(train_hist, eval_hist, out["prior_log_loss"], title)
        save_figure(fig, run_dir / "loss_curve.png")
        plt.close(fig)
        write_json(out, run_dir / METRICS)
        if cfg.keep_checkpoints and ckpt_dir.is_dir():   # kept in the run, outside its manifest
            shutil.move(str(ckpt_dir), str(run_dir / "checkpoints"))
        shutil.rmtree(work, ignore_errors=True)
    trainer.accelerator.wait_for_everyone()
    return out


def train_folds(cfg: TrainConfig, run_dir: Path, callbacks: list[TrainerCallback] | None = None,
                interrupt_at_step: int | None = None) -> dict[str, Any]:
    """Train every fold of ``folds`` (each resumable on its own), then write ``fold<k>/`` and ``oof.csv`` to ``run_dir``.

    Finished folds wait in ``runs/.<run_name>.work/fold<k>/`` (each fold's checkpoints in ``fold<k>.work/``), so a
    disconnected all-fold run restarts at the fold it was in; a finished fold is reused only when its settings and
    train file content equal this run's (:func:`resume_state`), else it is trained again. The run folder is
    written once every fold is done. ``metrics.json`` holds the out-of-fold figures over every held-out row;
    inference averages the folds.
    """
    t0 = time.time()
    ks = fold_list(cfg)
    main = int(os.environ.get("RANK", "0")) == 0
    work = runs.work_dir(cfg.output_dir, cfg.run_name)
    per_fold, source = [], {}
    for k in ks:
        sub = dataclasses.replace(cfg, fold=k, folds="")
        done_dir = work / f"fold{k}"
        # A finished fold of this generation (same settings and train content): from an interrupted call, or
        # in the committed run (a rerun, or "all" after "0,1"); its state.json says which generation it is.
        reuse = [d for d in (done_dir, runs.runs_root(cfg.output_dir) / cfg.run_name / f"fold{k}")
                 if (d / METRICS).exists() and runs.same_state(d, resume_state(sub))]
        if reuse:
            log.info("fold %d: reusing the finished model in %s", k, reuse[0])
            per_fold.append(read_json(reuse[0] / METRICS))
            source[k] = reuse[0]
            continue
        partial = work / f".fold{k}.partial"
        if main:
            if done_dir.exists():
                log.warning("%s holds fold %d of other settings or another train file; training it again", done_dir, k)
            shutil.rmtree(done_dir, ignore_errors=True)
            shutil.rmtree(partial, ignore_errors=True)
        out = _train(sub, partial, callbacks, interrupt_at_step, work=work / f"fold{k}.work")
        if out.get("interrupted"):
            return {**out, "fold": k}
        if main:
            runs.write_state(partial, resume_state(sub))
            os.replace(partial, done_dir)
        per_fold.append(out)
        source[k] = done_dir
    if not main:   # other DDP ranks write nothing
        return per_fold[-1]
    for k in ks:
        shutil.copytree(source[k], run_dir / f"fold{k}")
    save_config(cfg, run_dir, smoke=cfg.smoke, fold_dirs=[f"fold{k}" for k in ks])
    shutil.copy2(run_dir / f"fold{ks[0]}" / "run_info.json", run_dir / "run_info.json")   # same layout and needs
    df, folds = arena_with_folds(cfg)
    frames = [pd.read_csv(run_dir / f"fold{k}" / "valid_preds.csv", dtype={"id": str}) for k in ks]
    oof = pd.concat(frames, ignore_index=True)
    # Back to train-file order.
    position = pd.Series(np.arange(len(df)), index=df["id"].astype(str))
    oof = oof.iloc[np.argsort(position.loc[oof["id"].astype(str)].to_numpy(), kind="stable")].reset_index(drop=True)
    probs = oof[list(data.WINNER_COLUMNS)].to_numpy(dtype=np.float64)
    rows = data.rows_by_id(df, oof["id"])
    labels = data.targets(rows) if data.is_soft(rows) else rows["label"].to_numpy()
    train_labels = df["label"].to_numpy()
    out: dict[str, Any] = {
        **metrics.summarise(labels, probs, prefix="valid_"),
        "prior_log_loss": metrics.log_loss(labels, metrics.prior_probs(train_labels, len(labels))),
        "n_valid": int(len(oof)), "n_train": int(len(df)), "folds": ks, "oof": True,
        "per_fold": [{"fold": k, **{m: o.get(m) for m in ("valid_log_loss", "valid_accuracy", "n_train", "n_valid",
                                                         "global_step", "seconds")}} for k, o in zip(ks, per_fold)],
        "smoke": cfg.smoke, "backbone": cfg.backbone, "task": cfg.task, "teacher": cfg.teacher,
        "data_report": per_fold[0].get("data_report"), "data_warnings": per_fold[0].get("data_warnings"),
        "seconds": round(time.time() - t0, 2),
        "fold_seconds_total": round(sum(float(o.get("seconds") or 0) for o in per_fold), 2),
    }
    out["beats_prior"] = bool(out["valid_log_loss"] < out["prior_log_loss"])
    write_csv(oof, run_dir / "oof.csv")
    write_json(out, run_dir / METRICS)
    return out


def config_from_json(path: str | Path) -> TrainConfig:
    """A config from a JSON file of field values (``config_class`` picks Decoder/Encoder/TrainConfig)."""
    raw = read_json(path)
    cls = CONFIG_CLASSES.get(raw.pop("config_class", "TrainConfig"), TrainConfig)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names - set(METADATA_KEYS))
    if unknown:
        raise ValueError(f"{path}: unknown config field(s) {unknown}")
    return from_params(cls, raw)


def main(argv: list[str] | None = None) -> int:
    """CLI: ``python -m kagglelib.training --config cfg.json [--report out_{rank}.json]`` (torchrun-ready)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="JSON file with config fields (config_class optional)")
    parser.add_argument("--report", default="", help="also write this process's metrics here; {rank} is expanded")
    a = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    out = train(config_from_json(a.config))
    if a.report:
        rank = int(os.environ.get("RANK", "0"))
        write_json(out, a.report.format(rank=rank))
    print(json.dumps({k: out.get(k) for k in ("valid_log_loss", "valid_accuracy", "prior_log_loss", "seconds")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
