"""Training on several GPUs (issue 20): one process per GPU from the notebook, never DataParallel in one process;
rows seen, steps and schedule equal to the pre-flight plan's."""
from __future__ import annotations

import functools

import pytest
import torch
from transformers import TrainerCallback, TrainingArguments

from kagglelib.core.io import read_json
from kagglelib.plan import plan_training
from kagglelib.training import launch, loop
from kagglelib.run.config import make_config
from kagglelib.training.config import DecoderTrainConfig
from kagglelib.training.fit import train

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMALL = dict(profile="cpu-sample", max_train_rows=32, max_valid_rows=16, max_length=64, prompt_tokens=16,
             response_tokens=24, batch_size=4, grad_accum=1, max_steps=0, epochs=1.0, eval_steps=0, save_steps=0,
             lora_init="default", swap_aug="pair", progress=False)


def test_layout_is_one_process_per_gpu():
    assert launch.choose_layout(2).processes == 2 and "one process per GPU" in launch.choose_layout(2).how
    assert launch.choose_layout(4).processes == 4
    one = launch.choose_layout(2, "callbacks given to this process")
    assert one.processes == 1 and "cuda:0" in one.how and "callbacks" in one.how
    assert launch.choose_layout(1).processes == 1 and launch.choose_layout(0).how.startswith("no GPU")
    assert launch.choose_layout(2, distributed=True).processes == 1   # already a torchrun rank
    cmd = launch.torchrun_command("cfg.json", "r_{rank}.json", 2)
    assert cmd[1:4] == ["-m", "torch.distributed.run", "--standalone"] and cmd[cmd.index("--nproc_per_node") + 1] == "2"


class CountTrainingRows(TrainerCallback):
    """Rows that reach the model's forward in training mode (what a step really consumes)."""

    def __init__(self):
        self.rows = 0

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        def hook(module, inputs, kw):
            if module.training:
                self.rows += len(kw["input_ids"])
        model.register_forward_pre_hook(hook, with_kwargs=True)


@pytest.fixture()
def two_gpus(monkeypatch):
    """TrainingArguments as on a 2-GPU machine in one process (training_args.py: _n_gpu = torch.cuda.device_count()),
    and a record of every nn.DataParallel the Trainer builds (on CPU DataParallel just calls the module)."""
    original = TrainingArguments._setup_devices.func

    def setup(self):
        device = original(self)
        self._n_gpu = 2
        return device

    prop = functools.cached_property(setup)
    prop.__set_name__(TrainingArguments, "_setup_devices")
    monkeypatch.setattr(TrainingArguments, "_setup_devices", prop)
    wrapped = []

    class RecordingDataParallel(torch.nn.DataParallel):
        def __init__(self, module, *args, **kwargs):
            wrapped.append(type(module).__name__)
            super().__init__(module, *args, **kwargs)

    monkeypatch.setattr(torch.nn, "DataParallel", RecordingDataParallel)
    return wrapped


def _plan_rows(cfg) -> int:
    return int(plan_training(cfg, bench={}).rows["rows"].split(" rows seen")[0].split()[-1].replace(",", ""))


def test_two_visible_gpus_in_one_process_train_the_planned_rows(tmp_path, two_gpus):
    cfg = make_config(DecoderTrainConfig, output_dir=str(tmp_path), run_name="two", **SMALL)
    counter = CountTrainingRows()
    out = train(cfg, callbacks=[counter])
    assert two_gpus == []                                    # no DataParallel
    assert out["global_step"] == 8                           # 32 rows / 4 per step
    assert counter.rows == _plan_rows(cfg) == 64              # 8 steps x 4 pairs x both A/B orders
    hist = read_json(cfg.run_dir / "metrics.json")["train_history"]
    assert hist and all(r["lr"] is not None for r in hist)


def test_without_the_guard_the_mock_reproduces_the_doubled_batch(tmp_path, two_gpus, monkeypatch):
    """The control: the same mock without loop.one_gpu_per_process trains twice the plan's rows (the bug)."""
    monkeypatch.setattr(loop, "one_gpu_per_process", lambda args, world_size: args)
    cfg = make_config(DecoderTrainConfig, output_dir=str(tmp_path), run_name="dp", **SMALL)
    counter = CountTrainingRows()
    train(cfg, callbacks=[counter])
    assert two_gpus and counter.rows == 2 * _plan_rows(cfg)


@pytest.mark.ddp
def test_launch_trains_one_process_per_gpu_with_the_planned_steps(tmp_path, capsys):
    """launch.train on a '2-GPU' machine runs torchrun with 2 ranks (gloo here); steps and rows are the plan's."""
    cfg = make_config(DecoderTrainConfig, output_dir=str(tmp_path), run_name="launched", **{**SMALL, "swap_aug": "none"})
    out = launch.train(cfg, n_gpus=2)
    assert out["world_size"] == 2 and "one process per GPU" in out["launch"]
    assert "[launch] data-parallel over 2 GPUs" in capsys.readouterr().out
    p = plan_training(cfg, "2xT4", bench={})
    steps = int(p.rows["rows"].split(" steps")[0].split()[-1])
    assert out["global_step"] == steps == 4                  # 32 rows / (4 per rank x 2 ranks)
    assert _plan_rows(cfg) == 32 and "8 per step" in p.rows["rows"]
    assert read_json(cfg.run_dir / "metrics.json")["global_step"] == 4
