"""The registry: names are unique, capabilities are data, refusals come in words."""

from __future__ import annotations

import attnbench.variants  # noqa: F401  (registers the built-ins)
import pytest
import torch
from attnbench.variants.registry import (
    Capabilities,
    Case,
    get,
    list_variants,
    not_supported_reasons,
    register_attention,
    register_block,
    unregister,
)

TEST_NAME = "test_registry_throwaway"


@pytest.fixture
def throwaway():
    """Register-and-clean-up helper: yields a function registering under TEST_NAME."""
    def register(**caps):
        def fn(q, k, v, *, causal=False, scale=None, attn_mask=None):
            """A throw-away attention for registry tests."""
            return torch.zeros(*q.shape[:3], v.shape[-1])
        register_attention(TEST_NAME, **caps)(fn)
        return get(TEST_NAME)

    yield register
    unregister(TEST_NAME)


def test_builtins_are_registered_with_their_kind():
    names = {v.name: v.kind for v in list_variants()}
    assert {"naive", "sdpa", "tiled"} <= {n for n, k in names.items() if k == "attention"}
    assert {"post_ln", "pre_ln"} <= {n for n, k in names.items() if k == "block"}


def test_list_variants_filters_by_kind():
    attention, blocks = list_variants("attention"), list_variants("block")
    assert attention and blocks
    assert all(v.kind == "attention" for v in attention)
    assert all(v.kind == "block" for v in blocks)
    assert len(attention) + len(blocks) == len(list_variants())
    assert [v.name for v in attention] == sorted(v.name for v in attention)


def test_list_variants_rejects_an_unknown_kind():
    with pytest.raises(ValueError, match="kind: expected 'attention', 'block' or None, got 'mlp'"):
        list_variants("mlp")


def test_duplicate_name_raises_naming_the_first_registrant(throwaway):
    throwaway()
    with pytest.raises(ValueError, match=f"{TEST_NAME!r} is already registered .*test_registry"):
        throwaway()


def test_duplicate_name_across_kinds_raises(throwaway):
    throwaway()
    with pytest.raises(ValueError, match="already registered"):
        register_block(TEST_NAME)(lambda d_model, n_heads, **kw: None)


def test_unknown_capability_key_raises_listing_known_keys():
    with pytest.raises(TypeError, match=r"unknown capabilities \['gpq'\]; known: .*'gqa'"):
        register_attention(TEST_NAME, gpq=False)
    with pytest.raises(KeyError):
        get(TEST_NAME)  # nothing half-registered


@pytest.mark.parametrize("name", ["", None, 3])
def test_bad_variant_name_raises(name):
    with pytest.raises(ValueError, match="variant name: expected a non-empty string"):
        register_attention(name)


def test_get_unknown_lists_the_registered_names():
    with pytest.raises(KeyError) as info:
        get("no_such_variant")
    message = info.value.args[0]
    assert "unknown variant 'no_such_variant'" in message
    for name in ("naive", "sdpa", "tiled", "post_ln"):
        assert name in message


def test_unregister_is_idempotent(throwaway):
    throwaway()
    unregister(TEST_NAME)
    unregister(TEST_NAME)
    assert TEST_NAME not in {v.name for v in list_variants()}


def test_a_plain_variant_supports_the_default_case(throwaway):
    assert not_supported_reasons(throwaway(), Case()) == []


@pytest.mark.parametrize("caps, case, words", [
    ({"devices": ("cuda",)}, Case(), "device cpu not supported (supports cuda)"),
    ({"dtypes": (torch.float32,)}, Case(dtype=torch.float16),
     "dtype float16 not supported on cpu (supports float32)"),
    ({"causal": False}, Case(causal=True), "causal masking not supported"),
    ({"attn_mask": False}, Case(mask=True), "explicit attn_mask not supported"),
    ({"gqa": False}, Case(Hq=4, Hkv=2), "grouped-query attention (Hq=4, Hkv=2) not supported"),
    ({"head_dim_min": 16, "head_dim_max": 128}, Case(D=8), "head dim D=8 outside [16, 128]"),
    ({"head_dim_max": 64}, Case(D=80), "head dim D=80 outside [1, 64]"),
    ({"distinct_value_dim": False}, Case(D=32, Dv=16), "value head dim Dv=16 != D=32"),
    ({"backward": False}, Case(backward=True), "backward not supported"),
    ({"requires": ("no_such_package_xyz",)}, Case(), "needs package(s) no_such_package_xyz"),
    ({"available": lambda: "driver too old"}, Case(), "driver too old"),
])
def test_not_supported_reasons_answers_in_words(throwaway, caps, case, words):
    reasons = not_supported_reasons(throwaway(**caps), case)
    assert any(words in r for r in reasons), reasons


def test_all_reasons_are_reported_together(throwaway):
    variant = throwaway(causal=False, attn_mask=False, gqa=False)
    reasons = not_supported_reasons(variant, Case(Hq=4, Hkv=1, causal=True, mask=True))
    assert len(reasons) == 3


def test_cuda_on_a_cpu_machine_says_so(throwaway):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert "no CUDA device on this machine" in not_supported_reasons(throwaway(),
                                                                     Case(device="cuda"))


