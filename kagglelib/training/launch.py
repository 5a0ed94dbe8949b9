"""Train from a notebook on every visible GPU: one process per GPU (torchrun), as Kaggle's "GPU T4 x2" needs.

``train(cfg)`` is what notebooks 03/04 call. With two or more GPUs it writes the config to a temporary file and
runs ``python -m torch.distributed.run --standalone --nproc_per_node N -m kagglelib.training`` (DDP, one model copy
per GPU, quantised ones too), streaming its output; each process takes ``batch_size`` rows per micro-step and
:func:`kagglelib.training.loop.planned_steps` divides the steps by N, so rows seen and the schedule are the
plan's. With one GPU, no GPU, under torchrun already, or when the call needs this process (callbacks, a
simulated disconnect), it trains here on one device and says so.

Why a subprocess and not ``accelerate.notebook_launcher``: that forks the notebook's process and refuses once
bitsandbytes is imported or an Accelerator exists (accelerate launchers.py), which kagglelib's imports and a
second call in the same kernel both do; fresh processes have no such state.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback

from ..core.io import read_json
from ..run.config import flatten
from .config import TrainConfig
from .fit import train as train_here

PACKAGE_PARENT = Path(__file__).resolve().parents[2]   # the folder holding kagglelib/ (repo or Kaggle input)


@dataclass(frozen=True)
class Layout:
    """How a run uses the machine: processes (one per GPU used), GPUs visible, and a sentence saying which."""

    processes: int
    gpus: int
    how: str


def visible_gpus() -> int:
    """CUDA devices this process can see (0 without CUDA)."""
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def choose_layout(n_gpus: int, in_process_reason: str = "", distributed: bool = False) -> Layout:
    """Pure: data-parallel over every GPU, or one device in this process (with the reason)."""
    if distributed:
        return Layout(1, n_gpus, "this process is one rank of a torchrun/accelerate launch")
    if n_gpus == 0:
        return Layout(1, 0, "no GPU: one process on the CPU")
    if n_gpus == 1:
        return Layout(1, 1, "one GPU, one process")
    if in_process_reason:
        return Layout(1, n_gpus, f"one GPU (cuda:0) of {n_gpus}, the others unused: {in_process_reason}")
    return Layout(n_gpus, n_gpus, f"data-parallel over {n_gpus} GPUs: one process per GPU (torchrun), "
                                  "one model copy each")


def torchrun_command(config_path: Path, report: str, processes: int) -> list[str]:
    """The command that trains ``config_path`` on ``processes`` GPUs and writes each rank's metrics to ``report``."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes),
            "-m", "kagglelib.training", "--config", str(config_path), "--report", report]


def train(cfg: TrainConfig, callbacks: list[TrainerCallback] | None = None,
          interrupt_at_step: int | None = None, n_gpus: int | None = None) -> dict[str, Any]:
    """Train ``cfg`` on every visible GPU (one process each) or in this process; returns rank 0's metrics."""
    reason = "callbacks given to this process" if callbacks else (
        "a simulated disconnect (interrupt_at_step)" if interrupt_at_step else "")
    layout = choose_layout(visible_gpus() if n_gpus is None else n_gpus, reason, "WORLD_SIZE" in os.environ)
    print(f"[launch] {layout.how}", flush=True)
    if layout.processes == 1:
        return train_here(cfg, callbacks, interrupt_at_step)
    with tempfile.TemporaryDirectory(prefix="kagglelib-launch-") as tmp:
        path = Path(tmp) / "train_config.json"   # the --config file of the ranks (not a run folder)
        path.write_text(json.dumps({**flatten(cfg), "config_class": type(cfg).__name__}))
        report = str(Path(tmp) / "report_{rank}.json")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(PACKAGE_PARENT),
                                                                         os.environ.get("PYTHONPATH")]))}
        proc = subprocess.Popen(torchrun_command(path, report, layout.processes), env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, bufsize=1)
        tail: list[str] = []
        for line in proc.stdout:   # the ranks' progress, shown in the notebook as it comes
            print(line, end="", flush=True)
            tail = (tail + [line])[-40:]
        if proc.wait() != 0:
            raise RuntimeError(f"data-parallel training over {layout.processes} GPUs failed (exit {proc.returncode}); "
                               "last lines:\n" + "".join(tail))
        return {**read_json(report.format(rank=0)), "launch": layout.how}
