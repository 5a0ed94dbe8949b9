"""The Trainer: 3-class loss (label smoothing, R-Drop, distillation), head learning rate, EMA, callbacks, arguments."""
from __future__ import annotations

import inspect
import logging
import resource
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import SequentialSampler
from transformers import Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_utils import get_last_checkpoint

from ..models.device import resolve_precision
from ..models.forward import forward_logits
from ..models.spec import HEAD_NAMES
from ..scoring.calibration import softmax
from ..scoring.metrics import accuracy, log_loss
from .config import TrainConfig, optimizer_needs_cuda, report_targets

log = logging.getLogger(__name__)


def probs_from_predictions(predictions: Any) -> np.ndarray:
    """float64 class probabilities from the Trainer's gathered logits (the first output when it is a tuple)."""
    logits = predictions[0] if isinstance(predictions, tuple) else predictions
    return softmax(np.asarray(logits, dtype=np.float64))


def compute_metrics(eval_pred: Any) -> dict[str, float]:
    """Validation log loss and accuracy from the Trainer's gathered logits."""
    probs = probs_from_predictions(eval_pred.predictions)
    labels = np.asarray(eval_pred.label_ids)
    return {"log_loss": log_loss(labels, probs), "accuracy": accuracy(labels, probs)}


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
                    is_head = any(f"{h}." in name for h in HEAD_NAMES)
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


def training_argument_kwargs(cfg: TrainConfig, n_train_rows: int, world_size: int, out_dir: Path) -> dict[str, Any]:
    """TrainingArguments keywords valid for the installed transformers (renamed options picked by its signature)."""
    accepted = inspect.signature(TrainingArguments.__init__).parameters
    precision = resolve_precision(cfg.model.precision)
    per_epoch, total = planned_steps(n_train_rows, cfg.batch_size, cfg.grad_accum, world_size, cfg.epochs,
                                     cfg.max_steps)
    eval_steps = cfg.eval_steps or per_epoch
    save_steps = cfg.save_steps or eval_steps
    load_best = cfg.early_stopping_patience > 0 and cfg.ema_decay == 0
    if load_best and save_steps % eval_steps:
        raise ValueError(f"early stopping restores the best checkpoint: save_steps ({save_steps}) must be a "
                         f"multiple of eval_steps ({eval_steps})")
    cuda = torch.cuda.is_available()
    if optimizer_needs_cuda(cfg.optim) and not cuda:
        raise ValueError(f"optim={cfg.optim!r} is a bitsandbytes optimizer (CUDA only); on CPU use adamw_torch")
    kwargs: dict[str, Any] = dict(
        output_dir=str(out_dir), per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.eval_batch_size, gradient_accumulation_steps=cfg.grad_accum,
        num_train_epochs=cfg.epochs, max_steps=total, learning_rate=cfg.lr, weight_decay=cfg.weight_decay,
        # Whole steps: warmup_ratio was removed in 5.x and a float warmup_steps means a ratio only there.
        lr_scheduler_type=cfg.scheduler, warmup_steps=int(np.ceil(total * cfg.warmup_ratio)), optim=cfg.optim,
        bf16=precision == "bf16", fp16=precision == "fp16", use_cpu=not cuda,
        eval_strategy="steps", eval_steps=eval_steps,
        save_strategy="steps", save_steps=save_steps, save_total_limit=cfg.save_total_limit,
        load_best_model_at_end=load_best, metric_for_best_model="log_loss", greater_is_better=False,
        logging_steps=min(cfg.logging_steps, max(1, eval_steps)), logging_first_step=True,
        label_names=["labels"], remove_unused_columns=False, report_to=report_targets(cfg.report_to),
        seed=cfg.model.seed, data_seed=cfg.model.seed,
        disable_tqdm=not cfg.progress, dataloader_num_workers=0,
        ddp_backend="gloo" if world_size > 1 and not cuda else None, ddp_find_unused_parameters=False)
    # QLoRA enables checkpointing in prepare_model_for_kbit_training already.
    checkpointing = cfg.model.gradient_checkpointing and cfg.model.quantization == "none"
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


def planned_steps(n_rows: int, batch_size: int, grad_accum: int, processes: int, epochs: float,
                  max_steps: int | None) -> tuple[int, int]:
    """(optimizer steps per epoch, total steps) over ``processes`` data-parallel processes; the planner uses it too."""
    per_epoch = max(1, -(-n_rows // (batch_size * processes * grad_accum)))
    total = max_steps if max_steps and max_steps > 0 else int(np.ceil(per_epoch * epochs))
    return per_epoch, total


def one_gpu_per_process(args: TrainingArguments, world_size: int) -> TrainingArguments:
    """Keep a single process on one GPU: with several visible, the Trainer would wrap the model in DataParallel.

    transformers sets ``n_gpu`` to every visible GPU when not distributed (training_args.py ``_setup_devices``)
    and then wraps a non-quantised model in ``nn.DataParallel`` (trainer.py ``_wrap_model``; 4.56 wraps 4-bit
    models too), so each step would consume ``n_gpu`` per-device batches and train more rows than planned.
    :mod:`kagglelib.training.launch` runs one process per GPU instead; a run kept in this process uses cuda:0.
    """
    if world_size == 1 and getattr(args, "n_gpu", 1) > 1:   # (getattr: tests pass stand-in argument objects)
        log.warning("%d GPUs visible to one process: training on %s only (kagglelib.training.launch.train uses all "
                    "of them, one process per GPU)", args.n_gpu, args.device)
        args._n_gpu = 1   # what the Trainer itself does for a model-parallel model (trainer.py, is_model_parallel)
    return args


def transformers_version() -> str:
    import transformers
    return transformers.__version__


def training_arguments(cfg: TrainConfig, n_train_rows: int, world_size: int, out_dir: Path) -> TrainingArguments:
    """TrainingArguments for the run: steps, schedule, precision, eval/save cadence, DDP backend."""
    return one_gpu_per_process(TrainingArguments(**training_argument_kwargs(cfg, n_train_rows, world_size, out_dir)),
                               world_size)


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
