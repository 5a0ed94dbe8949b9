"""Bad inputs and habits against the newest features (issue 18): several train files, pseudo-labels, all folds,
the planner, 05, packaging, ids, clocks. One table drives one parametrized test.

Each case is (name, what it does, expected outcome now, outcome on main 4d35f37 before the fix). Outcomes:
"ok: ..." must run and pass its check; "error: <regex>" must raise ValueError / RunError / FileNotFoundError from
kagglelib with a message matching the regex, before any model is built where the case says "before training".
``before`` is one of: behaves, clear error, wrong result, data loss, traceback (a raw library or Python error);
each was run on 4d35f37 (this file's ``__main__`` there, plus the plan/predict_chunked calls it names), except the
ones marked "(read)", whose later consequence was read from the code after the run showed the value accepted.
``python tests/test_bad_inputs_features.py`` prints each case's outcome on the code it imports.
"""
from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from test_bad_inputs import HEADER, csv_text, rows  # noqa: E402

from kagglelib.run.folder import Run  # noqa: E402
from kagglelib.run.store import MANIFEST  # noqa: E402

SAMPLE_TEST = Path(__file__).resolve().parent.parent / "data" / "sample" / "test.csv"


class TrainingStarted(AssertionError):
    """Raised by the patched model builder: the run got past its checks into training."""


# ---------------------------------------------------------------- builders

def kaggle_csv(tmp: Path, name: str = "k.csv", n: int = 12, over: dict | None = None, start: int = 100) -> Path:
    data = rows(n, over)
    for i, r in enumerate(data):
        if "id" not in (over or {}).get(i, {}):
            r["id"] = str(start + i)
    (tmp / name).write_text(csv_text(data), encoding="utf-8")
    return tmp / name


def wsdm_parquet(tmp: Path, name: str = "w.parquet", n: int = 12) -> Path:
    df = pd.DataFrame({"id": [f"w{i}" for i in range(n)], "prompt": [f"Frage {i}" for i in range(n)],
                       "response_a": [f"Antwort A{i}" for i in range(n)], "response_b": [f"Antwort B{i}" for i in range(n)],
                       "winner": ["model_a" if i % 2 else "model_b" for i in range(n)], "language": "German"})
    df.to_parquet(tmp / name)
    return tmp / name


def soft_csv(tmp: Path, name: str = "pseudo.csv", n: int = 12) -> Path:
    data = rows(n)
    for i, r in enumerate(data):
        p = np.roll([0.5, 0.3, 0.2], i % 3)   # argmax A, B, tie in turn
        r.update(id=f"p{i}", winner_model_a=str(p[0]), winner_model_b=str(p[1]), winner_tie=str(p[2]))
    (tmp / name).write_text(csv_text(data), encoding="utf-8")
    return tmp / name


def train_cfg(tmp: Path, train: Path | str, **kw: Any):
    from kagglelib.run.config import make_config
    from kagglelib.training.config import EncoderTrainConfig

    return make_config(EncoderTrainConfig, train_path=str(train), test_path=str(SAMPLE_TEST), output_dir=str(tmp / "out"),
                              backbone="tiny-deberta", profile="cpu-sample", progress=False, **kw)


def no_training(mp: pytest.MonkeyPatch) -> None:
    """Make reaching the model builder (i.e. training) an outcome of its own."""
    from kagglelib.training import fit

    def build(*a: Any, **k: Any) -> Any:
        raise TrainingStarted("training started: the run's checks let it through")
    mp.setattr(fit, "build_model", build)


def fake_scoring(tmp: Path, mp: pytest.MonkeyPatch) -> None:
    """pseudo_label without a model: one fake run folder, uniform-ish probabilities for every row."""
    from kagglelib.inference import pseudo

    run = tmp / "runs" / "fake"
    run.mkdir(parents=True, exist_ok=True)
    (run / "config.json").write_text(json.dumps({"created": "now", "config_class": "BaselineConfig"}))
    (run / MANIFEST).write_text(json.dumps({"files": {}}))   # Run.at and the blend record read it
    mp.setattr(pseudo, "blend_members", lambda runs, weights, output_dir: ([run], np.ones(1), 1.0))
    mp.setattr(pseudo, "run_predictors", lambda d, devices, *a, **k: [None])
    mp.setattr(pseudo, "predict_chunked", lambda preds, df, *a, **k: (
        np.tile([0.5, 0.3, 0.2], (len(df), 1)), {"complete": True}))


def pseudo_run(tmp: Path, mp: pytest.MonkeyPatch, input_path: Path, out_path: Path, **kw: Any) -> dict:
    from kagglelib.inference.pseudo import pseudo_label

    fake_scoring(tmp, mp)
    return pseudo_label("fake", input_path, out_path, output_dir=str(tmp), **kw)


# ---------------------------------------------------------------- 1. settings checked where they are set

def plan_of(tmp: Path, notebook: str, **params: Any) -> Any:
    from kagglelib import plan

    return plan.notebook_plan(notebook, {"profile": "kaggle-t4", "output_dir": str(tmp), **params})


