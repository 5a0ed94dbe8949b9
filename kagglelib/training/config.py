"""Fine-tuning settings (notebooks 03 and 04): one TrainConfig, the decoder and encoder variants and their profiles."""
from __future__ import annotations

import difflib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from ..core.checks import check_settings
from ..core.io import comma_list, read_json
from ..data.text import TextConfig
from ..models.spec import ModelSpec
from ..run.config import METADATA_KEYS, RunConfig, make_config, parameter_names


log = logging.getLogger(__name__)
SWAP_MODES = ("none", "concat", "pair")
METHODS = ("finetune", "pairwise")   # EncoderTrainConfig.method
PAIRWISE_HEADS = ("symmetric", "order")
PAIRWISE_TUNES = ("none", "ffn")

# The Trainer optimizers transformers builds from bitsandbytes (CUDA only here; paged ones use CUDA unified memory).
BNB_OPTIMIZERS = ("adamw_bnb_8bit", "adamw_8bit", "ademamix", "ademamix_8bit", "lion_8bit", "lion_32bit",
                  "rmsprop_bnb", "rmsprop_bnb_8bit", "rmsprop_bnb_32bit")


def optimizer_needs_cuda(optim: str) -> bool:
    """True for the bitsandbytes optimizers (8-bit or paged states)."""
    return optim in BNB_OPTIMIZERS or optim.startswith("paged_")


def check_trainer_options(optim: str, report_to: str) -> None:
    """``optim`` must be one of the installed Trainer's optimizer names, ``report_to`` its integrations."""
    # transformers takes seconds to import: only when a config is checked, not when this module loads.
    import transformers
    from transformers.integrations.integration_utils import INTEGRATION_TO_CALLBACK
    from transformers.training_args import OptimizerNames

    names = [o.value for o in OptimizerNames]
    if optim not in names:
        close = difflib.get_close_matches(optim, names, 3)
        raise ValueError(f"optim {optim!r} is not an optimizer of transformers {transformers.__version__}"
                         f"{f' (did you mean {close}?)' if close else ''}; one of {names}")
    unknown = [r for r in comma_list(report_to) if r not in ("none", "all", *INTEGRATION_TO_CALLBACK)]
    if unknown:
        raise ValueError(f"report_to: {unknown} not Trainer integrations; use none, all or "
                         f"{sorted(INTEGRATION_TO_CALLBACK)}")


def report_targets(report_to: str) -> str | list[str]:
    """The ``report_to`` TrainingArguments takes: "none", "all" or a list of integration names."""
    targets = comma_list(report_to)
    return targets[0] if targets in (["none"], ["all"]) else (targets or "none")


