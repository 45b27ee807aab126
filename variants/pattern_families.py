"""The built-in attention pattern families, each defined once, each with its float64 reference.

Every family gives its definition in FlexAttention's signatures (``mask_mod(b, h, q_idx,
kv_idx) -> bool``, ``score_mod(score, b, h, q_idx, kv_idx) -> score``) and a reference written
another way (``torch.tril``, slicing loops, a different formula), so the two check each other.
Indices are top-left aligned: query i and key i are the same position. Sources:

    causal          Vaswani et al. 2017, "Attention Is All You Need", sec. 3.2.3
    sliding_window  Beltagy et al. 2020, "Longformer" (arXiv:2004.05150); causal form as in
                    Jiang et al. 2023, "Mistral 7B" (arXiv:2310.06825). Query i sees keys
                    i - window < j <= i: ``window`` keys including its own. attention-gym's
                    ``generate_sliding_window(w)`` (github.com/pytorch-labs/attention-gym,
                    attn_gym/masks/sliding_window.py) keeps q - kv <= w, i.e. w + 1 keys:
                    our window=w+1 is its window_size=w.
    prefix_lm       Raffel et al. 2020, "Exploring the Limits of Transfer Learning" (T5), sec.
                    3.2.1: keys j < prefix are visible to every query, causal after (as
                    attention-gym's ``generate_prefix_lm_mask``).
    document        packed sequences: a query sees only keys of its own document (Krell et al.
                    2021, "Efficient Sequence Packing without Cross-contamination",
                    arXiv:2107.02027). ``lengths`` are document lengths in tokens, repeated
                    cyclically until every position has a document; the same ids for every
                    batch element. Not causal by itself: ``causal+document:...`` for LMs.
    alibi           Press et al. 2022, "Train Short, Test Long" (ALiBi, arXiv:2108.12409):
                    score + m_h * (j - i) with m_h = 2^(-8 (h + 1) / H), the geometric slopes of
                    the paper for H a power of two, used for every H as attention-gym's
                    ``generate_alibi_bias`` does (the paper interpolates other H differently).
    softcap         Gemma Team 2024, "Gemma 2" (arXiv:2408.00118), logit soft-capping:
                    cap * tanh(score / cap), applied to the scores before masking (Grok-1
                    uses the same with cap 30).
"""

from __future__ import annotations

import torch
from attnbench.variants.patterns import PatternShape, register_pattern


def _positive(name: str):
    def check(**params) -> str | None:
        value = params[name]
        bad = [x for x in (value if isinstance(value, tuple) else (value,)) if not x > 0]
        return f"parameter {name}: expected > 0, got {value!r}" if bad else None
    return check


# --- causal ---------------------------------------------------------------------------------

def _causal_mod(shape: PatternShape):
    def causal(b, h, q_idx, kv_idx):
        return q_idx >= kv_idx
    return causal


def _causal_ref(B: int, H: int, N: int, S: int) -> torch.Tensor:
    return torch.ones(N, S, dtype=torch.bool).tril()  # (N, S)


register_pattern("causal", mask_mod=_causal_mod, reference_mask=_causal_ref,
                 source="Vaswani et al. 2017, sec. 3.2.3",
                 doc="query i sees keys j <= i")


# --- sliding_window --------------------------------------------------------------------------

def _window_mod(shape: PatternShape, window: int):
    def sliding_window(b, h, q_idx, kv_idx):
        return (kv_idx <= q_idx) & (q_idx - kv_idx < window)
    return sliding_window


def _window_ref(B: int, H: int, N: int, S: int, window: int) -> torch.Tensor:
    ones = torch.ones(N, S, dtype=torch.bool)
    return ones.tril() & ~ones.tril(-window)  # j <= i and not j <= i - window


register_pattern("sliding_window", params={"window": "int"}, mask_mod=_window_mod,
                 reference_mask=_window_ref, check=_positive("window"),
                 source="Beltagy et al. 2020 (Longformer); Jiang et al. 2023 (Mistral 7B)",
                 doc="query i sees keys i - window < j <= i (window keys, its own included)")


# --- prefix_lm -------------------------------------------------------------------------------

def _prefix_mod(shape: PatternShape, prefix: int):
    def prefix_lm(b, h, q_idx, kv_idx):
        return (kv_idx < prefix) | (kv_idx <= q_idx)
    return prefix_lm