def show(tmp: Path, notebook: str, **params: Any) -> Any:
    """plan.show must never raise; returns (plan or None, printed text)."""
    import contextlib
    import io

    from kagglelib import plan

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        p = plan.show(notebook, {"profile": "kaggle-t4", "output_dir": str(tmp), **params})
    return p, buf.getvalue()


def inference_cfg(tmp: Path, **kw: Any):
    from kagglelib.inference.submit import InferenceConfig

    return InferenceConfig(output_dir=str(tmp), test_path=str(SAMPLE_TEST), **kw)


def baseline_cfg(tmp: Path, **kw: Any):
    from kagglelib.training.baseline import BaselineConfig

    return BaselineConfig(output_dir=str(tmp), **kw)


# ---------------------------------------------------------------- 2. several files

def load_training(*paths: Path) -> pd.DataFrame:
    from kagglelib.data.folds import load_training as lt

    return lt(",".join(map(str, paths)))


def int_and_text_ids(tmp: Path) -> pd.DataFrame:
    a = kaggle_csv(tmp, "a.csv", 6, start=100)
    b = kaggle_csv(tmp, "b.csv", 6, start=0)
    text = b.read_text().replace("\n0,", "\nx0,").replace("\n1,", "\nx1,")
    b.write_text(text.replace("Question", "Other question"))
    return load_training(a, b)


def report_of_second_file(tmp: Path) -> pd.DataFrame:
    a = kaggle_csv(tmp, "a.csv", 6)
    b = kaggle_csv(tmp, "b.csv", 4, {i: {"winner_model_a": "1", "winner_model_b": "0", "winner_tie": "0",
                                           "prompt": json.dumps([f"B question {i}"])} for i in range(4)}, start=500)
    return load_training(a, b)


def csv_and_parquet(tmp: Path) -> pd.DataFrame:
    a = kaggle_csv(tmp, "a.csv", 6)
    b = kaggle_csv(tmp, "b.csv", 6, start=300)
    text = b.read_text().replace("Question", "Another question")
    pd.read_csv(pd.io.common.StringIO(text), dtype=str, keep_default_na=False).to_parquet(tmp / "b.parquet")
    return load_training(a, tmp / "b.parquet")


# ---------------------------------------------------------------- 3. outputs

def parquet_no_id_lists(tmp: Path) -> pd.DataFrame:
    df = pd.DataFrame({"prompt": [["Hi", "And then?"], ["Q2"]], "response_a": [["A1", "A2"], ["a"]],
                       "response_b": [["B1", "B2"], ["b"]]})
    df.to_parquet(tmp / "unl.parquet")
    return df


def read_back(path: Path) -> pd.DataFrame:
    from kagglelib.data.load import load_arena

    return load_arena(path)


def hardlink_out(tmp: Path, mp: pytest.MonkeyPatch) -> Any:
    inp = kaggle_csv(tmp, "in.csv", 3)
    os.link(inp, tmp / "linked.csv")
    return pseudo_run(tmp, mp, inp, tmp / "linked.csv")


# ---------------------------------------------------------------- 4. ids as text

def submission_roundtrip(tmp: Path, ids: list[str]) -> pd.DataFrame:
    from kagglelib.scoring.submission import validate_submission, write_submission

    test = tmp / "test.csv"
    data = [{"id": i, "prompt": json.dumps(["q"]), "response_a": json.dumps(["a"]), "response_b": json.dumps(["b"])}
            for i in ids]
    test.write_text(csv_text(data, columns=["id", "prompt", "response_a", "response_b"]), encoding="utf-8")
    from kagglelib.data.load import load_arena

    ids_read = load_arena(test)["id"]
    path = write_submission(ids_read, np.tile([0.5, 0.3, 0.2], (len(ids), 1)), tmp / "submission.csv")
    return validate_submission(path, test)


def heldout_ids(tmp: Path) -> pd.DataFrame:
    from kagglelib.run.layout import heldout_predictions
    from kagglelib.data.frame import prob_frame
    from kagglelib.core.io import write_csv

    run = tmp / "r"
    ids = np.array(["NA", "001", "null", "7"], dtype=object)
    write_csv(prob_frame(ids, np.tile([0.5, 0.3, 0.2], (4, 1)), label=[0, 1, 2, 0], fold=[0, 1, 2, 3]),
              run / "valid_preds.csv")
    return heldout_predictions(run)


def ablation_table_runs(tmp: Path) -> pd.DataFrame:
    """The ablation table (06 writes it, the README report reads it) with runs named 001 and NA."""
    from kagglelib.core.io import read_csv_table, write_csv

    write_csv(pd.DataFrame({"run": ["001", "NA"], "smoke": [True, False], "log_loss": [1.05, 1.07]}), tmp / "t.csv")
    return read_csv_table(tmp / "t.csv", ("run",))


