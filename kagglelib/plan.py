"""Pre-flight plan: peak GPU memory, FLOPs and hours of a training or inference run, before any weight is loaded.

Inputs: the notebook's config (profile defaults + overrides), the model's shape (its ``config.json``, or the
hand-written shapes below when the weights are absent), the data's token lengths after the real truncation
(:func:`kagglelib.text.encode_pairs`; with the model's tokenizer when present, else ~4 characters per token) and
the target GPU. Output: a table that says plainly when a plan exceeds the GPU's memory or Kaggle's limits::

    python -m kagglelib.plan --profile kaggle-t4 --notebook 03
    python -m kagglelib.plan --profile kaggle-t4 --notebook 05 --runs gemma_lora,encoder --gpu 2xT4

The model is analytic (FLOPs = 2 x parameters x tokens per forward, attention added; activation memory after
Korthikanti et al. 2022); the efficiencies below are public figures until ``bench/gpu_check.py`` has measured
this GPU (its JSON, when present, replaces them).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .core.paths import REPO_ROOT, sample_paths
from .data.folds import split_paths
from .data.load import load_arena
from .data.text import INSTRUCTION, TextConfig, encode_pairs
from .inference.submit import InferenceConfig
from .models.build import load_tokenizer, lora_targets, resolve_backbone
from .models.device import BF16_MIN_CAPABILITY, choose_attention, flash_attn_version, precision_for_capability, torch_version
from .models.shape import (GIB, KNOWN_SHAPES, Shape, kbit_training_upcast_bytes, model_shape, resolve_quantization,
                           weight_bytes)
from .run.config import flatten, from_params, make_config, part_of
from .run.folder import Run
from .run.layout import find_run
from .training.baseline import BaselineConfig
from .training.config import DecoderTrainConfig, EncoderTrainConfig
from .training.launch import choose_layout
from .training.loop import planned_steps


@dataclass(frozen=True)
class Gpu:
    """One target: memory usable per GPU, dense 16-bit tensor-core peak, GPUs used, bf16 kernels."""

    name: str
    count: int
    memory_gib: float
    peak_flops: float
    bf16: bool
    source: str


GPUS = {
    # nvidia-smi on a Kaggle T4 shows 15,360 MiB; 65 TFLOP/s fp16 tensor core (NVIDIA T4 datasheet, 2019).
    "T4": Gpu("T4", 1, 15.0, 65e12, False, "NVIDIA T4 datasheet: 65 TFLOPS FP16 (tensor), 16 GB"),
    "2xT4": Gpu("2xT4", 2, 15.0, 65e12, False, "Kaggle 'GPU T4 x2': two T4s, one model per GPU"),
    # 312 TFLOP/s dense bf16 (NVIDIA A100 datasheet, without sparsity); 40 / 80 GB HBM.
    "A100-40": Gpu("A100-40", 1, 39.4, 312e12, True, "NVIDIA A100 datasheet: 312 TFLOPS BF16 dense, 40 GB"),
    "A100-80": Gpu("A100-80", 1, 79.1, 312e12, True, "NVIDIA A100 datasheet: 312 TFLOPS BF16 dense, 80 GB"),
    # 989 TFLOP/s dense bf16 for the SXM part (NVIDIA H100 datasheet, without sparsity).
    "H100": Gpu("H100", 1, 79.1, 989e12, True, "NVIDIA H100 SXM datasheet: 989 TFLOPS BF16 dense, 80 GB"),
    # Same dense bf16 peak as the H100 SXM, 141 GB HBM3e (NVIDIA H200 datasheet).
    "H200": Gpu("H200", 1, 139.8, 989e12, True, "NVIDIA H200 SXM datasheet: 989 TFLOPS BF16 dense, 141 GB"),
}
# Which GPU each profile trains and predicts on (Colab's A100 is the 40 GB part by default).
# Kaggle's only T4 choice is "GPU T4 x2": notebooks 03/04 train data-parallel on both (kagglelib.training.launch).
PROFILE_GPUS = {"kaggle-t4": {"train": "2xT4", "infer": "2xT4"}, "colab-a100": {"train": "A100-40", "infer": "A100-40"},
                "cpu-sample": {"train": "T4", "infer": "T4"}}
# Kaggle: a notebook session stops after 12 h; a code-competition submission must finish within 9 h (LMSYS
# competition rules, "CPU/GPU Notebook <= 9 hours run-time"). Colab Pro+ sessions last up to 24 h.
LIMIT_HOURS = {"kaggle-t4": {"train": 12.0, "infer": 9.0}, "colab-a100": {"train": 24.0, "infer": 24.0},
               "cpu-sample": {"train": 12.0, "infer": 9.0}}
# Full competition sizes (LMSYS train.csv: 57,477 rows; test: "approximately 25,000 rows" per the data page),
# used when the config points at the bundled 1,110-row sample: its length distribution, scaled to the real size.
FULL_TRAIN_ROWS, FULL_TEST_ROWS = 57_477, 25_000
# Model FLOP utilisation (achieved / peak). Optimised large-scale training reaches 46-52% (PaLM, Chowdhery et al.
# 2022, Table 3; Megatron-LM, Narayanan et al. 2021); HF Trainer with padding, eager attention and checkpointing
# runs lower: 25-35% on a T4 (issue 11's estimate), so 0.30 there and 0.35 on Ampere/Hopper.
TRAIN_MFU = {"T4": 0.30, "2xT4": 0.30, "A100-40": 0.35, "A100-80": 0.35, "H100": 0.35, "H200": 0.35}
# Inference: public LMSYS solutions ran Gemma-2-9B 4-bit with TTA over ~25k rows on 2xT4 in about 3-5 h; with
# this module's FLOP count that is ~40% of the T4's fp16 peak before the 4-bit factor below.
INFER_MFU = {"T4": 0.40, "2xT4": 0.40, "A100-40": 0.45, "A100-80": 0.45, "H100": 0.45, "H200": 0.45}
# Speed relative to 16-bit: bitsandbytes dequantises 4-bit weights on every matmul (QLoRA, Dettmers et al. 2023,
# trades speed for memory); 8-bit is 2.4-5.7x slower in public reports (kagglelib.models.INT8_SLOWDOWN).
QUANT_SPEED = {"none": 1.0, "4bit": 0.75, "8bit": 1 / 4.0}
CUDA_OVERHEAD_GIB = 1.0   # CUDA context (~0.4 GB), cuBLAS workspace, allocator fragmentation
BENCH_JSON = REPO_ROOT / "bench" / "results" / "gpu_check.json"


class CharTokenizer:
    """Tokenizer-free stand-in: one token per 4 characters (English-heavy chat text averages ~4 chars/token)."""

    pad_token_id = 0

    @staticmethod
    def _ids(text: str) -> list[int]:
        return [zlib.crc32(text[i:i + 4].encode()) % 50000 + 10 for i in range(0, len(text), 4)]

    def __call__(self, text: Any, text_pair: Any = None, add_special_tokens: bool = True, **_: Any) -> dict:
        if isinstance(text, list):
            return {"input_ids": [self._ids(t or "") for t in text]}
        ids = self._ids(text)
        if text_pair is not None:
            ids = ids + [2] + self._ids(text_pair)
        return {"input_ids": ([1] + ids + [2]) if add_special_tokens else ids}


def token_lengths(train_path: str, backbone: str, text_cfg: Any, suffix: str = "",
                  max_rows: int = 2000) -> tuple[np.ndarray, str]:
    """Per-row input lengths after truncation (up to ``max_rows`` rows of the file) and how they were counted."""

    df = _load_files(train_path)
    if len(df) > max_rows:
        df = df.sample(max_rows, random_state=0)
    try:
        tokenizer = load_tokenizer(resolve_backbone(backbone))
        how = f"{type(tokenizer).__name__} of {backbone}"
    except (FileNotFoundError, OSError, ValueError):
        tokenizer, how = CharTokenizer(), "estimated at 4 characters per token (no tokenizer for this backbone here)"
    lengths = np.array([len(x) for x in encode_pairs(tokenizer, df, text_cfg, suffix)], dtype=np.int64)
    names = ",".join(Path(p).name for p in split_paths(train_path))
    return lengths, f"{how}; {len(df)} rows of {names}"


def _load_files(path: str) -> pd.DataFrame:
    """Every file of a (comma-separated) train_path, rows one after another (the texts are all the plan reads)."""
    return pd.concat([load_arena(p) for p in split_paths(path)], ignore_index=True)


def flops_per_row(shape: Shape, length: np.ndarray, attention_factor: float = 1.0) -> np.ndarray:
    """Forward FLOPs per row: 2 x matrix parameters per token + attention scores (QK^T and AV)."""
    attn = 4.0 * shape.layers * shape.heads * shape.head_dim * length.astype(np.float64) ** 2 * attention_factor
    return 2.0 * shape.linear_params * length + attn


def attention_factor(shape: Shape) -> float:
    """DeBERTa's disentangled attention adds content-to-position and position-to-content score matrices."""
    return 3.0 if shape.model_type.startswith("deberta") else 1.0


