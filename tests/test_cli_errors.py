"""The command line turns only the project's own errors into a one-line exit 2; any other
exception (a plain KeyError or ValueError included) is a bug and keeps its traceback."""

from __future__ import annotations

import attnbench.cli_list
import pytest
from attnbench.cli import main
from attnbench.errors import AttnbenchError, UnknownVariantError, UsageError
from attnbench.results import ResultsError
from attnbench.variants.plugins import PluginError
from attnbench.variants.registry import get, parse_dtype


@pytest.mark.parametrize("error", [KeyError("internal key"), ValueError("internal value")])
def test_a_genuine_internal_error_is_not_exit_2(monkeypatch, capsys, error):
    def buggy(args):
        raise error

    monkeypatch.setattr(attnbench.cli_list, "run", buggy)
    with pytest.raises(type(error), match="internal"):
        main(["list"])
    assert "error:" not in capsys.readouterr().err


@pytest.mark.parametrize("argv, words", [
    (["verify", "--variant", "no_such_variant"], "unknown variant(s) no_such_variant"),
    (["verify", "--variant", "naive", "--dtype", "fp8"], "dtype: expected one of fp32"),
    (["bench", "--preset", "no_such_preset", "--list"], "--preset: unknown preset"),
    (["bench", "-k", "naive and", "--list"], "-k 'naive and': expected a word"),
])
def test_usage_errors_are_one_line_exit_2(capsys, argv, words):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"attnbench {argv[0]}: error: ") and words in err, err
    assert "Traceback" not in err


def test_project_errors_share_one_base_and_keep_their_builtin_kinds():
    for cls in (UsageError, UnknownVariantError, PluginError, ResultsError):
        assert issubclass(cls, AttnbenchError)
    with pytest.raises(UnknownVariantError) as info:
        get("no_such_variant")
    assert isinstance(info.value, KeyError) and isinstance(info.value, ValueError)
    assert str(info.value).startswith("unknown variant 'no_such_variant'")  # not re-quoted
    with pytest.raises(UsageError, match="dtype: expected one of"):
        parse_dtype("fp8")
