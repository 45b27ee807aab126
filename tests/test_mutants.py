"""Mutation check: the verification must flag every deliberately broken variant.

Mutation score = mutants flagged / mutants; it must be 100 %. The test prints which checks
caught each mutant (run with -s to see it), which doubles as a map of what each check is for.
"""

from __future__ import annotations

import attnbench.variants  # noqa: F401
import mutants
import pytest
from attnbench.variants.registry import dtype_name, get, list_variants
from attnbench.verify import verify_attention


@pytest.fixture(scope="module")
def caught() -> dict[str, set[str]]:
    """Run the whole verification plan on every mutant: mutant name -> checks that failed."""
    found = {}
    with mutants.registered() as broken:
        for mutant in broken:
            results = [r for dtype in mutant.dtypes
                       for r in verify_attention(get(mutant.name), dtype)]
            errors = [f"{r.check}: {r.message}" for r in results if r.status == "error"]
            assert not errors, f"{mutant.name}: a check crashed instead of judging: {errors}"
            found[mutant.name] = {r.check for r in results if r.passed is False}
    return found


def test_mutants_are_registered_only_inside_the_context():
    names = {m.name for m in mutants.MUTANTS}
    assert not names & {v.name for v in list_variants()}
    with mutants.registered():
        assert names <= {v.name for v in list_variants("attention")}
    assert not names & {v.name for v in list_variants()}


def test_there_are_enough_mutants():
    assert len(mutants.MUTANTS) >= 10


def test_mutation_score_is_100_percent(caught, capsys):
    lines = [f"{m.name:26s} [{','.join(dtype_name(d) for d in m.dtypes)}] {m.bug}\n"
             f"{'':28s}caught by: {', '.join(sorted(caught[m.name])) or 'NOTHING'}"
             for m in mutants.MUTANTS]
    score = sum(bool(caught[m.name]) for m in mutants.MUTANTS)
    with capsys.disabled():
        print(f"\nmutation score: {score}/{len(mutants.MUTANTS)} "
              f"({100 * score / len(mutants.MUTANTS):.0f} %)\n" + "\n".join(lines))
    missed = [m.name for m in mutants.MUTANTS if not caught[m.name]]
    assert not missed, f"verification missed {missed}"


DESIGNED = [
    ("mut_scale_dmodel", "out"), ("mut_causal_off_by_one", "causal_prefix"),
    ("mut_no_max_subtraction", "large_logits"), ("mut_fp16_mask_fill", "mask"),
    ("mut_finite_sentinel", "masked_rows"), ("mut_head_mixing", "permutation"),
    ("mut_drop_last_block", "odd_shapes"), ("mut_stale_rescale", "out"),
    ("mut_gqa_modulo", "gqa_repeat"), ("mut_detached_v", "grad"),
    ("mut_alignment_lie", "causal"), ("mut_ignores_mask", "mask"), ("mut_lse_log2", "lse"),
    ("mut_masked_rows_lie", "masked_rows"), ("mut_assumes_contiguous", "non_contiguous"),
    ("mut_truncated_head_dim", "odd_shapes"), ("mut_fp32_output", "contract"),
    ("mut_heads_last", "contract"),
    *((name, "pattern") for name in mutants.PATTERN_MUTANTS),
]


@pytest.mark.parametrize("mutant, check", DESIGNED)
def test_the_check_designed_for_each_bug_catches_it(caught, mutant, check):
    assert check in caught[mutant]


def test_pattern_mutants_are_caught_only_by_the_pattern_check(caught):
    """Each pattern bug shows only when its pattern runs: the plain checks all pass, so the
    pattern check is what catches it (5 of 5)."""
    assert {name: caught[name] for name in mutants.PATTERN_MUTANTS} == {
        name: {"pattern"} for name in mutants.PATTERN_MUTANTS}


def test_each_mutant_has_the_check_designed_for_it():
    designed = {m for m, _ in DESIGNED}
    assert designed == {m.name for m in mutants.MUTANTS}
