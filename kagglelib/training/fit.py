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
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from transformers import EarlyStoppingCallback, TrainerCallback
from transformers.trainer_utils import get_last_checkpoint

from ..core.io import read_csv_table, read_json, save_figure, write_json
from ..data.frame import WINNER_COLUMNS, is_soft, rows_by_id, targets
from ..models.build import build_model, count_parameters, init_head_bias, label_token_ids
from ..models.forward import padding_side
from ..models.saved import inference_needs, save_for_inference, save_pissa_init
from ..run.config import flatten, save_config
from ..run.info import write_heldout, write_run_info
from ..run.preflight import check_training_rows, check_unique_ids
from ..run.folder import Run
from ..run.names import RunPaths
from ..run.store import files_sha256, runs_root, same_state, work_dir, write_state
from ..scoring.metrics import log_loss, prior_probs, summarise
from ..scoring.plots import loss_curve
from .config import TrainConfig, config_from_json, fold_list
from .inputs import Collator, arena_with_folds, data_warnings, load_splits, read_inputs, teacher_identity
from .pairwise import train_pairwise
from .loop import (ArenaTrainer, EmaCallback, EvaluateAtEnd, InterruptAt, TrainingInterrupted, _peak_memory_mb,
                   compute_metrics, history_from_logs, probs_from_predictions, resume_checkpoint, training_arguments)

log = logging.getLogger(__name__)


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
    df, folds = arena_with_folds(cfg)   # checked before any model loads: what would fail after the last fold
    check_training_rows(cfg, df, folds, fold_list(cfg))
    if getattr(cfg, "method", "finetune") == "pairwise":   # frozen encoder + head: every fold, no Trainer
        with Run.create(cfg.output_dir, cfg.run_name) as stage:
            return train_pairwise(cfg, stage.path, df, folds)
    with Run.create(cfg.output_dir, cfg.run_name, main_process) as stage:
        if cfg.folds:
            out = train_folds(cfg, stage.path, callbacks, interrupt_at_step)
        else:
            out = _train(cfg, stage.path, callbacks, interrupt_at_step)
        stage.commit = main_process and not out.get("interrupted")
    if cfg.folds and stage.commit:   # the finished folds now live in the committed run
        shutil.rmtree(work_dir(cfg.output_dir, cfg.run_name), ignore_errors=True)
    return out


def resume_state(cfg: TrainConfig) -> dict[str, Any]:
    """What checkpoints belong to: every setting that shapes training, the train files' and the teacher's content."""
    skip = ("resume", "keep_checkpoints", "progress", "logging_steps")
    state = {k: v for k, v in flatten(cfg).items() if k not in skip}
    state["train_sha256"] = files_sha256(cfg.train_path)
    if cfg.teacher:   # by content: a replaced teacher file or a retrained teacher run is another teacher
        state["teacher_identity"] = teacher_identity(cfg)
    return state