def soft_flag_heldout(tmp: Path) -> pd.DataFrame:
    from kagglelib.data.frame import prob_frame
    from kagglelib.inference.submit import validation_predictions
    from kagglelib.core.io import write_csv

    run = tmp / "r"
    write_csv(prob_frame(np.array(["a", "b", "c"], dtype=object), np.tile([0.5, 0.3, 0.2], (3, 1)), label=[0, 1, 2],
                         fold=[0, 1, 2], soft=np.array([False, False, True])), run / "oof.csv")
    (run / "config.json").write_text(json.dumps({"config_class": "BaselineConfig"}))
    (run / MANIFEST).write_text(json.dumps({"files": {}}))
    return validation_predictions(Run.at(run))


def oof_with_na_ids(tmp: Path) -> pd.DataFrame:
    """The all-fold OOF table from fold files whose train ids include the text 'NA' (read back without NA parsing)."""
    from kagglelib.training import fit
    from kagglelib.data.frame import prob_frame
    from kagglelib.data.load import load_arena
    from kagglelib.core.io import write_csv

    path = kaggle_csv(tmp, "t.csv", 6)
    path.write_text(path.read_text().replace("\n101,", "\nNA,").replace("\n102,", "\n007,"))
    df = load_arena(path)
    folds = np.array([0, 1, 0, 1, 0, 1])
    run = tmp / "run"
    for k in (0, 1):
        sel = folds == k
        write_csv(prob_frame(df["id"][sel], np.tile([0.5, 0.3, 0.2], (sel.sum(), 1)), label=df["label"][sel],
                             fold=folds[sel]), run / f"fold{k}" / "valid_preds.csv")
    return fit.oof_table(run, [0, 1], df)


# ---------------------------------------------------------------- 5. long runs check first

def all_folds_duplicate_id(tmp: Path, mp: pytest.MonkeyPatch) -> Any:
    from kagglelib.training.fit import train

    path = kaggle_csv(tmp, "t.csv", 15)
    path.write_text(path.read_text().replace("\n104,", "\n103,"))   # a repeated id (kept by the loader)
    no_training(mp)
    return train(train_cfg(tmp, path, folds="all", n_folds=3))


def symlinked_run(tmp: Path, mp: pytest.MonkeyPatch, folds: str = "") -> Any:
    from kagglelib.training.fit import train

    path = kaggle_csv(tmp, "t.csv", 15)
    elsewhere = tmp / "drive" / "encoder"
    elsewhere.mkdir(parents=True)
    (tmp / "out" / "runs").mkdir(parents=True)
    os.symlink(elsewhere, tmp / "out" / "runs" / "encoder")
    no_training(mp)
    return train(train_cfg(tmp, path, folds=folds, n_folds=3))


def pseudo_only_training(tmp: Path, mp: pytest.MonkeyPatch) -> Any:
    from kagglelib.training.fit import train

    no_training(mp)
    return train(train_cfg(tmp, soft_csv(tmp, n=15), n_folds=3))


def duplicate_test_ids(tmp: Path) -> Any:
    from kagglelib.inference.submit import run_inference

    test = tmp / "test.csv"
    data = [{"id": i, "prompt": json.dumps([f"q{n}"]), "response_a": json.dumps(["a"]), "response_b": json.dumps(["b"])}
            for n, i in enumerate(["1", "2", "2", "3"])]
    test.write_text(csv_text(data, columns=["id", "prompt", "response_a", "response_b"]), encoding="utf-8")
    from kagglelib.inference.submit import InferenceConfig
    return run_inference(InferenceConfig(output_dir=str(tmp), test_path=str(test), runs="nowhere"))


def heldout_repeated_id(tmp: Path) -> Any:
    from kagglelib.data.frame import prob_frame
    from kagglelib.inference.submit import validation_predictions
    from kagglelib.core.io import write_csv

    run = tmp / "r"
    write_csv(prob_frame(np.array(["a", "b", "b"], dtype=object), np.tile([0.5, 0.3, 0.2], (3, 1)), label=[0, 1, 2],
                         fold=[0, 1, 2]), run / "valid_preds.csv")
    (run / "config.json").write_text(json.dumps({"config_class": "BaselineConfig"}))
    (run / MANIFEST).write_text(json.dumps({"files": {}}))
    return validation_predictions(Run.at(run))


def baseline_pseudo_only(tmp: Path, mp: pytest.MonkeyPatch) -> Any:
    from kagglelib.training import baseline

    def features(*a: Any, **k: Any) -> Any:
        raise TrainingStarted("features started: the run's checks let it through")
    mp.setattr(baseline, "build_features", features)
    cfg = baseline.BaselineConfig(train_path=str(soft_csv(tmp, n=15)), test_path=str(SAMPLE_TEST),
                                  output_dir=str(tmp / "out"), n_folds=3)
    return baseline.run_baseline(cfg)


def load_text(tmp: Path, name: str, data: bytes | str, **kw: Any) -> pd.DataFrame:
    from kagglelib.data.load import load_arena

    (tmp / name).write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return load_arena(tmp / name, **kw)


TEST_COLUMNS = ["id", "prompt", "response_a", "response_b"]
ODD_IDS = ["NA", "null", "None", "nan", "N/A", "#N/A", "001", "-0", "TRUE"]
ODD_ID_TEST = csv_text([{"id": i, "prompt": json.dumps([f"q{n}"]), "response_a": json.dumps(["a"]),
                         "response_b": json.dumps(["b"])} for n, i in enumerate(ODD_IDS)], columns=TEST_COLUMNS)