@dataclass
class TrainConfig(RunConfig):
    """All knobs of one fine-tuning run: the model spec, the text budgets and the training settings.

    Build it with :func:`kagglelib.run.config.make_config` (flat names: ``make_config(EncoderTrainConfig,
    backbone="tiny-deberta", lora_r=8)``) or ``from_params`` in a notebook: defaults <- profile <- your values.
    The defaults are each subclass's ``cpu-sample`` values; ``PROFILE_DEFAULTS`` holds the GPU profiles'.
    """

    model: ModelSpec = field(default_factory=ModelSpec)   # backbone, head, LoRA, quantization, precision, seed
    text: TextConfig = field(default_factory=TextConfig)   # max_length, prompt_tokens, response_tokens, head_ratio
    head_prior_init: bool = True           # start the head's bias at log(class prior of the training fold)
    # data
    fold: int = 0                          # validation fold of data.make_folds
    folds: str = ""                        # "" = just ``fold``; "all" or "0,2": each fold in runs/<name>/fold<k>/ + oof.csv
    n_folds: int = 5
    fold_seed: int = 42
    max_train_rows: int = 0                # 0 = all training-fold rows
    max_valid_rows: int = 0                # 0 = the whole validation fold
    # optimisation (the seed of data order and the Trainer is model.seed)
    epochs: float = 1.0
    max_steps: int = 0                     # > 0 overrides epochs
    batch_size: int = 4                    # rows (pairs) per device per step
    eval_batch_size: int = 8
    grad_accum: int = 1
    lr: float = 1e-4
    head_lr: float = 1e-4                  # learning rate of the classification head
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    scheduler: str = "cosine"              # cosine | linear
    optim: str = "adamw_torch"             # Trainer optimizer; paged_adamw_8bit (bitsandbytes, CUDA): public Gemma-2 QLoRA
    label_smoothing: float = 0.0
    swap_aug: str = "none"                 # none | concat (both orders as rows) | pair (both orders in one batch)
    rdrop_alpha: float = 0.0               # > 0: R-Drop symmetric-KL weight
    ema_decay: float = 0.0                 # > 0: EMA of the trainable weights, used for eval and the saved model
    early_stopping_patience: int = 0       # > 0: stop after this many evals without a better valid log loss, keep the best
    eval_steps: int = 0                    # 0 = evaluate once per epoch
    save_steps: int = 500                  # 0 = checkpoint at each evaluation
    save_total_limit: int = 2
    resume: str = "auto"                   # auto = latest checkpoint of this run if any; "" = fresh; or a path
    keep_checkpoints: bool = False         # keep checkpoints/ after a successful run
    logging_steps: int = 10
    progress: bool = True                  # tqdm bars
    report_to: str = "none"                # Trainer logging: none | tensorboard | wandb | all | a comma list
    # distillation: loss = (1 - alpha) * CE(labels) + alpha * T^2 * KL(teacher_T || student_T)
    teacher: str = ""                      # "" = none; a run (its oof.csv / valid_preds.csv) or a CSV id,winner_model_a,...
    distill_alpha: float = 0.5             # weight of the teacher term
    distill_temperature: float = 2.0       # T: both distributions softened by T
    teacher_other_data: bool = False       # True: the teacher never trained on these rows (skips the out-of-fold check)

    # Range of every numeric setting (kagglelib.core.checks); ModelSpec and TextConfig check their own.
    SETTING_RULES: ClassVar[dict[str, str]] = {
        "fold": "int>=0", "n_folds": "int>=2", "fold_seed": "int>=0", "max_train_rows": "int>=0",
        "max_valid_rows": "int>=0", "epochs": "num>0", "max_steps": "int>=0", "batch_size": "int>=1",
        "eval_batch_size": "int>=1", "grad_accum": "int>=1", "lr": "num>0", "head_lr": "num>0",
        "weight_decay": "num>=0", "warmup_ratio": "[0,1]", "label_smoothing": "[0,1)", "rdrop_alpha": "num>=0",
        "ema_decay": "[0,1)", "early_stopping_patience": "int>=0", "eval_steps": "int>=0", "save_steps": "int>=0",
        "save_total_limit": "int>=1", "logging_steps": "int>=1", "distill_alpha": "[0,1]",
        "distill_temperature": "num>0"}

    def __post_init__(self) -> None:
        super().__post_init__()
        if getattr(self, "method", "finetune") not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        check_settings(self, self.SETTING_RULES)
        if self.swap_aug not in SWAP_MODES:
            raise ValueError(f"swap_aug must be one of {SWAP_MODES}, got {self.swap_aug!r}")
        if self.scheduler not in ("cosine", "linear"):
            raise ValueError(f"scheduler must be cosine or linear, got {self.scheduler!r}")
        check_trainer_options(self.optim, self.report_to)
        if not 0 <= self.fold < self.n_folds:
            raise ValueError(f"fold must be in [0, {self.n_folds}), got {self.fold}")
        self.folds = ",".join(map(str, self.folds)) if isinstance(self.folds, (list, tuple)) else str(self.folds)
        fold_list(self)   # validates folds
        if not 0 <= self.distill_alpha <= 1:
            raise ValueError(f"distill_alpha must be in [0, 1], got {self.distill_alpha}")
        if not self.distill_temperature > 0:
            raise ValueError(f"distill_temperature must be > 0, got {self.distill_temperature}")

    @property
    def smoke(self) -> bool:
        """True for randomly initialised tiny backbones: plumbing checks, never results."""
        return self.model.smoke


