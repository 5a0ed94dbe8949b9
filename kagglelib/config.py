"""Run configs: the shared notebook parameters, profile defaults, and saving a config next to its run.

A notebook's ``parameters`` cell holds flat literals; the next cell calls
``cfg = from_params(SomeConfig, globals())``, which picks the dataclass's fields out of the
notebook namespace, fills every field left as ``None`` from the profile's defaults, and checks it.
"""
from __future__ import annotations

import dataclasses
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from . import paths
from .io import read_json, write_json

PROFILES = ("cpu-sample", "kaggle-t4", "colab-a100")
T = TypeVar("T", bound="RunConfig")


@dataclass
class RunConfig:
    """Parameters every notebook shares (the contract): data, outputs, run name, profile."""

    train_path: str = ""            # "" = the competition train.csv on Kaggle, else the bundled sample
    test_path: str = ""             # "" = the competition test.csv on Kaggle, else the bundled sample
    output_dir: str = ""            # "" = outputs/ (repo), /kaggle/working/outputs, /content/outputs
    run_name: str = "run"           # artifacts go to <output_dir>/runs/<run_name>/
    profile: str = "cpu-sample"     # cpu-sample | kaggle-t4 | colab-a100

    # Per-profile values for fields left as None; subclasses extend it.
    PROFILE_DEFAULTS: ClassVar[dict[str, dict[str, Any]]] = {}

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise ValueError(f"profile must be one of {PROFILES}, got {self.profile!r}")
        for name, value in self.PROFILE_DEFAULTS.get(self.profile, {}).items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        self.train_path = str(resolve_input(self.train_path, "train"))
        self.test_path = str(resolve_input(self.test_path, "test"))
        self.output_dir = str(Path(self.output_dir).expanduser() if self.output_dir else paths.default_output_dir())

    @property
    def run_dir(self) -> Path:
        """``<output_dir>/runs/<run_name>``, created on first use."""
        return paths.run_dir(self.output_dir, self.run_name)


def resolve_input(path: str | list, split: str) -> Path | str:
    """An explicit path (cwd, then repo root, then data dirs), or the default train/test file for this env.

    Several files (a list, or a comma-separated string from papermill) resolve one by one, joined by commas.
    """
    items = path if isinstance(path, (list, tuple)) else comma_list(path) if "," in str(path) else None
    if items is not None:
        return ",".join(str(resolve_input(p, split)) for p in items)
    if path:
        p = Path(path).expanduser()
        if not p.is_absolute() and not p.exists() and (paths.REPO_ROOT / p).exists():
            return paths.REPO_ROOT / p
        return paths.resolve_data_path(p)
    if paths.detect_env() == "kaggle":
        found = sorted(paths.KAGGLE_INPUT.glob(f"*/{split}.csv"))
        if found:
            return found[0]
    return paths.sample_paths()[0 if split == "train" else 1]


def comma_list(text: str) -> list[str]:
    """The non-empty, stripped items of a comma-separated parameter ("a, b," -> ["a", "b"])."""
    return [t.strip() for t in text.split(",") if t.strip()]


def from_params(cls: type[T], namespace: dict[str, Any]) -> T:
    """Build ``cls`` from the names a notebook's parameters cell defined (papermill overrides included)."""
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in namespace.items() if k in names})


def save_config(cfg: Any, run_dir: str | Path | None = None, **extra: Any) -> Path:
    """Write ``config.json`` (all fields + notebook kind, host, time) into the run folder."""
    run_dir = Path(run_dir) if run_dir is not None else cfg.run_dir
    data = dataclasses.asdict(cfg)
    data.update(config_class=type(cfg).__name__, env=paths.detect_env(), host=platform.node(),
                python=platform.python_version(), created=time.strftime("%Y-%m-%dT%H:%M:%S"), **extra)
    return write_json(data, run_dir / "config.json")


def load_config(run_dir: str | Path) -> dict[str, Any]:
    """Read a run's ``config.json``."""
    return read_json(Path(run_dir) / "config.json")