def _prefix_ref(B: int, H: int, N: int, S: int, prefix: int) -> torch.Tensor:
    mask = torch.ones(N, S, dtype=torch.bool).tril()
    mask[:, :prefix] = True
    return mask


def _non_negative(**params) -> str | None:
    p = params["prefix"]
    return None if p >= 0 else f"parameter prefix: expected >= 0, got {p}"


register_pattern("prefix_lm", params={"prefix": "int"}, mask_mod=_prefix_mod,
                 reference_mask=_prefix_ref, check=_non_negative,
                 source="Raffel et al. 2020 (T5), sec. 3.2.1",
                 doc="keys j < prefix visible to all queries; causal after the prefix")


# --- document --------------------------------------------------------------------------------

def document_ids(lengths: tuple[int, ...], L: int, device: str | torch.device = "cpu"
                 ) -> torch.Tensor:
    """(L,) int64 document id of every position: ``lengths`` repeated until L is covered."""
    one_round = torch.repeat_interleave(torch.arange(len(lengths)), torch.tensor(lengths))
    rounds = -(-L // len(one_round))
    ids = one_round.repeat(rounds) + len(lengths) * torch.arange(rounds).repeat_interleave(
        len(one_round))
    return ids[:L].to(device)


def _document_mod(shape: PatternShape, lengths: tuple[int, ...]):
    ids = document_ids(lengths, max(shape.N, shape.S), shape.device)

    def document(b, h, q_idx, kv_idx):
        return ids[q_idx] == ids[kv_idx]
    return document


def _document_ref(B: int, H: int, N: int, S: int, lengths: tuple[int, ...]) -> torch.Tensor:
    mask = torch.zeros(N, S, dtype=torch.bool)
    start, i = 0, 0
    while start < max(N, S):  # one diagonal block per document
        stop = start + lengths[i % len(lengths)]
        mask[start:stop, start:stop] = True
        start, i = stop, i + 1
    return mask


register_pattern("document", params={"lengths": "ints"}, mask_mod=_document_mod,
                 reference_mask=_document_ref, check=_positive("lengths"),
                 source="Krell et al. 2021, arXiv:2107.02027",
                 doc="a query sees the keys of its own document (lengths repeat cyclically)")


# --- alibi -----------------------------------------------------------------------------------

def alibi_slopes(H: int, device: str | torch.device = "cpu") -> torch.Tensor:
    """(H,) float32 slopes m_h = 2^(-8 (h + 1) / H)."""
    return torch.exp2(-8.0 * torch.arange(1, H + 1, device=device, dtype=torch.float32) / H)


def _alibi_mod(shape: PatternShape):
    slopes = alibi_slopes(shape.H, shape.device)

    def alibi(score, b, h, q_idx, kv_idx):
        return score + slopes[h] * (kv_idx - q_idx)
    return alibi


def _alibi_ref(scores: torch.Tensor) -> torch.Tensor:
    _, H, N, S = scores.shape
    slopes = torch.tensor([0.5 ** (8 * (h + 1) / H) for h in range(H)], dtype=torch.float64)
    distance = torch.arange(S, dtype=torch.float64)[None, :] - torch.arange(
        N, dtype=torch.float64)[:, None]  # (N, S): j - i
    return scores + slopes.view(H, 1, 1).to(scores.device) * distance.to(scores.device)


register_pattern("alibi", score_mod=_alibi_mod, reference_score=_alibi_ref,
                 source="Press et al. 2022, arXiv:2108.12409",
                 doc="score + m_h * (j - i), m_h = 2^(-8 (h + 1) / H)")


# --- softcap ---------------------------------------------------------------------------------

def _softcap_mod(shape: PatternShape, cap: float):
    def softcap(score, b, h, q_idx, kv_idx):
        return cap * torch.tanh(score / cap)
    return softcap


def _softcap_ref(scores: torch.Tensor, cap: float) -> torch.Tensor:
    """tanh(|x|) = -expm1(-2|x|) / (2 + expm1(-2|x|)): no overflow, no cancellation at any x
    (the gradient at exactly x = 0 is 0 here, 1 in truth: irrelevant for random scores)."""
    e = torch.expm1(-2 * (scores / cap).abs())
    return cap * torch.where(scores >= 0, -e, e) / (2 + e)


register_pattern("softcap", params={"cap": "float"}, score_mod=_softcap_mod,
                 reference_score=_softcap_ref, check=_positive("cap"),
                 source="Gemma Team 2024, arXiv:2408.00118 (Gemma 2)",
                 doc="cap * tanh(score / cap), before the mask")