# What the two GPU profiles of each class share (the cpu-sample defaults differ in every one of these keys).
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
    # cpu-sample (the defaults): random tiny Gemma-2 smoke run, exercises LoRA + PiSSA + 3-layer head + checkpoint/resume.
    model: ModelSpec = field(default_factory=lambda: ModelSpec(
        backbone="tiny-gemma2", head_layers=3, lora_r=8, lora_alpha=16, lora_init="pissa_niter_4", precision="fp32"))
    text: TextConfig = field(default_factory=lambda: TextConfig(max_length=192, prompt_tokens=48, response_tokens=64))
    max_train_rows: int = 64
    max_valid_rows: int = 48
    max_steps: int = 12
    eval_batch_size: int = 32
    lr: float = 2e-3
    head_lr: float = 2e-3
    swap_aug: str = "pair"
    eval_steps: int = 6
    save_steps: int = 6
    logging_steps: int = 2
    PROFILE_DEFAULTS: ClassVar[dict[str, dict[str, Any]]] = {
        # `python -m kagglelib.plan --profile colab-a100 --notebook 03`: 9B bf16 LoRA, 27 GiB of an A100-40's 39,
        # 3.6e18 FLOP, ~9.6 h at 35% of 312 TFLOP/s (Colab Pro+ sessions: 24 h; checkpoints every 200 steps).
        "colab-a100": {**_DECODER_GPU, "backbone": "google/gemma-2-9b-it", "precision": "bf16",
                       "allow_download": True, "max_length": 2048},
        # The 9B does not fit a 12 h T4 session (plan: 3.1e18 FLOP, ~30 h 4-bit on both T4s). Gemma-2-2B in fp16
        # (4.9 GiB of weights, no 4-bit dequantisation cost) over the whole training fold once, without swap
        # copies (TTA covers order at inference): 3.7e17 FLOP, 7.8 GiB per T4, ~2.9 h data-parallel on both T4s.
        "kaggle-t4": {**_DECODER_GPU, "backbone": "google/gemma-2-2b-it", "precision": "fp16",
                      "max_length": 1024, "swap_aug": "none"},
    }


