"""A plugin that registers an attention pattern family with its reference (tests/test_patterns).

``dilated:every=k``: causal attention to every k-th key back from the query (query i sees
keys j <= i with (i - j) divisible by k), the dilated pattern of Child et al. 2019 ("Generating
Long Sequences with Sparse Transformers", arXiv:1904.10509) in its simplest form.
"""

from __future__ import annotations

import torch
from attnbench.variants.patterns import register_pattern


def _dilated_mod(shape, every: int):
    def dilated(b, h, q_idx, kv_idx):
        return (kv_idx <= q_idx) & ((q_idx - kv_idx) % every == 0)
    return dilated


def _dilated_ref(B: int, H: int, N: int, S: int, every: int) -> torch.Tensor:
    mask = torch.zeros(N, S, dtype=torch.bool)
    for i in range(N):
        mask[i, i % every:min(i, S - 1) + 1:every] = True  # i, i - k, i - 2k, ... >= 0
    return mask


register_pattern("dilated", params={"every": "int"}, mask_mod=_dilated_mod,
                 reference_mask=_dilated_ref, source="Child et al. 2019, arXiv:1904.10509",
                 doc="query i sees keys j <= i with (i - j) % every == 0")
