"""The one text template: how a prompt and two responses become model input, with truncation.

Each side is the conversation with one model, turns interleaved::

    <user>: {prompt turn 1}
    <response_a>: {response turn 1}
    <user>: {prompt turn 2}
    ...

Long fields are cut head+tail (the first ``head_ratio`` of the budget from the start, the rest
from the end, joined by `` … ``), first per turn (``prompt_tokens``/``response_tokens``), then
per side so that ``side A + side B + special tokens + suffix`` fits ``max_length``. A short side
leaves its unused budget to the other. Training, validation, TTA inference and the bias probes all
call :func:`encode_pairs`, nothing else. Analyses of the raw text (EDA, hand-made features, probes,
post-processing rules) see each field as one string from :func:`join_turns`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

import pandas as pd

from ..core.checks import check_settings


USER = "<user>: "
RESPONSE = {"a": "<response_a>: ", "b": "<response_b>: "}
ELLIPSIS = " … "
# Suffix for the next-token (causal LM) variant: the model answers with one label token.
INSTRUCTION = "\nWhich response is better? Answer 0 for A, 1 for B, 2 for a tie.\nAnswer: "
LABEL_TOKENS = ("0", "1", "2")
# One newline between turns: a turn boundary reads as a line break, so words of two turns never merge and line
# counts see it, while a length grows by one character per boundary only (a blank line would look like a paragraph).
TURN_SEP = "\n"
# Phrases that open a refusal or an AI disclaimer (case-insensitive); apologies alone are not refusals.
REFUSAL_PATTERN = (r"(?i)\b(?:i can(?:no|')t|i cannot|i(?:'m| am) (?:not able|unable)|i (?:won't|will not)"
                   r"|as an ai|as a language model|i(?:'m| am) not (?:comfortable|allowed|programmed)"
                   r"|(?:cannot|can't|unable to) (?:provide|assist|help|fulfill|comply|create|generate)"
                   r"|against (?:my|the) (?:guidelines|policy|programming)|not appropriate|i must decline)")


@dataclass
class TextConfig:
    """Token budgets for one model input."""

    max_length: int = 1024       # whole input, special tokens and suffix included
    prompt_tokens: int = 256     # per prompt turn
    response_tokens: int = 512   # per response turn
    head_ratio: float = 0.5      # share of a truncated field kept from its start

    SETTING_RULES: ClassVar[dict[str, str]] = {"max_length": "int>=1", "prompt_tokens": "int>=0",
                                               "response_tokens": "int>=1", "head_ratio": "[0,1]"}

    def __post_init__(self) -> None:
        check_settings(self, self.SETTING_RULES)
        if not 0.0 <= self.head_ratio <= 1.0:
            raise ValueError(f"head_ratio must be in [0, 1], got {self.head_ratio}")
        if self.max_length < 16 or self.prompt_tokens < 1 or self.response_tokens < 1:
            raise ValueError(f"token budgets too small: {self}")


def head_tail(seq: Sequence[Any], budget: int, head_ratio: float = 0.5, joiner: Sequence[Any] = ()) -> list:
    """Keep the first and last parts of ``seq`` within ``budget`` items (joiner included)."""
    seq = list(seq)
    if len(seq) <= budget:
        return seq
    joiner = list(joiner) if budget > len(joiner) + 1 else []
    keep = max(budget - len(joiner), 0)
    head = int(round(keep * head_ratio))
    tail = keep - head
    return seq[:head] + joiner + (seq[len(seq) - tail:] if tail else [])


def head_tail_text(text: str, max_chars: int, head_ratio: float = 0.5) -> str:
    """Character-level head+tail truncation of one string."""
    return "".join(head_tail(text, max_chars, head_ratio, ELLIPSIS))


def join_turns(turns: pd.Series) -> pd.Series:
    """Each row's list of turns as one string, joined by ``TURN_SEP`` (vectorised; a missing cell gives "")."""
    return turns.str.join(TURN_SEP).fillna("").astype(str)


def _split_budget(len_a: int, len_b: int, total: int) -> tuple[int, int]:
    """Token budget per side: half each, a short side giving its unused share to the other."""
    if len_a + len_b <= total:
        return len_a, len_b
    half = total // 2
    if len_a < half:
        return len_a, total - len_a
    if len_b < total - half:
        return total - len_b, len_b
    return half, total - half


def special_template(tokenizer: Any) -> tuple[list[int], list[int], list[int]]:
    """Special token ids (before side A, between sides, after side B) the tokenizer adds to a pair."""
    a = tokenizer("hello", add_special_tokens=False)["input_ids"]
    b = tokenizer("world", add_special_tokens=False)["input_ids"]
    both = tokenizer("hello", "world", add_special_tokens=True)["input_ids"]
    for i in range(len(both) - len(a) + 1):
        if both[i:i + len(a)] == a:
            for j in range(i + len(a), len(both) - len(b) + 1):
                if both[j:j + len(b)] == b:
                    return both[:i], both[i + len(a):j], both[j + len(b):]
    raise ValueError(f"cannot find where {type(tokenizer).__name__} puts a text pair in {both}")


def encode_pairs(tokenizer: Any, df: pd.DataFrame, cfg: TextConfig, suffix: str = "") -> list[list[int]]:
    """Token ids per row: special tokens around side A and side B, then ``suffix``; fits ``cfg.max_length``.

    All fields are tokenized in one batched call, so this is fast on 57k rows with a fast tokenizer.
    """
    markers = [USER, RESPONSE["a"], RESPONSE["b"], "\n", ELLIPSIS, suffix]
    fields: list[str] = []
    for p, a, b in zip(df["prompt"], df["response_a"], df["response_b"]):
        fields.extend(p)
        fields.extend(a)
        fields.extend(b)
    # verbose=False: whole fields may exceed model_max_length here; they are cut to budget below.
    ids = tokenizer(markers + fields, add_special_tokens=False, verbose=False)["input_ids"]
    user_ids, a_ids, b_ids, nl_ids, ell_ids, suffix_ids = ids[:6]
    ids = ids[6:]
    before, between, after = special_template(tokenizer)
    total = cfg.max_length - len(before) - len(between) - len(after) - len(suffix_ids)
    if total < 8:
        raise ValueError(f"max_length {cfg.max_length} leaves no room for text (suffix {len(suffix_ids)} tokens)")
    out: list[list[int]] = []
    pos = 0
    for p, a, b in zip(df["prompt"], df["response_a"], df["response_b"]):
        p_ids, pos = ids[pos:pos + len(p)], pos + len(p)
        ra_ids, pos = ids[pos:pos + len(a)], pos + len(a)
        rb_ids, pos = ids[pos:pos + len(b)], pos + len(b)
        sides = []
        for marker, resp in ((a_ids, ra_ids), (b_ids, rb_ids)):
            side: list[int] = []
            for i in range(max(len(p_ids), len(resp))):
                side += user_ids + head_tail(p_ids[i] if i < len(p_ids) else [], cfg.prompt_tokens,
                                             cfg.head_ratio, ell_ids) + nl_ids
                side += marker + head_tail(resp[i] if i < len(resp) else [], cfg.response_tokens,
                                           cfg.head_ratio, ell_ids) + nl_ids
            sides.append(side)
        budget_a, budget_b = _split_budget(len(sides[0]), len(sides[1]), total)
        side_a = head_tail(sides[0], budget_a, cfg.head_ratio, ell_ids)
        side_b = head_tail(sides[1], budget_b, cfg.head_ratio, ell_ids) + suffix_ids
        out.append(before + side_a + between + side_b + after)
    return out
