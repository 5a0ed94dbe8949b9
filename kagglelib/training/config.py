"""Fine-tuning settings (notebooks 03 and 04): one TrainConfig, the decoder and encoder variants and their profiles."""
from __future__ import annotations

import dataclasses
import difflib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from ..core.checks import check_settings
from ..core.io import comma_list, read_json
from ..models.spec import SMOKE_BACKBONES, spec_from, text_config_from
from ..run.config import METADATA_KEYS, RunConfig, from_params


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
    optim: str = "adamw_torch"             # Trainer optimizer; paged_adamw_8bit (bitsandbytes, CUDA): public Gemma-2 QLoRA
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
    report_to: str = "none"                # Trainer logging: none | tensorboard | wandb | all | a comma list
    # distillation: loss = (1 - alpha) * CE(labels) + alpha * T^2 * KL(teacher_T || student_T)
    teacher: str = ""                      # "" = none; a run (its oof.csv / valid_preds.csv) or a CSV id,winner_model_a,...
    distill_alpha: float = 0.5             # weight of the teacher term
    distill_temperature: float = 2.0       # T: both distributions softened by T
    teacher_other_data: bool = False       # True: the teacher never trained on these rows (skips the out-of-fold check)

    # Range of every numeric setting (kagglelib.core.checks), checked once the profile has filled the Nones.
    SETTING_RULES: ClassVar[dict[str, str]] = {
        "head_layers": "int>=1", "head_dropout": "[0,1)", "lora_r": "int>=1", "lora_alpha": "num>0",
        "lora_dropout": "[0,1)", "freeze_layers": "int>=0", "max_length": "int>=1", "prompt_tokens": "int>=0",
        "response_tokens": "int>=1", "head_ratio": "[0,1]", "fold": "int>=0", "n_folds": "int>=2",
        "fold_seed": "int>=0", "max_train_rows": "int>=0", "max_valid_rows": "int>=0", "epochs": "num>0",
        "max_steps": "int>=0", "batch_size": "int>=1", "eval_batch_size": "int>=1", "grad_accum": "int>=1",
        "lr": "num>0", "head_lr": "num>0", "weight_decay": "num>=0", "warmup_ratio": "[0,1]",
        "label_smoothing": "[0,1)", "rdrop_alpha": "num>=0", "ema_decay": "[0,1)", "early_stopping_patience": "int>=0",
        "eval_steps": "int>=0", "save_steps": "int>=0", "save_total_limit": "int>=1", "seed": "int>=0",
        "logging_steps": "int>=1", "distill_alpha": "[0,1]", "distill_temperature": "num>0"}

    def __post_init__(self) -> None:
        super().__post_init__()
        if getattr(self, "method", "finetune") not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        missing = [f.name for f in dataclasses.fields(self) if getattr(self, f.name) is None]
        if missing:
            raise ValueError(f"{type(self).__name__}: no value and no {self.profile} default for {missing}")
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
        spec_from(self)   # validates the model fields early
        text_config_from(self)   # validates the text fields early

    @property
    def smoke(self) -> bool:
        """True for randomly initialised tiny backbones: plumbing checks, never results."""
        return self.backbone in SMOKE_BACKBONES


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
        # The 9B does not fit a 12 h T4 session (plan: 3.1e18 FLOP, ~30 h 4-bit on both T4s). Gemma-2-2B in fp16
        # (4.9 GiB of weights, no 4-bit dequantisation cost) over the whole training fold once, without swap
        # copies (TTA covers order at inference): 3.7e17 FLOP, 7.8 GiB per T4, ~2.9 h data-parallel on both T4s.
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
    # method="pairwise" (kagglelib.models.pairwise): frozen encoder over whole texts + swap-symmetric head, every fold
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
                       "batch_size": 8, "eval_batch_size": 16, "grad_accum": 2},
        # Plan: full fine-tune fp16, 10.4 GiB of 15 per T4, 3.9e17 FLOP, ~2.9 h on both T4s (2 epochs, swap copies).
        "kaggle-t4": {**_ENCODER_GPU, "precision": "fp16", "allow_download": False, "max_length": 1024,
                      "batch_size": 4, "eval_batch_size": 8, "grad_accum": 4},
        # Real pretrained MiniLM on the bundled sample. Fine-tuning it on ~900 rows scores worse than the class
        # prior out of fold (1.1098); the frozen pairwise recipe reads every text whole and learns (README).
        "cpu-sample": dict(method="pairwise", backbone="minilm", freeze_layers=1, gradient_checkpointing=False, precision="fp32",
                           allow_download=False, max_length=256, prompt_tokens=32, response_tokens=96, batch_size=8,
                           eval_batch_size=64, grad_accum=1, lr=1e-4, head_lr=3e-3, scheduler="linear",
                           swap_aug="none", logging_steps=20),
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
    """A config from a JSON file of field values (``config_class`` picks Decoder/Encoder/TrainConfig)."""
    raw = read_json(path)
    cls = CONFIG_CLASSES.get(raw.pop("config_class", "TrainConfig"), TrainConfig)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names - set(METADATA_KEYS))
    if unknown:
        raise ValueError(f"{path}: unknown config field(s) {unknown}")
    return from_params(cls, raw)