def lora_params(shape: Shape, r: int, targets: list[str]) -> int:
    """LoRA parameters: r x (in + out) per targeted matrix per layer."""
    h, q, kv, i = shape.hidden, shape.heads * shape.head_dim, shape.kv_heads * shape.head_dim, shape.intermediate
    sizes = {"q_proj": h + q, "k_proj": h + kv, "v_proj": h + kv, "o_proj": q + h, "gate_proj": h + i,
             "up_proj": h + i, "down_proj": i + h, "query_proj": 2 * h, "key_proj": 2 * h, "value_proj": 2 * h,
             "query": 2 * h, "key": 2 * h, "value": 2 * h, "dense": 2 * h + (h + i) + (i + h)}
    return shape.layers * r * sum(sizes.get(t, 2 * h) for t in targets)


def layer_activation_bytes(shape: Shape, rows: int, length: int, attn: str) -> float:
    """16-bit activations one layer keeps for backward (Korthikanti et al. 2022, eq. 1, generalised to gated MLPs).

    sbh(18) for attention/norm inputs + k sb*intermediate (k=4 plain MLP, 6 gated) + the score matrices:
    5 bytes/score with sdpa-math, 8 with eager (Gemma upcasts the softmax to fp32), none with flash.
    """
    sb = rows * length
    # DeBERTa: its c2p/p2c score matrices are summed into one before the softmax; ~40% more transient bytes.
    score_bytes = {"flash_attention_2": 0.0, "flex_attention": 0.0, "eager": 8.0}.get(attn, 5.0) * (1.4 if attention_factor(shape) > 1 else 1.0)
    return (sb * (18 * shape.hidden + (6 if shape.gated else 4) * shape.intermediate)
            + score_bytes * rows * shape.heads * length ** 2)


