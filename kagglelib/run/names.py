"""The file names of a run folder, in one place, and where each artifact of a folder lives (:class:`RunFiles`).

Only ``kagglelib/run/`` spells these names (tests/test_run_names.py checks it): writers get the paths from the stage
:meth:`kagglelib.run.folder.Run.create` yields, readers from the :class:`~kagglelib.run.folder.Run` they opened.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

CONFIG = "config.json"
METRICS = "metrics.json"
RUN_INFO = "run_info.json"
MANIFEST = "manifest.json"
OOF, VALID_PREDS = "oof.csv", "valid_preds.csv"
MODEL_DIR = "model"                 # 03/04: the saved adapter + head, or full weights, with the tokenizer
LOSS_CURVE = "loss_curve.png"       # 03/04
PREDICTOR = "predictor.json"        # 02: how to rebuild its predictor from the folder (featurizer, fold models)
TEST_PREDS = "test_preds.csv"       # 02: the test file's probabilities
SUBMISSION = "submission.csv"       # 02 and 05
HELDOUT_FILES = (OOF, VALID_PREDS)   # a run's held-out predictions: 02's OOF, 03/04's validation fold


class RunFiles:
    """Where a run folder (``self.path``: a committed run, a stage, a fold sub-run) keeps each artifact."""

    path: Path

    @property
    def config_file(self) -> Path:
        return self.path / CONFIG

    @property
    def metrics_file(self) -> Path:
        return self.path / METRICS

    @property
    def info_file(self) -> Path:
        return self.path / RUN_INFO

    @property
    def manifest_file(self) -> Path:
        return self.path / MANIFEST

    @property
    def oof_file(self) -> Path:
        """02's and all-fold runs' out-of-fold predictions."""
        return self.path / OOF

    @property
    def valid_preds_file(self) -> Path:
        """A single-fold run's validation predictions."""
        return self.path / VALID_PREDS

    @property
    def model_dir(self) -> Path:
        return self.path / MODEL_DIR

    @property
    def loss_curve_file(self) -> Path:
        return self.path / LOSS_CURVE

    @property
    def predictor_file(self) -> Path:
        return self.path / PREDICTOR

    @property
    def test_preds_file(self) -> Path:
        return self.path / TEST_PREDS

    @property
    def submission_file(self) -> Path:
        return self.path / SUBMISSION

    @property
    def heldout_file(self) -> Path | None:
        """Its held-out predictions file (``oof.csv`` or ``valid_preds.csv``) if there is one, else None."""
        return next((self.path / n for n in HELDOUT_FILES if (self.path / n).exists()), None)

    def fold(self, k: int) -> "RunPaths":
        """The paths of fold sub-run ``fold<k>/`` of an all-fold run."""
        return RunPaths(self.path / f"fold{k}")

    def is_run(self) -> bool:
        """Whether the folder holds a run's config (a run folder, finished or not)."""
        return self.config_file.exists()


@dataclass(frozen=True)
class RunPaths(RunFiles):
    """The artifact paths of any folder laid out as a run (a work folder of finished folds, a fold sub-run)."""

    path: Path
