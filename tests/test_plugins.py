"""Plugins: --plugin, ATTNBENCH_PLUGINS, entry points; plugin variants get the same checks."""

from __future__ import annotations

import json
import sys
from types import SimpleNamespace

import attnbench.variants  # noqa: F401
import pytest
from attnbench.cli import main
from attnbench.variants import plugins
from attnbench.variants.registry import get, list_variants, unregister

TOY, BROKEN, RAISES = "plugin_toy", "plugin_broken", "plugin_raises"
MODULE = "plugin_examples.toy_attention"


@pytest.fixture(autouse=True)
def clean_plugins(monkeypatch):
    """Every test starts and ends with no plugin variant registered and no plugin module
    imported, so loading is really exercised each time."""
    monkeypatch.delenv(plugins.ENV_VAR, raising=False)

    def clean():
        for name in (TOY, BROKEN, RAISES):
            unregister(name)
        for module in [m for m in sys.modules if m.startswith("plugin_examples.")]:
            del sys.modules[module]
        plugins._loaded.difference_update({m for m in plugins._loaded
                                           if m.startswith("plugin_examples.")})

    clean()
    yield
    clean()


def names() -> set[str]:
    return {v.name for v in list_variants()}


def test_plugin_flag_registers_the_variant_for_the_command(capsys):
    assert main(["list", "--plugin", MODULE, "--kind", "attention"]) == 0
    assert TOY in capsys.readouterr().out
    assert get(TOY).module == MODULE


def test_environment_variable_loads_plugins(monkeypatch):
    monkeypatch.setenv(plugins.ENV_VAR, f" {MODULE} , ")
    assert plugins.load_plugins() == [MODULE]
    assert TOY in names()


def test_loading_twice_registers_once(monkeypatch):
    monkeypatch.setenv(plugins.ENV_VAR, MODULE)
    plugins.load_plugins([MODULE])  # flag and environment name the same module
    assert TOY in names()


def test_entry_points_are_loaded(monkeypatch):
    def fake_entry_points(group):
        assert group == plugins.ENTRY_POINT_GROUP
        return [SimpleNamespace(name="toy", value=f"{MODULE}:toy")]

    monkeypatch.setattr(plugins, "entry_points", fake_entry_points)
    assert plugins.load_plugins() == [MODULE]
    assert TOY in names()


def test_broken_plugin_raises_plugin_error_naming_it():
    with pytest.raises(plugins.PluginError,
                       match="plugin 'plugin_examples.crashing_plugin' failed to load: "
                             "ImportError: needs the 'fancy_kernels' package"):
        plugins.load_plugins(["plugin_examples.crashing_plugin"])


def test_missing_plugin_module_raises_plugin_error():
    with pytest.raises(plugins.PluginError, match="'plugin_examples.nope' failed to load: "
                                                  "ModuleNotFoundError"):
        plugins.load_plugin("plugin_examples.nope")


def test_broken_plugin_on_the_command_line_is_one_line_and_exit_2(capsys):
    assert main(["verify", "--plugin", "plugin_examples.crashing_plugin"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "plugin 'plugin_examples.crashing_plugin' failed to load" in err


def test_plugin_variant_gets_exactly_the_same_checks(tmp_path, capsys):
    """A correct plugin passes every check a built-in gets, with the same check names."""
    report = tmp_path / "verify.json"
    rc = main(["verify", "--plugin", MODULE, "--variant", TOY, "--dtype", "fp32",
               "--json", str(report)])
    data = json.loads(report.read_text())
    assert rc == 0, capsys.readouterr().out
    from attnbench.verify import CHECK_NAMES

    ran = {r["check"] for r in data["results"] if r["variant"] == TOY}
    assert ran == set(CHECK_NAMES)
    assert data["failed"] == 0


def test_broken_plugin_variant_fails_verification(capsys):
    rc = main(["verify", "--plugin", "plugin_examples.broken_attention", "--variant", BROKEN,
               "--dtype", "fp32", "--check", "out", "causal"])
    out = capsys.readouterr().out
    assert rc == 1
    assert "FAIL" in out and BROKEN in out