def test_device_overrides_apply_per_device(throwaway):
    variant = throwaway(device_overrides={"cuda": {"attn_mask": False}})
    assert variant.caps.on("cpu").attn_mask is True
    assert variant.caps.on("cuda").attn_mask is False
    assert not_supported_reasons(variant, Case(mask=True)) == []


def test_capabilities_as_dict_is_json_friendly():
    import json

    caps = Capabilities(dtypes=(torch.float16,), available=lambda: None,
                        device_overrides={"cuda": {"dtypes": (torch.bfloat16,)}})
    data = caps.as_dict()
    assert data["dtypes"] == ["float16"]
    assert data["device_overrides"] == {"cuda": {"dtypes": ["bfloat16"]}}
    assert "available" not in data
    json.dumps(data)


def test_lse_of_a_variant_without_it_raises(throwaway):
    q = torch.randn(1, 1, 4, 8)
    with pytest.raises(NotImplementedError, match=f"{TEST_NAME!r} does not expose"):
        throwaway().lse(q, q, q)


def test_case_label_names_what_differs_from_the_defaults():
    assert Case(B=2, Hq=4, Hkv=2, N=64, S=128, D=32, Dv=16, causal=True, mask=True,
                backward=True).label() == "B2-H4/2-N64xS128-D32/16-float32-cpu-causal-mask-bwd"
    assert Case().label() == "B1-H2-N64-D32-float32-cpu"


# ---- what a registration declares and must provide ------------------------------------------

def _natural_lse(q, k, v, *, causal=False, scale=None, attn_mask=None):
    return torch.logsumexp(q @ k.transpose(-2, -1), dim=-1)  # (B, Hq, N)


def test_lse_is_provided_at_registration_and_used(throwaway):
    variant = throwaway(exposes_lse=True, lse=_natural_lse)
    q = torch.randn(1, 2, 4, 8)
    assert torch.equal(variant.lse(q, q, q), _natural_lse(q, q, q))


@pytest.mark.parametrize("caps, words", [
    ({"exposes_lse": True}, "declares exposes_lse=True but provides no lse= function"),
    ({"device_overrides": {"cuda": {"exposes_lse": True}}},
     "declares exposes_lse=True but provides no lse= function"),
    ({"lse": _natural_lse}, "provides lse= but does not declare exposes_lse=True"),
    ({"exposes_lse": True, "lse": "logsumexp"}, "lse: expected a function"),
    ({"memory": "quadratic"}, r"memory: expected one of \['fused', 'materialising'\]"),
    ({"timeable": "no"}, "timeable: expected a function"),
])
def test_inconsistent_declarations_raise_naming_the_variant(caps, words):
    with pytest.raises((ValueError, TypeError), match=rf"register_attention\({TEST_NAME!r}\): "
                                                      rf".*{words}"):
        register_attention(TEST_NAME, **caps)(lambda q, k, v, **kw: q)
    with pytest.raises(KeyError):
        get(TEST_NAME)  # nothing half-registered


def test_lse_declared_for_one_device_is_used_on_that_device_only(throwaway):
    variant = throwaway(lse=_natural_lse, device_overrides={"cpu": {"exposes_lse": True}},
                        devices=("cpu", "meta"))
    q = torch.randn(1, 2, 4, 8)
    assert torch.equal(variant.lse(q, q, q), _natural_lse(q, q, q))
    m = q.to("meta")
    with pytest.raises(NotImplementedError, match="does not expose its log-sum-exp"):
        variant.lse(m, m, m)


def test_every_builtin_attention_declares_its_memory_behaviour():
    undeclared = [v.name for v in list_variants("attention") if v.caps.memory is None]
    assert undeclared == []
    assert get("naive").caps.memory == get("sdpa_math").caps.memory == "materialising"
    assert {get(n).caps.memory for n in ("tiled", "sdpa_flash", "triton_flash")} == {"fused"}


def test_every_builtin_lse_matches_its_declaration():
    """An lse function exactly where some device declares exposes_lse (flex: CUDA only)."""
    for v in list_variants("attention"):
        declared = any(v.caps.on(device).exposes_lse for device in ("cpu", "cuda"))
        assert (v.lse_fn is not None) == declared, v.name


def test_memory_model_is_a_name_or_a_function(throwaway):
    def model(case, mode):
        return 7.0

    assert throwaway().memory_model() is None  # undeclared: no model, never a guess
    unregister(TEST_NAME)
    assert throwaway(memory=model).memory_model() is model
    unregister(TEST_NAME)
    assert throwaway(memory="fused").memory_model().__name__ == "fused"


def test_timeable_is_declared_not_inferred(throwaway, monkeypatch):
    assert throwaway().untimeable_reason() is None
    unregister(TEST_NAME)
    assert throwaway(timeable=lambda: "in an emulator").untimeable_reason() == "in an emulator"
    # The Triton kernel says so itself, only when the interpreter runs it.
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert "Triton interpreter" in get("triton_flash").untimeable_reason()
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    assert get("triton_flash").untimeable_reason() is None
    assert get("naive").untimeable_reason() is None


def test_as_dict_names_a_model_function_and_drops_run_time_checks():
    import json

    def my_model(case, mode):
        return 0.0

    data = Capabilities(memory=my_model, timeable=lambda: None).as_dict()
    assert data["memory"].endswith("my_model") and data["memory"].startswith("model ")
    assert "timeable" not in data
    json.dumps(data)