def _train(cfg: TrainConfig, run_dir: Path, callbacks: list[TrainerCallback] | None,
           interrupt_at_step: int | None, work: Path | None = None) -> dict[str, Any]:
    """One fold's training into ``run_dir``; ``work`` (default ``runs/.<run_name>.work``) keeps its checkpoints."""
    t0 = time.monotonic()
    spec = cfg.model
    work = work if work is not None else work_dir(cfg.output_dir, cfg.run_name)
    ckpt_dir = work / "checkpoints"
    state = resume_state(cfg)
    stale = cfg.resume == "auto" and ckpt_dir.is_dir() and not same_state(work, state)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    inputs = read_inputs(cfg)   # train files, folds, test file, teacher: checked before the (maybe 9B) load
    model, tokenizer = build_model(spec)
    label_ids = label_token_ids(tokenizer) if spec.task == "next_token" else None
    splits = load_splits(cfg, tokenizer, inputs)
    if spec.task == "classifier" and cfg.head_prior_init:   # (a resumed run then loads its checkpoint over this)
        init_head_bias(model, np.bincount(splits.train_labels, minlength=3) / len(splits.train_labels))
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
        data_collator=Collator(tokenizer.pad_token_id, padding_side(spec.task)), processing_class=tokenizer,
        compute_metrics=compute_metrics, callbacks=cbs, task=spec.task, label_token_ids=label_ids,
        label_smoothing=cfg.label_smoothing, rdrop_alpha=cfg.rdrop_alpha, head_lr=cfg.head_lr, ema=ema,
        distill_alpha=cfg.distill_alpha if cfg.teacher else 0.0, distill_temperature=cfg.distill_temperature)
    main = trainer.is_world_process_zero()
    # PiSSA's initial adapter is resumption state (needed to save the adapter as plain LoRA at the end): it lives
    # beside the checkpoints, not in the committed run, and a resumed run keeps the one its checkpoints started from.
    pissa_init = work / "pissa_init" if spec.use_lora and spec.lora_init != "default" else None
    resume = None if stale else resume_checkpoint(cfg, ckpt_dir)
    if main:
        save_config(cfg, run_dir, smoke=cfg.smoke, world_size=world_size)
        if pissa_init is not None and (resume is None or not pissa_init.is_dir()):
            save_pissa_init(model, pissa_init)
        if stale:   # resuming another configuration's checkpoints would mix two generations in one model
            log.warning("%s holds checkpoints of another configuration or train file; starting fresh", ckpt_dir)
        if resume is None or ckpt_dir.resolve() not in Path(resume).resolve().parents:
            shutil.rmtree(ckpt_dir, ignore_errors=True)   # no older checkpoint left for a later resume to pick
        work.mkdir(parents=True, exist_ok=True)
        write_state(work, state)
    trainer.accelerator.wait_for_everyone()
    if ema and resume:
        ema.load(resume)
    try:
        result = trainer.train(resume_from_checkpoint=resume)
    except TrainingInterrupted as stop:
        # Remember the time spent so far, so the resumed run reports the whole training time.
        write_json({"seconds": time.monotonic() - t0}, ckpt_dir / "elapsed.json")
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
    if is_soft(splits.valid_df):   # soft validation rows: scored against their probabilities
        labels = targets(splits.valid_df)
    prior = prior_probs(splits.train_labels, len(labels))
    train_hist, eval_hist = history_from_logs(trainer.state.log_history)
    trainable, total = count_parameters(trainer.model)
    out: dict[str, Any] = {
        **summarise(labels, probs, prefix="valid_"),
        "prior_log_loss": log_loss(labels, prior), "prior_probs": prior[0].tolist(),
        "n_train": int(len(splits.train_labels)), "n_train_rows_seen_per_epoch": len(splits.train) * (
            2 if cfg.swap_aug == "pair" else 1), "n_valid": int(len(labels)), "fold": cfg.fold,
        "global_step": int(trainer.state.global_step), "epochs_done": float(trainer.state.epoch or 0),
        "train_loss": float(result.training_loss), "best_valid_log_loss": trainer.state.best_metric,
        "history": eval_hist, "train_history": train_hist, "trainable_params": trainable, "total_params": total,
        "world_size": world_size, "resumed_from": resume, "smoke": cfg.smoke, "backbone": spec.backbone,
        "task": spec.task, "seconds": round(earlier + time.monotonic() - t0, 2), "peak_memory_mb": round(_peak_memory_mb(), 1),
        "data_warnings": data_warnings(cfg),   # e.g. no ties at all in the train file
        "data_report": splits.report, "teacher": cfg.teacher,
        "teacher_identity": teacher_identity(cfg) if cfg.teacher else None,
    }
    out["beats_prior"] = bool(out["valid_log_loss"] < out["prior_log_loss"])
    if main:
        files = RunPaths(run_dir)
        write_heldout(files.valid_preds_file, splits.valid_df, probs, splits.valid_df["fold"].to_numpy())
        save_for_inference(trainer.model, tokenizer, files.model_dir, pissa_init)
        write_run_info(run_dir, "transformer", splits.layout, splits.source, **inference_needs(spec))
        title = f"{cfg.run_name}: {spec.backbone} ({spec.task})" + ("  [SMOKE: random tiny model, not a result]"
                                                                  if cfg.smoke else "")
        import matplotlib.pyplot as plt

        fig = loss_curve(train_hist, eval_hist, out["prior_log_loss"], title)
        save_figure(fig, files.loss_curve_file)
        plt.close(fig)
        write_json(out, files.metrics_file)
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
    t0 = time.monotonic()
    ks = fold_list(cfg)
    main = int(os.environ.get("RANK", "0")) == 0
    work = work_dir(cfg.output_dir, cfg.run_name)
    per_fold, source = [], {}
    for k in ks:
        sub = dataclasses.replace(cfg, fold=k, folds="")
        done_dir = work / f"fold{k}"
        # A finished fold of this generation (same settings and train content): from an interrupted call, or
        # in the committed run (a rerun, or "all" after "0,1"); its state.json says which generation it is.
        reuse = [d for d in (done_dir, RunPaths(runs_root(cfg.output_dir) / cfg.run_name).fold(k).path)
                 if RunPaths(d).metrics_file.exists() and same_state(d, resume_state(sub))]
        if reuse:
            log.info("fold %d: reusing the finished model in %s", k, reuse[0])
            per_fold.append(read_json(RunPaths(reuse[0]).metrics_file))
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
            write_state(partial, resume_state(sub))
            os.replace(partial, done_dir)
        per_fold.append(out)
        source[k] = done_dir
    if not main:   # other DDP ranks write nothing
        return per_fold[-1]
    files = RunPaths(run_dir)
    for k in ks:
        shutil.copytree(source[k], files.fold(k).path)
    save_config(cfg, run_dir, smoke=cfg.smoke, fold_dirs=[files.fold(k).path.name for k in ks])
    shutil.copy2(files.fold(ks[0]).info_file, files.info_file)   # same layout and needs
    df, folds = arena_with_folds(cfg)
    oof = oof_table(run_dir, ks, df)
    probs = oof[list(WINNER_COLUMNS)].to_numpy(dtype=np.float64)
    rows = rows_by_id(df, oof["id"])
    labels = targets(rows) if is_soft(rows) else rows["label"].to_numpy()
    train_labels = df["label"].to_numpy()
    out: dict[str, Any] = {
        **summarise(labels, probs, prefix="valid_"),
        "prior_log_loss": log_loss(labels, prior_probs(train_labels, len(labels))),
        "n_valid": int(len(oof)), "n_train": int(len(df)), "folds": ks, "oof": True,
        "per_fold": [{"fold": k, **{m: o.get(m) for m in ("valid_log_loss", "valid_accuracy", "n_train", "n_valid",
                                                         "global_step", "seconds")}} for k, o in zip(ks, per_fold)],
        "smoke": cfg.smoke, "backbone": cfg.model.backbone, "task": cfg.model.task, "teacher": cfg.teacher,
        "data_report": per_fold[0].get("data_report"), "data_warnings": per_fold[0].get("data_warnings"),
        "seconds": round(time.monotonic() - t0, 2),
        "fold_seconds_total": round(sum(float(o.get("seconds") or 0) for o in per_fold), 2),
    }
    out["beats_prior"] = bool(out["valid_log_loss"] < out["prior_log_loss"])
    write_heldout(files.oof_file, rows, probs, oof["fold"].to_numpy())
    write_json(out, files.metrics_file)
    return out

def oof_table(run_dir: Path, ks: list[int], df: pd.DataFrame) -> pd.DataFrame:
    """The folds' held-out predictions (``fold<k>/valid_preds.csv``, ids read back as text) in train-file order."""
    check_unique_ids(df, "train data", "the out-of-fold table is built by id")
    oof = pd.concat([read_csv_table(RunPaths(run_dir).fold(k).valid_preds_file) for k in ks], ignore_index=True)
    position = pd.Series(np.arange(len(df)), index=df["id"].astype(str))
    return oof.iloc[np.argsort(position.loc[oof["id"]].to_numpy(), kind="stable")].reset_index(drop=True)



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
