"""A run folder as one object: creating and committing it (:meth:`Run.create`), and a committed run read once (its
config, run_info, metrics and identity, and the answers derived from them: kind, label layout, submission columns,
held-out predictions, fold sub-runs).

Writers stage a run with :meth:`Run.create` (lock, staging folder, manifest, atomic commit: :mod:`.store`) and
write each artifact at the place the stage names (``stage.config_file``, ``stage.oof_file``, ...). Readers open a
run with :meth:`Run.open` (by name under ``<output_dir>/runs``, by folder, or under ``/kaggle/input``; the manifest
is checked first) or :meth:`Run.at` (a folder already checked) and ask it; nothing outside ``kagglelib/run/``
spells a run's file names. A run's identity is its manifest's hash: it changes whenever any file of the run
changes, and two runs in folders of the same name are two runs.
"""
from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd

from ..core.io import read_json
from .layout import SUBMISSION_COLUMNS, find_run, read_predictions
from .names import MODEL_DIR, RunFiles, RunPaths
from .store import RunError, Staging, file_sha256, staged_run

BASELINE_CONFIG = "BaselineConfig"   # config_class of 02's runs


def fold_dirs(path: str | Path) -> list[Path]:
    """The fold sub-runs (``fold<k>/`` with a saved model) of an all-fold run's folder, by fold number."""
    found = [p for p in Path(path).glob("fold*") if p.name[4:].isdigit() and (p / MODEL_DIR).is_dir()]
    return sorted(found, key=lambda p: int(p.name[4:]))


@dataclass(frozen=True)
class Run(RunFiles):
    """One committed run (or a fold sub-run of one): where it is, what it recorded, and its content identity."""

    path: Path
    config: dict[str, Any]          # config.json
    info: dict[str, Any] | None     # run_info.json; None for a run made before runs recorded it

    @staticmethod
    def create(output_dir: str | Path, name: str, main_process: bool = True) -> AbstractContextManager[Staging]:
        """Stage the run ``<output_dir>/runs/<name>``: a context yielding the stage (its folder and each artifact's
        place in it), committed atomically with its manifest when the block succeeds and ``stage.commit`` holds;
        see :func:`kagglelib.run.store.staged_run` (lock, staging folder, commit by rename, DDP ranks)."""
        return staged_run(output_dir, name, main_process)

    @classmethod
    def open(cls, name_or_path: str | Path, output_dir: str | Path | None = None) -> "Run":
        """Find the run (see :func:`kagglelib.run.layout.find_run`), check its manifest, read it once."""
        return cls.at(find_run(name_or_path, output_dir))

    @classmethod
    def at(cls, path: str | Path) -> "Run":
        """Read the run in ``path`` (already checked, e.g. by :meth:`open` or :func:`find_run`, or a saved model's
        folder a test or a fold loop hands over)."""
        files = RunPaths(Path(path))
        info = read_json(files.info_file) if files.info_file.is_file() else None
        run = cls(files.path, read_json(files.config_file), info)
        if files.manifest_file.is_file():
            run.identity   # read now, with the config: the generation opened is the one identified
        return run

    @cached_property
    def identity(self) -> str:
        """sha256 of ``manifest.json``; a fold sub-run's is its parent's, with its folder name."""
        if self.manifest_file.is_file():
            return file_sha256(self.manifest_file)
        parent = RunPaths(self.path.parent)
        if parent.manifest_file.is_file() and self.path.name.startswith("fold"):
            return f"{file_sha256(parent.manifest_file)}/{self.path.name}"
        raise RunError(f"run {self.path}: no manifest, so it has no identity (not a committed run)")

    @cached_property
    def metrics(self) -> dict[str, Any]:
        """``metrics.json``, read once."""
        return read_json(self.metrics_file)

    @property
    def name(self) -> str:
        """The folder name (not an identity: two datasets may each hold a ``baseline``)."""
        return self.path.name

    @property
    def config_class(self) -> str:
        return str(self.config.get("config_class", ""))

    @property
    def fold_dirs(self) -> list[Path]:
        """The fold sub-runs' folders (``fold<k>/`` with a saved model) of an all-fold run, by fold number."""
        return fold_dirs(self.path)

    @property
    def folds(self) -> list["Run"]:
        """The fold sub-runs of an all-fold run, by fold number ([] for another run)."""
        return [Run.at(p) for p in self.fold_dirs]

    @property
    def is_smoke(self) -> bool:
        """A run of a tiny random model (a pipeline check, never a result)."""
        return bool(self.config.get("smoke") or str(self.config.get("backbone", "")).startswith("tiny-"))

    @property
    def kind(self) -> str:
        """'transformer' (a saved model, or fold sub-runs) or 'baseline' (02's feature models)."""
        if self.info is not None:
            return self.info["kind"]
        if self.model_dir.is_dir() or self.fold_dirs:
            return "transformer"
        if self.config_class == BASELINE_CONFIG:
            return "baseline"
        raise ValueError(f"{self.path}: neither a model/ folder nor a baseline run; cannot predict with it")

    @property
    def layout(self) -> str | None:
        """The label layout it trained on (``kaggle`` 3-class, ``wsdm`` A/B), None when it did not record it."""
        return self.info["layout"] if self.info is not None else None

    @property
    def submission_columns(self) -> list[str] | None:
        return SUBMISSION_COLUMNS[self.layout] if self.layout else None

    @property
    def provenance(self) -> dict[str, Any]:
        """Where its training rows came from (file names, rows, content fingerprint), {} when not recorded."""
        return (self.info or {}).get("provenance") or {}

    def heldout(self) -> pd.DataFrame:
        """Its held-out predictions indexed by id (as text), numbers parsed; FileNotFoundError when it has none."""
        path = self.heldout_file
        if path is None:
            raise FileNotFoundError(f"{self.path}: no oof.csv or valid_preds.csv (held-out predictions)")
        return read_predictions(path)