GOOD = csv_text(rows(6))


def _float_labels(tmp: Path) -> Path:
    path = kaggle_csv(tmp, "f.csv", 6, start=700)
    text = path.read_text().replace(",1,0,0\n", ",1.0,0.0,0.0\n").replace(",0,1,0\n", ",0.0,1.0,0.0\n")
    path.write_text(text.replace("Question", "Float question"))
    return path


def _write_csv_named(tmp: Path, name: str) -> Path:
    from kagglelib.core.io import write_csv

    return write_csv(pd.DataFrame({"id": ["a"]}), tmp / name)


def _relative_spelling(tmp: Path, mp: pytest.MonkeyPatch) -> Any:
    inp = kaggle_csv(tmp, "in.csv", 3)
    mp.chdir(tmp)
    return pseudo_run(tmp, mp, inp, Path("./sub/../in.csv"))


# ---------------------------------------------------------------- 6. clocks

def jumping_wall_clock(tmp: Path, mp: pytest.MonkeyPatch) -> tuple[np.ndarray, dict]:
    """The wall clock jumps an hour forward at every call (NTP sync, VM resume); the budget is 2 hours."""
    import time

    from kagglelib.inference.tta import predict_chunked

    real, calls = time.time, [0]

    def jumping() -> float:
        calls[0] += 1
        return real() + 3600.0 * calls[0]
    mp.setattr(time, "time", jumping)
    df = pd.DataFrame({"id": list(range(8)), "prompt": [["q"]] * 8, "response_a": [["a"]] * 8,
                       "response_b": [["b"]] * 8, "model_a": "", "model_b": ""})
    return predict_chunked(lambda d: np.tile([0.5, 0.3, 0.2], (len(d), 1)), df, None, 2, True, 7200.0,
                           progress=False)


# ---------------------------------------------------------------- 7. packaging and Kaggle inputs

def pinned_wheel(tmp: Path, mp: pytest.MonkeyPatch) -> list[str]:
    import subprocess

    from kagglelib.packaging import download_wheels

    cache = tmp / "cache"
    cache.mkdir()
    for version, mtime in (("1.0.0", 100), ("2.0.0", 200)):   # 2.0.0 downloaded later, for another package
        w = cache / f"demo_pkg-{version}-py3-none-any.whl"
        w.write_bytes(b"wheel")
        os.utime(w, (mtime, mtime))
    mp.setattr(subprocess, "run", lambda *a, **k: None)   # pip finds 1.0.0 in the cache: downloads nothing
    return download_wheels(["demo-pkg==1.0.0"], tmp / "dest", cache)


def other_python_wheel(tmp: Path, mp: pytest.MonkeyPatch) -> list[str]:
    import subprocess

    from kagglelib.packaging import download_wheels

    cache = tmp / "cache"
    cache.mkdir()
    (cache / "demo_pkg-1.0.0-cp310-cp310-manylinux2014_x86_64.whl").write_bytes(b"wheel")   # a local download
    mp.setattr(subprocess, "run", lambda *a, **k: None)   # pip finds nothing new for Kaggle's Python
    return download_wheels(["demo-pkg"], tmp / "dest", cache, python_version="3.11")


def two_datasets_same_run(tmp: Path, mp: pytest.MonkeyPatch, same: bool) -> Path:
    from kagglelib.run import layout
    from kagglelib.run.store import write_manifest

    for ds, created in (("old-runs", "2024-01-01"), ("new-runs", "2024-01-01" if same else "2024-06-01")):
        run = tmp / "input" / ds / "runs" / "encoder"
        run.mkdir(parents=True)
        (run / "config.json").write_text(json.dumps({"created": created}))
        write_manifest(run)
    mp.setattr(layout, "KAGGLE_INPUT", tmp / "input")
    return layout.find_run("encoder", tmp / "working")


# ---------------------------------------------------------------- the table

@dataclass
class Case:
    name: str
    run: Callable[[Path, pytest.MonkeyPatch], Any]
    expect: str                                   # "ok: ..." or "error: regex"
    before: str                                   # outcome on main 4d35f37
    check: Callable[[Any, Path], bool] | None = None