@dataclass
class EncoderTrainConfig(TrainConfig):
    """Notebook 04: DeBERTa-v3 / BERT-family / MiniLM classifier (full fine-tune by default)."""

    run_name: str = "encoder"
    # cpu-sample (the defaults): real pretrained MiniLM on the bundled sample. Fine-tuning it on ~900 rows scores worse
    # than the class prior out of fold (1.1098); the frozen pairwise recipe reads every text whole and learns (README).
    model: ModelSpec = field(default_factory=lambda: ModelSpec(backbone="minilm", use_lora=False, freeze_layers=1,
                                                               precision="fp32"))
    text: TextConfig = field(default_factory=lambda: TextConfig(max_length=256, prompt_tokens=32, response_tokens=96))
    epochs: float = 2.0
    batch_size: int = 8
    eval_batch_size: int = 64
    head_lr: float = 3e-3
    scheduler: str = "linear"
    logging_steps: int = 20
    # method="pairwise" (kagglelib.models.pairwise): frozen encoder over whole texts + swap-symmetric head, every fold
    method: str = "pairwise"               # finetune | pairwise
    window_tokens: int = 128               # pairwise: tokens per encoder window (each text read in windows)
    max_windows: int = 4                   # pairwise: windows per text (beyond: the first ones and the last)
    pairwise_max_chars: int = 6000         # pairwise: head+tail character cut before tokenising
    pairwise_components: str = "8,32"      # pairwise: projection sizes the inner CV chooses from (0 = whole vectors)
    pairwise_l2: str = "0.1,0.3,1.0"       # pairwise: weight penalties the inner CV chooses from
    pairwise_emb_scale: float = 1.0        # pairwise: scale of the embedding columns after standardising
    pairwise_hidden: int = 64              # pairwise: hidden width of a 3-layer head
    pairwise_steps: int = 200              # pairwise: full-batch Adam steps per head
    pairwise_lr: float = 1e-2              # pairwise: Adam learning rate of the head
    pairwise_head: str = "symmetric"       # pairwise: symmetric (swap-exact) | order (order-aware read-out: swap TTA matters)
    pairwise_tta: bool = False             # pairwise, order head: average with the A/B-swapped rows (out of fold and after)
    pairwise_tune: str = "none"            # pairwise: none (frozen) | ffn (train the last layer's feed-forward block:
                                           #   LoRA with lora_r/lora_alpha/lora_init if use_lora, else all its weights)
    pairwise_tune_epochs: int = 3          # pairwise_tune: passes over each fold's training rows
    pairwise_tune_lr: float = 1e-4         # pairwise_tune without LoRA: Adam learning rate of the block
    pairwise_lora_lr: float = 1e-3         # pairwise_tune with LoRA: Adam learning rate of the adapters
    pairwise_tune_head_lr: float = 1e-3    # pairwise_tune: Adam learning rate of the warm-started head
    pairwise_tune_tokens: int = 16         # pairwise_tune: tokens sampled per text per step
    pairwise_tune_batch: int = 64          # pairwise_tune: rows per step
    PROFILE_DEFAULTS: ClassVar[dict[str, dict[str, Any]]] = {
        # Plan: without checkpointing 8x1536 needs ~64 GiB of activations (DeBERTa's 16 heads x 1536^2 scores per
        # layer); with it 12.8 GiB of an A100-40, ~1.2 h.
        "colab-a100": {**_ENCODER_GPU, "precision": "bf16", "allow_download": True, "max_length": 1536,
                       "eval_batch_size": 16, "grad_accum": 2},
        # Plan: full fine-tune fp16, 10.4 GiB of 15 per T4, 3.9e17 FLOP, ~2.9 h on both T4s (2 epochs, swap copies).
        "kaggle-t4": {**_ENCODER_GPU, "precision": "fp16", "max_length": 1024,
                      "batch_size": 4, "eval_batch_size": 8, "grad_accum": 4},
    }


    SETTING_RULES: ClassVar[dict[str, str]] = {
        **TrainConfig.SETTING_RULES, "window_tokens": "int>=3", "max_windows": "int>=1", "pairwise_hidden": "int>=1",
        "pairwise_steps": "int>=1", "pairwise_lr": "num>0", "pairwise_tune_epochs": "int>=0",
        "pairwise_tune_lr": "num>0", "pairwise_lora_lr": "num>0", "pairwise_tune_head_lr": "num>0",
        "pairwise_tune_tokens": "int>=1", "pairwise_tune_batch": "int>=1"}

    def __post_init__(self) -> None:
        super().__post_init__()
        for name, allowed in (("pairwise_head", PAIRWISE_HEADS), ("pairwise_tune", PAIRWISE_TUNES)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.pairwise_tta and self.pairwise_head == "symmetric":
            raise ValueError("pairwise_tta=True needs pairwise_head='order': the symmetric head is swap-exact, "
                             "so TTA cannot change its predictions")


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


def config_from_json(path: str | Path) -> TrainConfig:
    """A config from a JSON file of flat parameter values, as ``config.json`` holds them (``config_class`` picks
    Decoder/Encoder/TrainConfig); names missing from an older file take the profile's value."""
    raw = read_json(path)
    cls = CONFIG_CLASSES.get(raw.pop("config_class", "TrainConfig"), TrainConfig)
    unknown = sorted(set(raw) - set(parameter_names(cls)) - set(METADATA_KEYS))
    if unknown:
        raise ValueError(f"{path}: unknown config field(s) {unknown}")
    return make_config(cls, **{k: v for k, v in raw.items() if k not in METADATA_KEYS})
