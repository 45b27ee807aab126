"""Blocks equal torch.nn.TransformerEncoderLayer on every attention variant they run on.

Every registered block whose class declares ``encoder_layer_config`` is checked (post_ln and
pre_ln today); blocks that declare none skip with that reason and are covered by their own
tests. A block that declares a configuration it does not implement must fail.
"""

from __future__ import annotations

import attnbench.variants  # noqa: F401
import pytest
import torch
from attnbench.cli import main
from attnbench.variants.blocks import PostLN, PreLN
from attnbench.variants.registry import dtype_name, get, list_variants, register_block, unregister
from attnbench.verify.blocks import check_block, encoder_layer_config

BLOCKS = [v.name for v in list_variants("block") if encoder_layer_config(v) is not None]
UNDECLARED = [v.name for v in list_variants("block") if encoder_layer_config(v) is None]
ATTENTION = [v.name for v in list_variants("attention")]
DTYPES = [torch.float32, torch.float16, torch.bfloat16]


def test_post_ln_and_pre_ln_declare_their_pytorch_equivalent():
    assert encoder_layer_config(get("post_ln")) == {"norm_first": False}
    assert encoder_layer_config(get("pre_ln")) == {"norm_first": True}


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_name)
@pytest.mark.parametrize("attention", ATTENTION)
@pytest.mark.parametrize("block", BLOCKS)
def test_block_matches_transformer_encoder_layer(block, attention, dtype):
    result = check_block(get(block), get(attention), dtype)
    if result.status == "skipped":
        pytest.skip(result.message)
    assert not result.failed, result.message
    assert {a.quantity for a in result.agreements} == {
        "structure", "out", "dx", "dqkv_weight", "dlinear1_weight"}


class _TanhGELU(PostLN):
    """Post-LN whose FFN uses the tanh approximation of GELU: declares the exact-GELU layer."""

    encoder_layer_config = {"norm_first": False}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.ffn.act = torch.nn.GELU(approximate="tanh")


class _SwappedNorms(PreLN):
    """Pre-LN that applies norm2 before attention and norm1 before the FFN. (Norms start as
    identity, where swapping them changes nothing, so this one starts with trained-looking
    norm weights.)"""

    encoder_layer_config = {"norm_first": True}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        with torch.no_grad():
            self.norm1.weight.uniform_(0.5, 1.5)

    def forward(self, x):
        x = x + self.attn(self.norm2(x))
        return x + self.ffn(self.norm1(x))


class _Undeclared(PreLN):
    """Inherits pre_ln's declaration without declaring its own."""


@pytest.fixture
def registered_blocks():
    names = {"test_tanh_gelu": _TanhGELU, "test_swapped_norms": _SwappedNorms,
             "test_undeclared": _Undeclared}
    for name, cls in names.items():
        register_block(name)(cls)
    yield
    for name in names:
        unregister(name)


@pytest.mark.parametrize("block", ["test_tanh_gelu", "test_swapped_norms"])
def test_a_block_that_breaks_its_declaration_fails(registered_blocks, block):
    """The structure guard catches what the block-on-naive textbook shares with the block."""
    result = check_block(get(block), get("naive"), torch.float32)
    structure = next(a for a in result.agreements if a.quantity == "structure")
    assert result.passed is False and not structure.passed, result.message


@pytest.mark.parametrize("block", UNDECLARED)
@pytest.mark.parametrize("attention", ["tiled", "sdpa"])
def test_undeclared_blocks_match_their_float64_self(block, attention):
    result = check_block(get(block), get(attention), torch.bfloat16)
    assert result.check == "float64_block" and result.passed, result.message


def test_declaration_is_not_inherited(registered_blocks):
    result = check_block(get("test_undeclared"), get("naive"), torch.float32)
    assert result.check == "float64_block"
    assert "structure" not in {a.quantity for a in result.agreements}


def test_float64_block_check_catches_a_broken_attention():
    """A wrong attention inside a block shows against the block's own float64 computation."""
    from tests.mutants import registered

    with registered():
        result = check_block(get("sandwich"), get("mut_scale_dmodel"), torch.float32)
    assert result.check == "float64_block" and result.passed is False, result.message


def test_cli_runs_blocks_on_the_chosen_attention_only(capsys):
    rc = main(["verify", "--variant", "pre_ln", "tiled", "--dtype", "fp32", "--check", "out"])
    printed = capsys.readouterr().out
    assert rc == 0
    assert "blocks vs TransformerEncoderLayer, float32" in printed
    table = printed.split("blocks vs TransformerEncoderLayer, float32")[1]
    assert "tiled" in table and "naive" not in table.split("not applicable")[0]
