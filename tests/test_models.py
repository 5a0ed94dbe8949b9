"""Model builder, heads, LoRA/PiSSA, save/load and the batched forward, on tiny Gemma-2 / DeBERTa-v2."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

from kagglelib.models.build import (build_base, build_model, count_parameters, lora_targets, modules_to_save,
                                    resolve_backbone, transformer_layers)
from kagglelib.models.device import attention_impl
from kagglelib.models.forward import make_batches, pad_batch, predict_probs
from kagglelib.models.saved import load_for_inference, save_for_inference, save_pissa_init
from kagglelib.models.spec import ModelSpec
from kagglelib.core.io import write_json
from kagglelib.data.text import TextConfig


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny(backbone: str = "tiny-gemma2", **kw) -> ModelSpec:
    base = dict(backbone=backbone, head_layers=3, lora_r=4, lora_alpha=8, lora_dropout=0.0, head_dropout=0.0)
    return ModelSpec(**{**base, **kw})


def batch(tokenizer, texts=("hello there, which answer is better?", "a b c", "the quick brown fox jumps over it")):
    seqs = [tokenizer(t)["input_ids"] for t in texts]
    return seqs, pad_batch(seqs, tokenizer.pad_token_id, "right")


@pytest.mark.parametrize("backbone,targets,freeze", [("tiny-gemma2", "q_proj,k_proj,v_proj,o_proj,gate_proj", 0),
                                                     ("tiny-gemma2", "q_proj,k_proj,v_proj,o_proj,gate_proj", 1),
                                                     ("tiny-deberta", "query_proj,key_proj,value_proj,dense", 0)])
def test_trainable_params_match_lora_config(backbone, targets, freeze):
    spec = tiny(backbone, freeze_layers=freeze)
    base, _ = build_base(spec)
    layers = transformer_layers(base)
    frozen = {id(m) for layer in list(layers)[:freeze] for m in layer.modules()}
    assert lora_targets(spec, base.config.model_type) == targets.split(",")
    # Trained in full: the head, and DeBERTa's newly initialised pooler (no LoRA on them).
    saved = modules_to_save(base)
    expected = sum(p.numel() for n in saved for p in getattr(base, n).parameters())
    for name, m in base.named_modules():
        if isinstance(m, nn.Linear) and name.split(".")[-1] in targets.split(",") and id(m) not in frozen \
                and not name.startswith(tuple(saved)):
            expected += spec.lora_r * (m.in_features + m.out_features)
    model, _ = build_model(spec)
    trainable, total = count_parameters(model)
    assert trainable == expected
    assert all(p.requires_grad for n, p in model.named_parameters() if "modules_to_save" in n)


def test_full_finetune_and_freeze_layers():
    model, _ = build_model(tiny("tiny-deberta", use_lora=False, freeze_layers=1))
    layers = transformer_layers(model)
    assert not any(p.requires_grad for p in layers[0].parameters())
    assert all(p.requires_grad for p in layers[1].parameters())
    assert all(p.requires_grad for p in model.classifier.parameters())


def test_gemma_padding_and_attention():
    model, tok = build_model(tiny())
    assert tok.padding_side == "right" and model.config.pad_token_id == tok.pad_token_id
    assert model.config._attn_implementation == "eager"   # keeps Gemma-2 attention logit softcapping
    assert attention_impl("gemma2") == "eager" and attention_impl("bert") is None
    _, tok_nt = build_model(tiny(task="next_token"))
    assert tok_nt.padding_side == "left"


@pytest.mark.parametrize("task", ["classifier", "next_token"])
def test_padding_does_not_change_predictions(task):
    """The classifier reads the last non-pad token (right padding); next-token uses left padding + positions."""
    model, tok = build_model(tiny(task=task))
    seqs, _ = batch(tok)
    together = predict_probs(model, seqs, task, batch_tokens=10_000, device="cpu", progress=False)
    alone = np.vstack([predict_probs(model, [s], task, 10_000, "cpu", progress=False) for s in seqs])
    np.testing.assert_allclose(together, alone, atol=1e-5)
    assert np.allclose(together.sum(1), 1) and not np.allclose(together[0], together[1], atol=1e-7)


def test_predict_probs_keeps_row_order():
    model, tok = build_model(tiny("tiny-deberta"))
    seqs, (ids, mask) = batch(tok)
    with torch.no_grad():
        direct = torch.softmax(model(input_ids=ids, attention_mask=mask).logits, -1).numpy()
    for budget in (1, 20, 10_000):   # one row per batch ... everything in one batch
        got = predict_probs(model, seqs, "classifier", budget, "cpu", progress=False)
        np.testing.assert_allclose(got, direct, atol=1e-5)
    assert [len(b) for b in make_batches([5, 10, 3], 20)] == [2, 1]


def _train_steps(model, ids, mask, labels, steps=8, lr=5e-3):
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    losses = []
    for _ in range(steps):
        loss = nn.functional.cross_entropy(model(input_ids=ids, attention_mask=mask).logits, labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("init", ["default", "pissa", "pissa_niter_4"])
def test_lora_inits_train(init):
    spec = tiny(lora_init=init)
    model, tok = build_model(spec)
    _, (ids, mask) = batch(tok)
    if init != "default":   # PiSSA keeps the function at init: residual + B A == original weight
        base, _ = build_base(spec)
        with torch.no_grad():
            np.testing.assert_allclose(model(input_ids=ids, attention_mask=mask).logits.numpy(),
                                       base(input_ids=ids, attention_mask=mask).logits.numpy(), atol=1e-4)
    lora_before = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_B" in n}
    losses = _train_steps(model, ids, mask, torch.tensor([0, 1, 2]))
    assert losses[-1] < losses[0] - 0.05
    assert any(not torch.equal(p, lora_before[n]) for n, p in model.named_parameters() if "lora_B" in n)


def _save_run(tmp_path, spec, model, tok, pissa_init=None):
    run = tmp_path / "run"
    save_for_inference(model, tok, run / "model", pissa_init)
    write_json({**dataclasses.asdict(spec), **dataclasses.asdict(TextConfig(max_length=128))}, run / "config.json")
    return run


@pytest.mark.parametrize("kw", [dict(backbone="tiny-deberta"), dict(backbone="tiny-deberta", use_lora=False),
                                dict(lora_init="pissa"), dict(task="next_token")])
def test_saved_model_reloads_identically(tmp_path, kw):
    spec = tiny(**kw)
    model, tok = build_model(spec)
    pissa_init = save_pissa_init(model, tmp_path / "pissa_init") if spec.lora_init != "default" else None
    seqs, (ids, mask) = batch(tok)
    if spec.task == "classifier":
        _train_steps(model, ids, mask, torch.tensor([0, 1, 2]), steps=3)
    else:   # move the LoRA weights off their zero init
        with torch.no_grad():
            for n, p in model.named_parameters():
                if "lora_B" in n:
                    p.normal_(0, 0.05)
    model.eval()
    expected = predict_probs(model, seqs, spec.task, 10_000, "cpu", progress=False)
    run = _save_run(tmp_path, spec, model, tok, pissa_init)
    saved = {p.name for p in (run / "model").iterdir()}
    assert ("adapter_model.safetensors" in saved) == spec.use_lora and "tokenizer.json" in saved
    assert not any(name.endswith((".bin", ".pt", ".pth")) for name in saved)
    loaded, tok2, text_cfg, task = load_for_inference(run, device="cpu")
    got = predict_probs(loaded, seqs, task, 10_000, "cpu", progress=False)
    assert task == spec.task and text_cfg.max_length == 128 and tok2.pad_token_id == tok.pad_token_id
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert not np.allclose(expected, 1 / 3, atol=1e-4)   # the head really carries trained weights


def test_quantization_without_cuda_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    with pytest.raises(RuntimeError, match="needs a CUDA GPU"):
        build_model(tiny(quantization="4bit"))


def test_missing_weights_message(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    with pytest.raises(FileNotFoundError, match="weights not found locally.*allow_download"):
        resolve_backbone("google/gemma-2-9b-it")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match="huggingface-cli download google/gemma-2-9b-it"):
        resolve_backbone("google/gemma-2-9b-it", allow_download=True)
    local = tmp_path / "my-model"
    local.mkdir()
    (local / "config.json").write_text("{}")
    assert resolve_backbone(str(local)) == str(local)
    assert resolve_backbone("minilm").endswith("model")
