"""What a model is: the ModelSpec (backbone, task, head, LoRA, quantisation, precision) and its allowed values."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import ClassVar

from ..core.checks import check_settings
from .device import SDPA_SOFTCAP_MESSAGE


log = logging.getLogger(__name__)
TASKS = ("classifier", "next_token")
SMOKE_BACKBONES = ("tiny-gemma2", "tiny-deberta")
LORA_INITS = ("default", "pissa", "pissa_niter_4")
QUANTIZATIONS = ("none", "4bit", "8bit")
PRECISIONS = ("auto", "bf16", "fp16", "fp32")
HEAD_NAMES = ("score", "classifier")   # the module AutoModelForSequenceClassification puts on top
# LoRA targets per model_type (names of nn.Linear leaves); unknown types must pass lora_targets.
LORA_TARGETS = {
    "gemma2": "q_proj,k_proj,v_proj,o_proj,gate_proj",
    "gemma": "q_proj,k_proj,v_proj,o_proj,gate_proj",
    "llama": "q_proj,k_proj,v_proj,o_proj,gate_proj",
    "mistral": "q_proj,k_proj,v_proj,o_proj,gate_proj",
    "qwen2": "q_proj,k_proj,v_proj,o_proj,gate_proj",
    "deberta-v2": "query_proj,key_proj,value_proj,dense",
    "bert": "query,key,value,dense",
    "roberta": "query,key,value,dense",
    "xlm-roberta": "query,key,value,dense",
    "electra": "query,key,value,dense",
}


@dataclass
class ModelSpec:
    """Everything needed to rebuild a model (a training config holds one as ``model``)."""

    backbone: str = "minilm"          # hub id, local folder, Kaggle input name, "minilm", "tiny-gemma2", "tiny-deberta"
    task: str = "classifier"          # classifier | next_token
    head_layers: int = 1              # 1 = Linear; 3 = Linear-GELU-Dropout-Linear-GELU-Linear
    head_dropout: float = 0.1
    use_lora: bool = True             # False = full fine-tuning (small encoders)
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_targets: str = ""            # comma list of module names; "" = LORA_TARGETS[model_type]
    lora_init: str = "default"        # default | pissa | pissa_niter_4
    quantization: str = "none"        # none | 4bit | 8bit (bitsandbytes, CUDA only)
    freeze_layers: int = 0            # first N transformer layers get no LoRA / no gradient
    gradient_checkpointing: bool = False
    attn_implementation: str = "auto"  # auto: Gemma-2 gets flash-attn>=2.6 / flex (sm80+) / eager (softcapping kept)
    precision: str = "auto"           # auto | bf16 | fp16 | fp32
    allow_download: bool = False      # may the hub be contacted when weights are not found locally
    seed: int = 42                    # the run's seed: random inits (tiny smoke backbones, new heads), data order

    SETTING_RULES: ClassVar[dict[str, str]] = {
        "head_layers": "int>=1", "head_dropout": "[0,1)", "lora_r": "int>=1", "lora_alpha": "num>0",
        "lora_dropout": "[0,1)", "freeze_layers": "int>=0", "seed": "int>=0"}

    def __post_init__(self) -> None:
        check_settings(self, self.SETTING_RULES)
        checks = {"task": TASKS, "lora_init": LORA_INITS, "quantization": QUANTIZATIONS, "precision": PRECISIONS}
        for name, allowed in checks.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.head_layers not in (1, 3):
            raise ValueError(f"head_layers must be 1 or 3, got {self.head_layers}")
        if self.quantization != "none" and not self.use_lora:
            raise ValueError("quantization (QLoRA) needs use_lora=True: quantised weights cannot be fully fine-tuned")
        if self.quantization != "none" and self.lora_init != "default":
            # peft refuses PiSSA on 4/8-bit weights; doing it right means SVD of the 16-bit weights (18 GB for a
            # 9B, more than a T4 holds) and shipping a re-quantised residual base instead of the hub's weights.
            raise ValueError(f"lora_init={self.lora_init!r} with quantization={self.quantization!r} is not supported: "
                             "PiSSA needs 16-bit base weights (peft: 'Please initialize PiSSA under float32, float16, "
                             "or bfloat16'). Use lora_init='default' for QLoRA, or quantization='none' for PiSSA.")
        if self.backbone_is_gemma2_like and self.attn_implementation == "sdpa":
            raise ValueError(SDPA_SOFTCAP_MESSAGE.format(model_type="Gemma-2"))

    @property
    def smoke(self) -> bool:
        """True for the randomly initialised tiny backbones (plumbing checks, never results)."""
        return self.backbone in SMOKE_BACKBONES

    @property
    def backbone_is_gemma2_like(self) -> bool:
        """True when the backbone's name says Gemma-2 (checked again on the loaded config's model_type)."""
        return "gemma-2" in self.backbone.lower() or "gemma2" in self.backbone.lower()