CASES = [
    # 1. settings
    Case("TrainConfig batch_size=-4", lambda t, m: train_cfg(t, kaggle_csv(t), batch_size=-4),
         "error: batch_size must be an integer >= 1, got -4", "wrong result: accepted; plan says fits (activations -1.3 GiB)"),
    Case("TrainConfig batch_size=0", lambda t, m: train_cfg(t, kaggle_csv(t), batch_size=0),
         "error: batch_size must be an integer >= 1", "traceback: ZeroDivisionError in plan.show"),
    Case("TrainConfig grad_accum=0", lambda t, m: train_cfg(t, kaggle_csv(t), grad_accum=0),
         "error: grad_accum must be an integer >= 1", "traceback: ZeroDivisionError in plan.show"),
    Case("TrainConfig epochs=-1", lambda t, m: train_cfg(t, kaggle_csv(t), epochs=-1.0, max_steps=0),
         "error: epochs must be a number > 0", "wrong result: accepted; plan fits in -2.7 h"),
    Case("TrainConfig max_train_rows=-10", lambda t, m: train_cfg(t, kaggle_csv(t), max_train_rows=-10),
         "error: max_train_rows must be an integer >= 0", "wrong result: accepted; plan fits (0.2 h for -10 rows)"),
    Case("TrainConfig batch_size='8' (papermill -r passes text)", lambda t, m: train_cfg(t, kaggle_csv(t), batch_size="8"),
         "error: batch_size must be an integer >= 1, got '8'", "traceback: TypeError from plan.show, the never-stop cell"),
    Case("TrainConfig batch_size=True", lambda t, m: train_cfg(t, kaggle_csv(t), batch_size=True),
         "error: batch_size must be an integer", "wrong result: accepted, planned as batch 1, fits"),
    Case("TrainConfig lr=0", lambda t, m: train_cfg(t, kaggle_csv(t), lr=0.0),
         "error: lr must be a number > 0", "wrong result: accepted, plan fits (a run that cannot learn)"),
    Case("TrainConfig label_smoothing=1.5", lambda t, m: train_cfg(t, kaggle_csv(t), label_smoothing=1.5),
         "error: label_smoothing must be a number in \\[0, 1\\)", "traceback: torch label_smoothing error after model load (read)"),
    Case("TrainConfig warmup_ratio=2", lambda t, m: train_cfg(t, kaggle_csv(t), warmup_ratio=2.0),
         "error: warmup_ratio must be a number in \\[0, 1\\]", "wrong result: accepted, plan fits (LR never leaves warmup)"),
    Case("TrainConfig ema_decay=1", lambda t, m: train_cfg(t, kaggle_csv(t), ema_decay=1.0),
         "error: ema_decay must be a number in \\[0, 1\\)", "wrong result: EMA never moves, the saved model is the init (read)"),
    Case("TrainConfig lora_dropout=-0.1", lambda t, m: train_cfg(t, kaggle_csv(t), lora_dropout=-0.1),
         "error: lora_dropout must be a number in \\[0, 1\\)", "traceback: torch Dropout error after model load (read)"),
    Case("TrainConfig n_folds=1", lambda t, m: train_cfg(t, kaggle_csv(t), n_folds=1, fold=0),
         "error: n_folds must be an integer >= 2", "traceback: sklearn n_splits error after model load (read)"),
    Case("TrainConfig max_length=0", lambda t, m: train_cfg(t, kaggle_csv(t), max_length=0),
         "error: max_length must be an integer >= 1", "clear error"),
    Case("InferenceConfig chunk_rows=0", lambda t, m: inference_cfg(t, chunk_rows=0),
         "error: chunk_rows must be an integer >= 1", "traceback: ValueError range() arg 3 must not be zero, after loading runs"),
    Case("InferenceConfig time_budget_s=-5", lambda t, m: inference_cfg(t, time_budget_s=-5.0),
         "error: time_budget_s must be a number >= 0", "wrong result: no chunk runs (complete=False), every row gets the prior"),
    Case("InferenceConfig batch_tokens=-1", lambda t, m: inference_cfg(t, batch_tokens=-1),
         "error: batch_tokens must be an integer >= 1", "traceback: after loading the model (read)"),
    Case("InferenceConfig runs='encoder,baseline,encoder'", lambda t, m: inference_cfg(t, runs="encoder,baseline,encoder"),
         "error: runs lists \\['encoder'\\] more than once", "wrong result: accepted; an 'equal' blend gives encoder 2/3 (read)"),
    Case("InferenceConfig pseudo_label_path = test_path", lambda t, m: inference_cfg(t, pseudo_label_path=str(SAMPLE_TEST)),
         "error: pseudo_label_path .* is an input", "data loss: accepted; the test file overwritten at the end (read)"),
    Case("InferenceConfig pseudo_label_path ending .xlsx", lambda t, m: inference_cfg(t, pseudo_label_path=str(t / "p.xlsx")),
         "error: pseudo_label_path .*\\.xlsx.*csv", "wrong result: accepted; CSV text named .xlsx (read)"),
    Case("BaselineConfig feature_fraction=0", lambda t, m: baseline_cfg(t, feature_fraction=0.0),
         "error: feature_fraction must be a number in \\(0, 1\\]", "traceback: LightGBM error after features (read)"),
    Case("BaselineConfig max_train_rows=-1", lambda t, m: baseline_cfg(t, max_train_rows=-1),
         "error: max_train_rows must be an integer >= 0", "accepted; traceback in subsample (read)"),
    Case("BaselineConfig num_leaves=1", lambda t, m: baseline_cfg(t, num_leaves=1),
         "error: num_leaves must be an integer >= 2", "traceback: LightGBM error after features (read)"),
    Case("run_name with a slash", lambda t, m: baseline_cfg(t, run_name="a/b"),
         "error: run_name must be a plain folder name", "clear error (only when the run is written)"),
    Case("plan.show batch_size=0 never raises", lambda t, m: show(t, "03", batch_size=0),
         "ok: says why, returns None", "traceback: ZeroDivisionError from plan.show",
         lambda r, t: r[0] is None and "batch_size" in r[1]),
    Case("plan.show with an unknown backbone", lambda t, m: show(t, "03", backbone="someone/not-a-model"),
         "ok: plan unavailable, says why", "behaves", lambda r, t: r[0] is None and "not-a-model" in r[1]),
    Case("05 plan: misspelt run name", lambda t, m: plan_of(t, "05", runs="encodr"),
         "ok: DOES NOT FIT, names the unknown run", "wrong result: planned as a default model and fits",
         lambda p, t: not p.fits and any("encodr" in x and "not found" in x for x in p.problems)),
    Case("05 plan: the default run names not trained yet", lambda t, m: plan_of(t, "05", runs="gemma_lora,encoder"),
         "ok: planned from the profile, and said so", "behaves",
         lambda p, t: p.fits and "not trained yet" in p.rows["gemma_lora"]),
    Case("03 plan: train_path with two files", lambda t, m: plan_of(
        t, "03", train_path=f"{kaggle_csv(t, 'a.csv', 6)},{kaggle_csv(t, 'b.csv', 6, start=300)}"),
         "ok: rows of both files", "clear error: plan unavailable (FileNotFoundError for 'a.csv,b.csv')",
         lambda p, t: "a.csv" in p.rows["rows"] and "b.csv" in p.rows["rows"]),
    # 2. several train files
    Case("train_path=wsdm.parquet,kaggle.csv", lambda t, m: load_training(wsdm_parquet(t), kaggle_csv(t)),
         "error: w.parquet.*wsdm.*k.csv.*kaggle", "wrong result: layout (and submission format) of the first file"),
    Case("train_path=kaggle.csv,wsdm.parquet", lambda t, m: load_training(kaggle_csv(t), wsdm_parquet(t)),
         "error: label layouts differ", "wrong result: layout of the first file, no warning"),
    Case("integer ids in one file, text ids in another", lambda t, m: int_and_text_ids(t),
         "ok: ids as text, conversion announced in train_report", "behaves (silent conversion)",
         lambda d, t: d["id"].map(type).eq(str).all() and d.attrs["train_report"]["ids_as_text"]),
    Case("load report of the second file (no ties, warnings)", lambda t, m: report_of_second_file(t),
         "ok: report lists every file", "wrong result: report of the first file only",
         lambda d, t: len(d.attrs["load_report"].files) == 2
         and any("b.csv" in w and "no" in w for w in d.attrs["load_report"].warnings)),
    Case("csv + parquet of one layout", lambda t, m: csv_and_parquet(t), "ok: 12 rows, in order", "behaves",
         lambda d, t: d["id"].astype(str).tolist() == [str(i) for i in (*range(100, 106), *range(300, 306))]),
    Case("the same file listed twice", lambda t, m: load_training(kaggle_csv(t), kaggle_csv(t)),
         "error: listed twice", "behaves (second copy dropped as duplicates)"),
    Case("pseudo-labels only, training", lambda t, m: pseudo_only_training(t, m),
         "error: no rows with one-hot labels", "wrong result: training starts; metrics on pseudo-labels only (read)"),
    # 3. outputs
    Case("pseudo_label out_path == input_path", lambda t, m: pseudo_run(t, m, kaggle_csv(t, "in.csv", 3), t / "in.csv"),
         "error: out_path .*in.csv is an input", "data loss: the input is overwritten"),
    Case("pseudo_label out_path a hard link to the input", lambda t, m: hardlink_out(t, m),
         "error: is an input", "data loss: the input is overwritten through the link"),
    Case("pseudo_label out_path .parquet", lambda t, m: (pseudo_run(t, m, kaggle_csv(t, "in.csv", 3), t / "p.parquet"),
                                                         read_back(t / "p.parquet")),
         "ok: a parquet file that loads back", "wrong result: CSV text named .parquet",
         lambda r, t: len(r[1]) == 3 and r[1]["target_a"].iloc[0] == pytest.approx(0.5)),
    Case("pseudo_label out_path .csv.gz", lambda t, m: (pseudo_run(t, m, kaggle_csv(t, "in.csv", 3), t / "p.csv.gz"),
                                                        read_back(t / "p.csv.gz")),
         "ok: gzip CSV that loads back", "behaves", lambda r, t: len(r[1]) == 3),
    Case("pseudo_label out_path .txt", lambda t, m: pseudo_run(t, m, kaggle_csv(t, "in.csv", 3), t / "p.txt"),
         "error: p.txt.*\\.csv, \\.csv\\.gz or \\.parquet", "wrong result: CSV text named .txt"),
    Case("pseudo_label parquet without id, turns as lists", lambda t, m: (
        parquet_no_id_lists(t), pseudo_run(t, m, t / "unl.parquet", t / "p.csv"), read_back(t / "p.csv")),
         "ok: the turns survive", "wrong result: turns written as numpy-repr text",
         lambda r, t: r[2]["prompt"].tolist() == [["Hi", "And then?"], ["Q2"]] and r[2]["id"].tolist() == ["pseudo-0", "pseudo-1"]),
    # 4. ids as text
    Case("submission whose test id is the text NA", lambda t, m: submission_roundtrip(t, ["NA", "1", "2"]),
         "ok: validated", "clear error, wrongly: row 0 has id nan (05 writes no submission)",
         lambda s, t: s["id"].tolist() == ["NA", "1", "2"]),
    Case("submission ids null/None/N/A/#N/A/001", lambda t, m: submission_roundtrip(t, ["null", "None", "N/A", "#N/A", "001"]),
         "ok: validated", "clear error, wrongly (NA parsing)", lambda s, t: s["id"].tolist()[-1] == "001"),
    Case("held-out file with ids NA/001/null", lambda t, m: heldout_ids(t), "ok: ids as written",
         "wrong result: NA and null read as NaN", lambda d, t: d["id"].tolist() == ["NA", "001", "null", "7"]),
    Case("ablation table with runs named 001 and NA", lambda t, m: ablation_table_runs(t),
         "ok: run names as written", "wrong result: report.py's pd.read_csv gives [1.0, nan]",
         lambda d, t: d["run"].tolist() == ["001", "NA"] and d["smoke"].tolist() == [True, False]),
    Case("held-out 'soft' column read back", lambda t, m: soft_flag_heldout(t), "ok: only the soft row left out",
         "wrong result: 'False' is truthy, every row left out", lambda d, t: d.index.tolist() == ["a", "b"]),
    Case("all-fold OOF table with train ids NA and 007", lambda t, m: oof_with_na_ids(t),
         "ok: train order, ids as text", "traceback: KeyError (NaN id) at the end of every fold (read; oof_table is new)",
         lambda d, t: d["id"].tolist() == ["100", "NA", "007", "103", "104", "105"]),
    # 5. long runs check first
    Case("folds='all' with a repeated id", lambda t, m: all_folds_duplicate_id(t, m),
         "error: id '103' .*rows 3 and 4.*before any model is loaded", "traceback: pandas error after every fold trained (training starts: run; the end: issue 18)"),
    Case("run folder is a symbolic link", lambda t, m: symlinked_run(t, m),
         "error: symbolic link", "data loss: training starts, then the commit replaces the link (read)"),
    Case("run folder is a symbolic link, folds='all'", lambda t, m: symlinked_run(t, m, "all"),
         "error: symbolic link", "data loss: training starts, the link replaced after every fold (read)"),
    Case("05 test file with a repeated id", lambda t, m: duplicate_test_ids(t),
         "error: test.csv.*id '2'.*rows 1 and 2", "wrong result: no check; a submission with a repeated id (read)"),
    Case("05 held-out file with a repeated id", lambda t, m: heldout_repeated_id(t),
         "error: valid_preds.csv: id 'b' occurs on several rows", "wrong result: accepted; the row counts twice in the blend (read)"),
    Case("02 on a train file of pseudo-labels only", lambda t, m: baseline_pseudo_only(t, m),
         "error: no rows with one-hot labels", "traceback: IndexError after every feature was built"),
    # real users' files, read by load_arena (the first table, tests/test_bad_inputs.py, has the rest)
    Case("test ids NA/null/None/nan/N/A/#N/A/001/-0/TRUE", lambda t, m: load_text(t, "test.csv", ODD_ID_TEST),
         "ok: every id kept as its text", "behaves", lambda d, t: d["id"].tolist() == ODD_IDS),
    Case("odd test ids through a whole submission", lambda t, m: submission_roundtrip(t, ODD_IDS),
         "ok: validated, ids as written", "clear error, wrongly (NA parsing)",
         lambda s, t: s["id"].tolist() == ODD_IDS),
    Case("id '1e5' (Excel scientific notation)", lambda t, m: load_text(t, "t.csv", GOOD.replace("\n103,", "\n1e5,", 1)),
         "error: line 5: column 'id' is '1e5'.*scientific", "clear error"),
    Case("Excel Europe: BOM + CRLF + semicolons", lambda t, m: load_text(
        t, "t.csv", "\ufeff" + csv_text(rows(6), sep=";", line_end="\r\n")),
         "ok: 6 rows, ids and texts intact", "behaves",
         lambda d, t: d["id"].astype(str).tolist() == [str(i) for i in range(100, 106)]
         and d["prompt"].iloc[0] == ["Question 0, please"]),
    Case("winner columns written as TRUE/FALSE", lambda t, m: load_text(
        t, "t.csv", csv_text(rows(6, {i: {"winner_model_a": "TRUE", "winner_model_b": "FALSE", "winner_tie": "FALSE"}
                                     for i in range(6)}))),
         "error: column 'winner_model_a' row 0 must be 0 or 1", "clear error"),
    Case("winner columns as floats 1.0/0.0 in one file, ints in another", lambda t, m: load_training(
        kaggle_csv(t, "a.csv", 6), _float_labels(t)),
         "ok: one label space", "behaves", lambda d, t: d["label"].tolist() == [0, 1, 2] * 4),
    Case("a repeated id in one file (single fold)", lambda t, m: load_text(t, "t.csv", GOOD.replace("\n104,", "\n103,")),
         "ok: kept and reported", "behaves", lambda d, t: d.attrs["load_report"].duplicate_ids == 2 and len(d) == 6),
    Case("train file saved as .txt (content is CSV)", lambda t, m: load_text(t, "train.txt", GOOD),
         "ok: read by content", "behaves", lambda d, t: len(d) == 6),
    Case("write_csv to a name ending .parquet", lambda t, m: _write_csv_named(t, "x.parquet"),
         "error: x.parquet is not named .csv", "wrong result: CSV text named .parquet"),
    Case("out_path spelt differently from the input (./in.csv)", lambda t, m: _relative_spelling(t, m),
         "error: is an input", "data loss: the input is overwritten"),
    Case("05 pseudo_label_path = one of several train files", lambda t, m: inference_cfg(
        t, train_path=f"{kaggle_csv(t, 'a.csv', 6)},{kaggle_csv(t, 'b.csv', 6, start=300)}",
        pseudo_label_path=str(t / "b.csv")),
         "error: pseudo_label_path .*b.csv is an input", "data loss: accepted; a train file overwritten at the end (read)"),
    Case("plan.show with batch_size='abc'", lambda t, m: show(t, "04", batch_size="abc"),
         "ok: says why, returns None", "traceback: TypeError from plan.show", lambda r, t: r[0] is None and "abc" in r[1]),
    # 6. clocks
    Case("time budget while the wall clock jumps", lambda t, m: jumping_wall_clock(t, m),
         "ok: every chunk predicted", "wrong result: chunks skipped, rows fall back to the prior",
         lambda r, t: r[1]["complete"] and np.isfinite(r[0]).all()),
    # 7. packaging / Kaggle inputs
    Case("pinned wheel with a newer one in the cache", lambda t, m: pinned_wheel(t, m),
         "ok: the pinned version", "wrong result: the newest cached wheel",
         lambda w, t: w == ["demo_pkg-1.0.0-py3-none-any.whl"]),
    Case("cached wheel built for another Python (cp310)", lambda t, m: other_python_wheel(t, m),
         "error: left no wheel for Python 3.11", "wrong result: the cp310 wheel is bundled; offline pip then fails in the kernel (read)"),
    Case("two attached datasets hold different runs of one name", lambda t, m: two_datasets_same_run(t, m, False),
         "error: 2 different runs named 'encoder'", "wrong result: the first one found, silently"),
    Case("two attached datasets hold the same run", lambda t, m: two_datasets_same_run(t, m, True),
         "ok: either copy (identical)", "behaves", lambda p, t: p.name == "encoder"),
]

