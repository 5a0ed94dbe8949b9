"""A backbone's shape (from its config.json or hand-written) and what its weights weigh; the 'auto' quantisation."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .build import resolve_backbone, tiny_config
from .spec import SMOKE_BACKBONES


GIB = 2**30
QUANT_BYTES = {"none": None, "4bit": 0.516, "8bit": 1.0}   # NF4 + double-quantised absmax: 4.127 bits per weight


@dataclass(frozen=True)
class Shape:
    """The dimensions that decide FLOPs and memory."""

    model_type: str
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    source: str = ""

    @property
    def gated(self) -> bool:
        return self.model_type not in ("deberta-v2", "deberta", "bert", "roberta", "xlm-roberta", "electra")

    @property
    def linear_params(self) -> int:
        """Parameters of the transformer blocks' matrices (what is quantised and what costs FLOPs)."""
        attn = self.hidden * self.heads * self.head_dim * 2 + self.hidden * self.kv_heads * self.head_dim * 2
        mlp = self.hidden * self.intermediate * (3 if self.gated else 2)
        return self.layers * (attn + mlp)

    @property
    def embed_params(self) -> int:
        return self.vocab * self.hidden


# Hand-written shapes of the real backbones, used when their config.json is not on this machine.
KNOWN_SHAPES = {
    "gemma-2-2b": Shape("gemma2", 2304, 9216, 26, 8, 4, 256, 256000, "hand-written (google/gemma-2-2b config)"),
    "gemma-2-9b": Shape("gemma2", 3584, 14336, 42, 16, 8, 256, 256000, "hand-written (google/gemma-2-9b config)"),
    "deberta-v3-large": Shape("deberta-v2", 1024, 4096, 24, 16, 16, 64, 128100,
                              "hand-written (microsoft/deberta-v3-large config)"),
}


def shape_from_config(cfg: dict[str, Any], source: str = "") -> Shape:
    """A Shape from a Hugging Face config.json dict."""
    heads = int(cfg["num_attention_heads"])
    hidden = int(cfg["hidden_size"])
    return Shape(cfg.get("model_type", ""), hidden, int(cfg["intermediate_size"]), int(cfg["num_hidden_layers"]),
                 heads, int(cfg.get("num_key_value_heads") or heads), int(cfg.get("head_dim") or hidden // heads),
                 int(cfg.get("vocab_size", 0)), source)


def model_shape(backbone: str) -> Shape:
    """The backbone's shape from its config.json when found locally, else the hand-written one; clear error if neither."""

    if backbone in SMOKE_BACKBONES:
        return shape_from_config(tiny_config(backbone, 30522, 0).to_dict(), f"{backbone} (tiny random)")
    try:
        folder = Path(resolve_backbone(backbone))
        if (folder / "config.json").is_file():
            return shape_from_config(json.loads((folder / "config.json").read_text()), str(folder / "config.json"))
    except FileNotFoundError:
        pass
    name = backbone.rstrip("/").split("/")[-1].lower()
    for key, shape in KNOWN_SHAPES.items():
        if name.startswith(key):
            return shape
    raise FileNotFoundError(f"no config.json for {backbone!r} here and no hand-written shape "
                            f"(known: {sorted(KNOWN_SHAPES)}); put the model folder where models.resolve_backbone finds it")


def weight_bytes(shape: Shape, quantization: str, dtype_bytes: int) -> float:
    """Backbone weights in memory: matrices at the quantised width, embeddings in 16-bit (never quantised)."""
    per = QUANT_BYTES.get(quantization) or dtype_bytes
    return shape.linear_params * per + shape.embed_params * min(dtype_bytes, 2 if quantization != "none" else dtype_bytes)


def kbit_training_upcast_bytes(shape: Shape, quantization: str, dtype_bytes: int) -> float:
    """Extra bytes when QLoRA training starts: peft's prepare_model_for_kbit_training casts every fp16/bf16
    parameter that is not a bitsandbytes ``Params4bit`` (embeddings, norms; 8-bit weights are int8) to fp32
    (peft utils/other.py, "cast all non INT8 parameters to fp32"): +1.8 GB for Gemma-2-9B, +1.2 GB for the 2B."""
    if quantization == "none" or dtype_bytes >= 4:
        return 0.0
    norms = shape.layers * (4 if shape.model_type == "gemma2" else 2) * shape.hidden + shape.hidden
    return (shape.embed_params + norms) * (4 - dtype_bytes)


def resolve_quantization(requested: str, run_cfg: dict[str, Any], shape: Shape, memory_bytes: float,
                         dtype_bytes: int = 2) -> str:
    """The quantisation a run is loaded with: 'auto' = 4-bit when its 16-bit weights need > 60% of the GPU."""
    if not run_cfg.get("use_lora", False):
        return "none"   # full fine-tunes are loaded as saved (bitsandbytes only wraps LoRA bases here)
    if not requested:   # "": the run's own setting
        return run_cfg.get("quantization") or "none"
    if requested == "auto":
        return "4bit" if weight_bytes(shape, "none", dtype_bytes) > 0.6 * memory_bytes else "none"
    return requested