def inference_activation_bytes(shape: Shape, batch_tokens: int, length: int, attn: str) -> float:
    """Peak transient memory of one layer's forward on a batch of ``batch_tokens`` (rows x longest)."""
    score_bytes = {"flash_attention_2": 0.0, "flex_attention": 0.0, "eager": 6.0}.get(attn, 4.0) * (1.4 if attention_factor(shape) > 1 else 1.0)
    return batch_tokens * 2 * (4 * shape.hidden + 3 * shape.intermediate) + score_bytes * batch_tokens * shape.heads * length


def load_bench(path: Path | None = None) -> dict[str, Any]:
    """Measured utilisation per bench key (:func:`bench_key`) from bench/gpu_check.py's JSON ({} when absent)."""
    path = Path(os.environ.get("KAGGLELIB_GPU_BENCH", "")) if os.environ.get("KAGGLELIB_GPU_BENCH") else (path or BENCH_JSON)
    try:
        return json.loads(path.read_text()).get("mfu", {})
    except (OSError, ValueError):
        return {}


def model_key(backbone: str) -> str:
    """The bench's model name for a backbone: its hand-written shape's key (gemma-2-9b...), else its last path part."""
    name = backbone.rstrip("/").split("/")[-1].lower()
    return next((key for key in KNOWN_SHAPES if name.startswith(key)), name)


def train_mode(quantization: str, use_lora: bool) -> str:
    """The bench's training mode: train-4bit / train-8bit (QLoRA), train-lora (16-bit base), train-full."""
    return f"train-{quantization}" if quantization != "none" else ("train-lora" if use_lora else "train-full")


def infer_mode(quantization: str) -> str:
    return f"infer-{quantization}" if quantization != "none" else "infer-16bit"


def bench_key(gpu: str, model: str, mode: str, precision: str) -> str:
    """GPU x model x mode x precision, e.g. 'T4/gemma-2-2b/train-lora/fp16' (2xT4 measures as one T4)."""
    return f"{gpu.replace('2x', '')}/{model}/{mode}/{precision}"