ERRORS = (ValueError, RuntimeError, FileNotFoundError)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_feature_bad_input_table(case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    if case.expect.startswith("error:"):
        with pytest.raises(ERRORS) as err:
            case.run(tmp_path, monkeypatch)
        assert not isinstance(err.value, TrainingStarted)
        message = str(err.value)
        assert re.search(case.expect[len("error:"):].strip(), message), message
    else:
        result = case.run(tmp_path, monkeypatch)
        assert case.check is None or case.check(result, tmp_path), case.name


def test_pseudo_label_refusal_leaves_the_input_intact(tmp_path, monkeypatch):
    """The refused out_path == input case writes nothing: the input file's bytes are unchanged."""
    inp = kaggle_csv(tmp_path, "in.csv", 3)
    before = inp.read_bytes()
    with pytest.raises(ValueError):
        pseudo_run(tmp_path, monkeypatch, inp, inp)
    assert inp.read_bytes() == before and not (tmp_path / "in.csv.json").exists()


def test_several_files_keep_every_row_in_order(tmp_path):
    """Two files of one layout: every row once, file order then row order, soft file included."""
    a = kaggle_csv(tmp_path, "a.csv", 6)
    b = soft_csv(tmp_path, "b.csv", 4)
    b.write_text(b.read_text().replace("Question", "Pseudo question"))
    df = load_training(a, b)
    assert df["id"].astype(str).tolist() == [*map(str, range(100, 106)), "p0", "p1", "p2", "p3"]
    assert df["source"].tolist() == [0] * 6 + [1] * 4


def outcome(case: Case, tmp: Path) -> str:
    """One line: what the code imported here does with the case."""
    with pytest.MonkeyPatch.context() as mp:
        try:
            result = case.run(tmp, mp)
        except Exception as err:   # noqa: BLE001 - the table records whatever happens
            return f"{type(err).__name__}: {str(err).replace(chr(10), ' ')[:120]}"
        try:
            ok = case.check(result, tmp) if case.check else True
        except Exception as err:   # noqa: BLE001
            ok = f"check raised {type(err).__name__}: {err}"[:120]
        return "ran" + ("" if ok is True else f" (check fails: {ok})")


if __name__ == "__main__":
    import tempfile

    for case in CASES:
        with tempfile.TemporaryDirectory() as d:
            print(json.dumps({"case": case.name, "before": case.before, "expect": case.expect,
                              "got": outcome(case, Path(d))}), flush=True)
