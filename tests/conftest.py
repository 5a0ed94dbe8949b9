"""Shared fixtures: the bundled real sample and a writer for hand-made bad CSV files."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

TRAIN = ROOT / "data" / "sample" / "train.csv.gz"
TEST = ROOT / "data" / "sample" / "test.csv"


@pytest.fixture(scope="session")
def train_df():
    """The bundled 1,110-row real train sample, loaded once."""
    from kagglelib.data.load import load_arena

    return load_arena(TRAIN)


@pytest.fixture(scope="session")
def test_df():
    """The bundled 200-row real test sample, loaded once."""
    from kagglelib.data.load import load_arena

    return load_arena(TEST)


@pytest.fixture()
def write_csv(tmp_path):
    """Write rows (dicts) as a Kaggle-style CSV and return its path."""
    def _write(rows: list[dict], name: str = "bad.csv", **kwargs) -> Path:
        path = tmp_path / name
        pd.DataFrame(rows).to_csv(path, index=False, **kwargs)
        return path
    return _write


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models: one intra-op thread (2 threads on shared cores spin-wait and run ~20x slower)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