def efficiency(gpu: str, model: str, mode: str, precision: str, quantization: str,
               bench: dict[str, Any]) -> tuple[float, str]:
    """Achieved fraction of the GPU's peak: measured when the bench has this exact key, else the public constant."""
    key = bench_key(gpu, model, mode, precision)
    if key in bench:
        return float(bench[key]), f"measured by bench/gpu_check.py ({key})"
    base = (TRAIN_MFU if mode.startswith("train") else INFER_MFU)[gpu]
    return base * QUANT_SPEED[quantization], (f"public-figure constant ({base:.2f} x {QUANT_SPEED[quantization]:.2f} "
                                              f"for {quantization}; no measured {key})")


@dataclass
class Plan:
    """One estimate; ``problems`` empty means it fits."""

    title: str
    gpu: str
    rows: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def fits(self) -> bool:
        return not self.problems

    def table(self) -> str:
        width = max(len(k) for k in self.rows) if self.rows else 10
        lines = [f"== {self.title} on {self.gpu}"]
        lines += [f"  {k:<{width}}  {v}" for k, v in self.rows.items()]
        lines += [f"  note: {n}" for n in self.notes]
        lines.append("  VERDICT: fits" if self.fits else "  VERDICT: DOES NOT FIT\n" + "\n".join(
            f"    - {p}" for p in self.problems))
        return "\n".join(lines)


def _n_rows(path: str, full: int, profile: str) -> tuple[int, str]:
    """Rows of the file(s), or the full competition size when the file is the bundled sample on a GPU profile."""
    files = split_paths(path)
    n = len(_load_files(path))
    names = ", ".join(Path(p).name for p in files)
    sample = len(files) == 1 and Path(files[0]).resolve() in [p.resolve() for p in sample_paths()]
    if sample and profile != "cpu-sample":
        return full, f"{full:,} (full competition size; {names} is the {n:,}-row sample)"
    return n, f"{n:,} ({names})"


def _precision_bytes(precision: str, gpu: Gpu) -> tuple[str, int]:

    if precision == "auto":
        precision = precision_for_capability(BF16_MIN_CAPABILITY if gpu.bf16 else (7, 5))
    return precision, {"bf16": 2, "fp16": 2, "fp32": 4}[precision]


def _attention(shape: Shape, requested: str, gpu: Gpu) -> str:
    """The kernel the run will get on ``gpu`` (with this machine's flash-attn and torch)."""
    cap = (8, 0) if gpu.bf16 else (7, 5)
    return choose_attention(shape.model_type, cap, flash_attn_version(), requested, torch_version=torch_version()) or "sdpa"


