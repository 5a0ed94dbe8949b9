"""A committed run folder as one object, read once: its config, run_info and identity, and the answers derived
from them (kind, label layout, submission columns, held-out predictions, fold sub-runs).

Readers open a run with :meth:`Run.open` (by name under ``<output_dir>/runs``, by folder, or under
``/kaggle/input``; the manifest is checked first) and ask it; nothing else parses ``config.json`` or
``run_info.json`` of a run it predicts with. A run's identity is its manifest's hash: it changes whenever any
file of the run changes, and two runs in folders of the same name are two runs.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ..core.io import read_json
from .layout import CONFIG, MODEL_DIR, RUN_INFO, SUBMISSION_COLUMNS, find_run, heldout_file, read_predictions
from .store import MANIFEST, file_sha256

BASELINE_CONFIG = "BaselineConfig"   # config_class of 02's runs


def fold_dirs(path: str | Path) -> list[Path]:
    """The fold sub-runs (``fold<k>/`` with a saved model) of an all-fold run's folder, by fold number."""
    found = [p for p in Path(path).glob("fold*") if p.name[4:].isdigit() and (p / MODEL_DIR).is_dir()]
    return sorted(found, key=lambda p: int(p.name[4:]))


@dataclass(frozen=True)
class Run:
    """One committed run: where it is, what it recorded, and its content identity."""

    path: Path
    config: dict[str, Any]          # config.json
    info: dict[str, Any] | None     # run_info.json; None for a run made before runs recorded it
    identity: str                   # sha256 of manifest.json

    @classmethod
    def open(cls, name_or_path: str | Path, output_dir: str | Path | None = None) -> "Run":
        """Find the run (see :func:`kagglelib.run.layout.find_run`), check its manifest, read it once."""
        return cls.at(find_run(name_or_path, output_dir))

    @classmethod
    def at(cls, path: str | Path) -> "Run":
        """Read the run in ``path`` (already checked, e.g. by :meth:`open` or :func:`find_run`)."""
        path = Path(path)
        info = read_json(path / RUN_INFO) if (path / RUN_INFO).is_file() else None
        return cls(path, read_json(path / CONFIG), info, file_sha256(path / MANIFEST))

    @property
    def name(self) -> str:
        """The folder name (not an identity: two datasets may each hold a ``baseline``)."""
        return self.path.name

    @property
    def config_class(self) -> str:
        return str(self.config.get("config_class", ""))

    @property
    def fold_dirs(self) -> list[Path]:
        """The fold sub-runs (``fold<k>/`` with a saved model) of an all-fold run, by fold number."""
        return fold_dirs(self.path)

    @property
    def kind(self) -> str:
        """'transformer' (a saved model, or fold sub-runs) or 'baseline' (02's feature models)."""
        if self.info is not None:
            return self.info["kind"]
        if (self.path / MODEL_DIR).is_dir() or self.fold_dirs:
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

    @property
    def heldout_file(self) -> Path | None:
        """Its held-out predictions file (``oof.csv`` or ``valid_preds.csv``), or None."""
        return heldout_file(self.path)

    def heldout(self) -> pd.DataFrame:
        """Its held-out predictions indexed by id (as text), numbers parsed; FileNotFoundError when it has none."""
        path = self.heldout_file
        if path is None:
            raise FileNotFoundError(f"{self.path}: no oof.csv or valid_preds.csv (held-out predictions)")
        return read_predictions(path)
