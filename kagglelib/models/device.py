"""Devices and kernels: precision per GPU compute capability, attention implementation, this process's GPU."""
from __future__ import annotations

import importlib.metadata
import logging
import os

import torch

log = logging.getLogger(__name__)
# bf16 has tensor-core kernels from Ampere (sm80) on; a T4 (sm75) reports torch.cuda.is_bf16_supported() True
# but emulates it, several times slower than fp16, so "auto" must look at the compute capability instead.
BF16_MIN_CAPABILITY = (8, 0)
# FlashAttention-2 kernels exist for sm80+ only (flash-attn README: "Ampere, Ada, or Hopper GPUs"); 2.6 added
# the logit softcapping Gemma-2 needs.
FLASH_MIN_CAPABILITY = (8, 0)
FLASH_MIN_VERSION_SOFTCAP = (2, 6)
SOFTCAP_MODEL_TYPES = ("gemma2",)   # models whose attention must apply logit softcapping (no sdpa)


def precision_for_capability(capability: tuple[int, int] | None) -> str:
    """'auto' precision for a GPU of this compute capability (None = CPU): bf16 on sm80+, fp16 below, fp32 on CPU."""
    if capability is None:
        return "fp32"
    return "bf16" if tuple(capability) >= BF16_MIN_CAPABILITY else "fp16"


def device_capability(device: str | torch.device | None = None) -> tuple[int, int] | None:
    """Compute capability of ``device`` (default: this process's GPU), None on CPU or without CUDA."""
    if not torch.cuda.is_available():
        return None
    device = torch.device(device) if device is not None else torch.device("cuda", local_rank())
    if device.type != "cuda":
        return None
    return tuple(torch.cuda.get_device_capability(device))


def resolve_precision(precision: str = "auto", device: str | torch.device | None = None) -> str:
    """'bf16' / 'fp16' / 'fp32' for ``device``: auto = bf16 on sm80+ (A100/H100), fp16 on a T4, fp32 on CPU."""
    capability = device_capability(device)
    if precision == "auto":
        return precision_for_capability(capability)
    if precision in ("bf16", "fp16") and capability is None:
        log.warning("precision %s requested without a CUDA device; using fp32 on CPU", precision)
        return "fp32"
    if precision == "bf16" and capability < BF16_MIN_CAPABILITY:
        log.warning("precision bf16 on a GPU of compute capability %s: emulated and several times slower than "
                    "fp16 there; precision='auto' picks fp16", capability)
    return precision


TORCH_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
PRECISION_OF_DTYPE = {v: k for k, v in TORCH_DTYPES.items()}


def local_rank() -> int:
    """This process's GPU index under torchrun/accelerate (0 when not distributed)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def flash_attn_version() -> tuple[int, int] | None:
    """(major, minor) of the importable flash_attn package, None when it is absent or broken."""
    try:
        import flash_attn  # noqa: F401 - installed but unimportable (wrong CUDA build) counts as absent
        major, minor = (int(x) for x in importlib.metadata.version("flash_attn").split(".")[:2])
        return major, minor
    except Exception:  # noqa: BLE001
        return None


def choose_attention(model_type: str, capability: tuple[int, int] | None, flash_version: tuple[int, int] | None,
                     requested: str = "auto", supports_flash: bool = True) -> str | None:
    """Attention kernel as a pure function of the GPU's compute capability and the installed flash-attn.

    Gemma-2 needs softcapping: eager, or flash_attention_2 (flash-attn >= 2.6 on sm80+); never sdpa. Other
    models get the library default (None = sdpa where supported). A T4 (sm75) never gets flash-attn.
    """
    softcap = model_type in SOFTCAP_MODEL_TYPES
    flash_ok = (capability is not None and tuple(capability) >= FLASH_MIN_CAPABILITY and flash_version is not None
                and supports_flash and (not softcap or tuple(flash_version) >= FLASH_MIN_VERSION_SOFTCAP))
    if requested != "auto":
        if softcap and requested == "sdpa":
            raise ValueError(f"attn_implementation='sdpa' cannot run {model_type} (no logit softcapping); use "
                             "'auto', 'eager' or 'flash_attention_2'")
        if requested == "flash_attention_2" and not flash_ok:
            raise ValueError(f"attn_implementation='flash_attention_2' needs a GPU of compute capability >= "
                             f"{FLASH_MIN_CAPABILITY} (this one: {capability}), an importable flash-attn "
                             f"(found: {flash_version}; >= {FLASH_MIN_VERSION_SOFTCAP} for {model_type}) and a model "
                             "that supports it; use 'auto'")
        return requested
    if not softcap:
        return None
    return "flash_attention_2" if flash_ok else "eager"


def attention_impl(model_type: str, requested: str = "auto", device: str | torch.device | None = None,
                   supports_flash: bool = True) -> str | None:
    """:func:`choose_attention` for ``device`` and the flash-attn installed here."""
    return choose_attention(model_type, device_capability(device), flash_attn_version(), requested, supports_flash)