def plan_training(cfg: Any, gpu_name: str | None = None, bench: dict[str, Any] | None = None) -> Plan:
    """Plan for a TrainConfig (notebooks 03/04): memory of the longest batch, FLOPs and hours of the whole run."""

    gpu_name = gpu_name or PROFILE_GPUS[cfg.profile]["train"]
    gpu, bench = GPUS[gpu_name], load_bench() if bench is None else bench
    spec, text_cfg = cfg.model, cfg.text
    shape = model_shape(spec.backbone)
    lengths, how = token_lengths(cfg.train_path, spec.backbone, text_cfg, INSTRUCTION if spec.task == "next_token" else "")
    total, total_note = _n_rows(cfg.train_path, FULL_TRAIN_ROWS, cfg.profile)
    n_train = int(total * (cfg.n_folds - 1) / cfg.n_folds)
    n_train = min(n_train, cfg.max_train_rows) if cfg.max_train_rows else n_train
    n_valid = int(total / cfg.n_folds)
    n_valid = min(n_valid, cfg.max_valid_rows) if cfg.max_valid_rows else n_valid
    # What the notebook's train cell does on this GPU (kagglelib.training.launch): one process per GPU, each taking
    # batch_size rows per micro-step; the Trainer's steps come from the same function as here.
    layout = choose_layout(gpu.count)
    dataset_rows = n_train * (2 if cfg.swap_aug == "concat" else 1)   # concat: both A/B orders as rows
    _, steps = planned_steps(dataset_rows, cfg.batch_size, cfg.grad_accum, layout.processes, cfg.epochs, cfg.max_steps)
    rows_per_step = cfg.batch_size * cfg.grad_accum * layout.processes * (2 if cfg.swap_aug == "pair" else 1)
    rows_trained = steps * rows_per_step
    warmup = int(np.ceil(steps * cfg.warmup_ratio))
    evals = max(1, math.ceil(cfg.epochs)) if not cfg.eval_steps else max(1, steps // cfg.eval_steps)
    precision, wbytes = _precision_bytes(spec.precision, gpu)
    attn = _attention(shape, spec.attn_implementation, gpu)
    quant = spec.quantization
    ckpt = bool(spec.gradient_checkpointing or quant != "none")   # prepare_model_for_kbit_training checkpoints
    fwd = flops_per_row(shape, lengths, attention_factor(shape))
    # LoRA: forward + input gradients (2 forwards' worth); full fine-tuning adds weight gradients (3); +1 recompute.
    mult = (2.0 if spec.use_lora else 3.0) + (1.0 if ckpt else 0.0)
    train_flops = float(fwd.mean()) * mult * rows_trained
    eval_flops = float(fwd.mean()) * n_valid * evals
    eff, eff_src = efficiency(gpu_name, model_key(spec.backbone), train_mode(quant, spec.use_lora), precision, quant,
                              bench)
    seconds = (train_flops + eval_flops) / (gpu.peak_flops * eff * layout.processes)
    # Memory: weights + trainable state (fp32 weight, grad, Adam m and v) + activations of the longest micro-batch.
    longest = int(min(text_cfg.max_length, lengths.max()))
    micro_rows = cfg.batch_size * (2 if cfg.swap_aug == "pair" else 1)
    if spec.use_lora:
        targets = lora_targets(spec, shape.model_type)
        trainable = lora_params(shape, spec.lora_r, targets) + shape.hidden * 3
        weights = weight_bytes(shape, quant, wbytes)
        upcast = kbit_training_upcast_bytes(shape, quant, wbytes)
    else:
        upcast = 0.0
        trainable = shape.linear_params + shape.embed_params
        weights = 0.0   # the fp32 weights are counted in the trainable state
    state = trainable * 16.0 + (trainable * 4.0 if layout.processes > 1 else 0.0)   # + DDP's fp32 gradient buckets
    per_layer = layer_activation_bytes(shape, micro_rows, longest, attn)
    acts = (shape.layers * micro_rows * longest * shape.hidden * 2 + 2 * per_layer) if ckpt else shape.layers * per_layer
    peak = weights + upcast + state + acts + CUDA_OVERHEAD_GIB * GIB
    plan = Plan(f"training {spec.backbone} ({'LoRA r=%d' % spec.lora_r if spec.use_lora else 'full fine-tune'}, "
                f"{quant}, {precision}, profile {cfg.profile})", gpu_name)
    plan.rows.update({
        "model shape": f"{shape.layers} layers, hidden {shape.hidden}, {shape.linear_params / 1e9:.2f}B matrix + "
                       f"{shape.embed_params / 1e9:.2f}B embedding params [{shape.source}]",
        "token lengths": f"mean {lengths.mean():.0f}, p95 {np.percentile(lengths, 95):.0f}, max {lengths.max()} "
                         f"(max_length {text_cfg.max_length}) [{how}]",
        "rows": f"train file {total_note}; {n_train:,} train x{2 if cfg.swap_aug != 'none' else 1} (swap {cfg.swap_aug})"
                f" x {cfg.epochs} epoch(s) = {rows_trained:,.0f} rows seen ({rows_per_step} per step), {steps:,} steps "
                f"(warmup {warmup}, {cfg.scheduler} decay); {n_valid:,} valid x {evals} eval(s)",
        "GPUs": layout.how,
        "attention / checkpointing": f"{attn} / {'on' if ckpt else 'off'}",
        "peak memory": f"{peak / GIB:.1f} GiB of {gpu.memory_gib:.1f} per GPU (weights {weights / GIB:.1f}"
                       + (f" + {upcast / GIB:.1f} fp32 upcast of non-4-bit params by prepare_model_for_kbit_training"
                          if upcast else "") + f", trainable state "
                       f"{state / GIB:.1f}, activations {acts / GIB:.1f} at {micro_rows}x{longest} tokens, "
                       f"CUDA {CUDA_OVERHEAD_GIB:.1f})",
        "FLOPs": f"{train_flops:.2e} train + {eval_flops:.2e} validation",
        "hours": f"{seconds / 3600:.1f} h at {eff:.0%} of {layout.processes}x{gpu.peak_flops / 1e12:.0f} TFLOP/s "
                 f"[{eff_src}]",
    })
    limit = LIMIT_HOURS[cfg.profile]["train"]
    if peak / GIB > gpu.memory_gib:
        plan.problems.append(f"peak memory {peak / GIB:.1f} GiB exceeds the {gpu_name}'s {gpu.memory_gib:.1f} GiB "
                             "(lower batch_size or max_length, turn on gradient_checkpointing, or quantise)")
    if seconds / 3600 > limit:
        plan.problems.append(f"{seconds / 3600:.1f} h exceeds the {limit:.0f} h session limit of {cfg.profile} "
                             "(fewer rows/epochs, a smaller backbone or max_length, or a faster GPU)")
    if cfg.smoke:
        plan.notes.append("smoke backbone: the figures are for the tiny random model as if it ran on this GPU")
    return plan


def _run_config(run: str, output_dir: str, profile: str) -> tuple[dict[str, Any] | None, str]:
    """A run's saved config.json; for a default run name (02/03/04's ``run_name``) not trained yet, the training
    profile's config; else (None, why): a run that is not found is never guessed from its name."""
    try:
        found = Run.at(find_run(run, output_dir))
        return found.config, str(found.config_file)
    except FileNotFoundError as err:
        missing = str(err)
    # A run not trained yet is planned only under its notebook's default name, never guessed from a name's parts.
    untrained = {BaselineConfig.run_name: BaselineConfig, DecoderTrainConfig.run_name: DecoderTrainConfig,
                 EncoderTrainConfig.run_name: EncoderTrainConfig}
    cls = untrained.get(run)
    if cls is None:
        return None, (f"{missing}; and {run!r} is not a default run name {sorted(untrained)} planned before training, "
                      "so it is not planned (misspelt? not copied here yet?)")
    if cls is BaselineConfig:
        return {"config_class": "BaselineConfig"}, "not trained yet: feature model (02)"
    # On Kaggle the 9B is trained elsewhere (colab-a100) and only predicted here: plan that run.
    train_profile = "colab-a100" if (cls is DecoderTrainConfig and profile == "kaggle-t4") else profile
    cfg = make_config(cls, profile=train_profile, run_name=run, output_dir=output_dir or "")
    return {**flatten(cfg), "config_class": cls.__name__}, f"not trained yet: {cls.__name__} profile {train_profile}"


def plan_inference(cfg: Any, gpu_name: str | None = None, bench: dict[str, Any] | None = None) -> Plan:
    """Plan for an InferenceConfig (notebook 05): every run's memory per GPU and hours with TTA, summed."""

    gpu_name = gpu_name or PROFILE_GPUS[cfg.profile]["infer"]
    gpu, bench = GPUS[gpu_name], load_bench() if bench is None else bench
    n_test, test_note = _n_rows(cfg.test_path, FULL_TEST_ROWS, cfg.profile)
    passes = 2 if cfg.tta else 1
    plan = Plan(f"inference of {', '.join(cfg.runs)} ({'swap TTA' if cfg.tta else 'no TTA'}, profile {cfg.profile})",
                gpu_name)
    plan.rows["test rows"] = f"{test_note} x{passes} passes"
    total_s = 0.0
    for run in cfg.runs:
        rc, where = _run_config(run, cfg.output_dir, cfg.profile)
        if rc is None:
            plan.rows[run] = "not planned: run not found"
            plan.problems.append(f"run {run!r} not found: {where}")
            continue
        if rc.get("config_class") == "BaselineConfig":
            plan.rows[f"{run}"] = "feature model on CPU: minutes [not modelled]"
            continue
        shape = model_shape(rc["backbone"])
        precision, wbytes = _precision_bytes(cfg.precision, gpu)
        quant = resolve_quantization(cfg.quantization, rc, shape, gpu.memory_gib * GIB, wbytes)
        text_cfg = part_of(TextConfig, rc)
        lengths, how = token_lengths(cfg.train_path or rc.get("train_path", ""), rc["backbone"], text_cfg,
                                     INSTRUCTION if rc.get("task") == "next_token" else "")
        attn = _attention(shape, rc.get("attn_implementation", "auto"), gpu)
        flops = float(flops_per_row(shape, lengths, attention_factor(shape)).mean()) * n_test * passes
        eff, eff_src = efficiency(gpu_name, model_key(rc["backbone"]), infer_mode(quant), precision, quant, bench)
        seconds = flops / (gpu.peak_flops * eff * gpu.count)
        total_s += seconds
        longest = int(min(text_cfg.max_length, lengths.max()))
        peak = (weight_bytes(shape, quant, wbytes) + inference_activation_bytes(shape, cfg.batch_tokens, longest, attn)
                + CUDA_OVERHEAD_GIB * GIB)
        plan.rows[run] = (f"{rc['backbone']} [{shape.source}], {quant}, {precision}, {attn}: peak {peak / GIB:.1f} GiB "
                          f"per GPU at {cfg.batch_tokens} tokens/batch; {flops:.2e} FLOPs; {seconds / 3600:.2f} h "
                          f"at {eff:.0%} of {gpu.count}x{gpu.peak_flops / 1e12:.0f} TFLOP/s [{eff_src}]; lengths mean "
                          f"{lengths.mean():.0f} [{how}]; config: {where}")
        if peak / GIB > gpu.memory_gib:
            plan.problems.append(f"{run}: {peak / GIB:.1f} GiB per GPU exceeds the {gpu_name}'s {gpu.memory_gib:.1f} GiB "
                                 "(quantization='4bit', or a smaller batch_tokens)")
    limit = min(LIMIT_HOURS[cfg.profile]["infer"], (cfg.time_budget_s or math.inf) / 3600)
    plan.rows["hours (all runs)"] = f"{total_s / 3600:.1f} h (limit {limit:.1f} h)"
    if total_s / 3600 > limit:
        plan.problems.append(f"{total_s / 3600:.1f} h of inference exceeds the {limit:.1f} h limit (Kaggle allows 9 h "
                             "per submission): drop a run, turn off TTA, or shorten max_length")
    return plan


def notebook_plan(notebook: str, params: dict[str, Any] | None = None, gpu: str | None = None) -> Plan:
    """The plan for notebook 03, 04 or 05 with the given parameters (a notebook passes ``globals()``)."""

    params = dict(params or {})
    cls = {"03": DecoderTrainConfig, "04": EncoderTrainConfig,
           "05": InferenceConfig}[str(notebook)[:2]]
    cfg = from_params(cls, params)
    return plan_inference(cfg, gpu) if cls is InferenceConfig else plan_training(cfg, gpu)


def show(notebook: str, params: dict[str, Any] | None = None, gpu: str | None = None) -> Plan | None:
    """Print the plan (the first cell after a notebook's parameters) and return it.

    Never stops the notebook: a plan that does not fit is printed as such, and a plan that cannot be made
    (unknown backbone shape, unreadable file) prints why; the run's own checks still apply.
    """
    try:
        plan = notebook_plan(notebook, params, gpu)
    except Exception as err:   # noqa: BLE001 - this cell must never stop a notebook; the run's own checks still apply
        print(f"pre-flight plan unavailable: {type(err).__name__}: {err}")
        return None
    print(plan.table())
    return plan


def main(argv: list[str] | None = None) -> int:
    """CLI: ``python -m kagglelib.plan --profile kaggle-t4 --notebook 03 [--gpu T4] [--set key=value ...]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="kaggle-t4")
    parser.add_argument("--notebook", default="03", choices=["03", "04", "05"])
    parser.add_argument("--gpu", default=None, choices=sorted(GPUS), help="default: the profile's GPU")
    parser.add_argument("--runs", default=None, help="notebook 05: comma list of runs")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config field (JSON value or plain string), e.g. --set max_length=2048")
    a = parser.parse_args(argv)
    params: dict[str, Any] = {"profile": a.profile}
    if a.runs:
        params["runs"] = a.runs
    for item in a.set:
        key, _, value = item.partition("=")
        try:
            params[key] = json.loads(value)
        except ValueError:
            params[key] = value
    plan = show(a.notebook, params, a.gpu)
    return 1 if plan is None else (0 if plan.fits else 2)


if __name__ == "__main__":
    raise SystemExit(main())
