"""Packaging: one installed namespace, a checkout that runs without installing, and a package
that cites only what is in the repository.

- The wheel adds only ``attnbench`` and its dist-info to site-packages, ships the preset TOML
  files, and works from a directory that has its own ``kernels/`` and ``reports/`` packages:
  ``attnbench list``, ``attnbench verify``, a ``--plugin`` variant and an entry-point plugin.
- A plain checkout runs ``python -m attnbench`` from its root with nothing installed (the GPU
  machine: no pip, no nox, no network), and the GPU check's code path needs neither tqdm nor
  memray.
- pyproject's explicit ``packages`` list names every package folder.
- No file of the package cites a file outside the repository; every citation of
  docs/methods.md names a heading that exists.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import site
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE_FOLDERS = ("bench", "variants", "kernels", "reports")
PY = sys.executable


def run(args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: int = 600
        ) -> subprocess.CompletedProcess:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, f"{args}\n{done.stdout}\n{done.stderr}"
    return done


def clean_env(**extra: str) -> dict[str, str]:
    """This interpreter's environment without anything that would put the checkout on
    sys.path (pytest's PYTHONPATH), plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return {**env, **extra}


def copy_sources(dest: Path) -> Path:
    """The files a checkout consists of, minus caches and the committed example reports."""
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", "example", "stability-standard")
    for name in PACKAGE_FOLDERS:
        shutil.copytree(REPO / name, dest / name, ignore=skip)
    for name in ("pyproject.toml", "README.md", "attnbench.py"):
        shutil.copy(REPO / name, dest / name)
    return dest


# ---- the package's own declarations ------------------------------------------------------------

def test_packages_list_names_every_package_folder():
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    package_of = {folder: package for package, folder in setuptools["package-dir"].items()}
    assert set(package_of) == set(PACKAGE_FOLDERS)
    on_disk = set()
    for top in PACKAGE_FOLDERS:
        for init in (REPO / top).rglob("__init__.py"):
            inner = init.parent.relative_to(REPO / top).parts  # e.g. ("sections",)
            on_disk.add(".".join([package_of[top], *inner]))
    assert sorted(setuptools["packages"]) == sorted(on_disk)


OUTSIDE = re.compile(r"reference\.md|\.\./shared|/work/shared|shared/reference")
CITATION = re.compile(r'docs/methods\.md, "([^"]+)"')


def package_texts() -> dict[Path, str]:
    texts = {}
    for top in PACKAGE_FOLDERS:
        for path in (REPO / top).rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts:
                try:
                    texts[path] = path.read_text()
                except UnicodeDecodeError:  # figures
                    continue
    assert len(texts) > 60
    return texts


def test_no_citation_of_a_file_outside_the_repository():
    hits = [f"{path.relative_to(REPO)}:{text[:m.start()].count(chr(10)) + 1}: {m.group()}"
            for path, text in package_texts().items() for m in OUTSIDE.finditer(text)]
    assert hits == [], "\n".join(hits)


def test_citations_of_the_methods_document_name_its_headings():
    methods = (REPO / "docs" / "methods.md").read_text()
    headings = {line.lstrip("#").strip() for line in methods.splitlines()
                if line.startswith("## ") or line.startswith("### ")}
    assert {"Tolerance rule", "FLOP and byte conventions", "Timing", "Memory",
            "Stability criteria"} <= headings
    cited = {" ".join(m.group(1).split()) for text in package_texts().values()
             for m in CITATION.finditer(text)}
    assert cited, "no code cites docs/methods.md"
    assert cited <= headings, f"cited but not a heading: {sorted(cited - headings)}"


# ---- a checkout, nothing installed ----------------------------------------------------------

BLOCKER = """\
import sys

# The GPU machine may lack these: behave as if they were not installed (import raises
# ModuleNotFoundError, importlib.util.find_spec returns None).
sys.modules["tqdm"] = sys.modules["memray"] = None
"""

CHECKOUT_PROBE = """\
import json, importlib.util, torch
import attnbench, attnbench.variants, attnbench.kernels, attnbench.gpu_check
from attnbench.throughput.memory import memory_unavailable_reason
from attnbench.throughput.runner import _progress_bar
from attnbench.gpu_check import correctness
_progress_bar(1, False).update(1)
results = correctness(__import__("pathlib").Path("out"), 0, device="cpu",
                      variants=("naive",), dtypes=(torch.float32,), shapes=[(2, 1, 9, 13, 8)])
print(json.dumps({"files": [attnbench.__file__, attnbench.variants.__file__,
                            attnbench.kernels.__file__],
                  "tqdm": importlib.util.find_spec("tqdm") is not None,
                  "memory": memory_unavailable_reason("cpu"),
                  "failed": [r.check for r in results if r.failed], "ran": len(results)}))
"""


def checkout_env(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A copy of the checkout, and an environment in which tqdm and memray are missing."""
    checkout = copy_sources(tmp_path / "checkout")
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(BLOCKER)
    return checkout, clean_env(PYTHONPATH=str(blocker))


def test_a_checkout_runs_from_its_root_without_installing(tmp_path):
    """``python -m attnbench`` from a copy of the checkout imports the copy (not the project
    installed in this environment)."""
    checkout, env = checkout_env(tmp_path)
    listed = run([PY, "-m", "attnbench", "list", "--kind", "attention"], checkout, env)
    assert "naive" in listed.stdout and "triton_flash" in listed.stdout
    files = json.loads(run([PY, "-c", "import json, attnbench.variants, attnbench.kernels; "
                            "print(json.dumps([attnbench.__file__, attnbench.variants.__file__, "
                            "attnbench.kernels.__file__]))"], checkout, env).stdout)
    for file in files:
        assert Path(file).resolve().is_relative_to(checkout.resolve()), files


@pytest.mark.slow
def test_the_gpu_check_runs_from_a_checkout_without_tqdm_or_memray(tmp_path):
    """``python -m attnbench.gpu_check`` starts from a copy of the checkout, and its
    correctness step (on CPU, tiny shapes) runs with tqdm and memray missing."""
    checkout, env = checkout_env(tmp_path)
    assert "attnbench.gpu_check" in run([PY, "-m", "attnbench.gpu_check", "--help"], checkout,
                                        env).stdout
    probe = json.loads(run([PY, "-c", CHECKOUT_PROBE], checkout, env).stdout.splitlines()[-1])
    for file in probe["files"]:
        assert Path(file).resolve().is_relative_to(checkout.resolve()), probe["files"]
    assert probe["tqdm"] is False and "memray" in probe["memory"]  # the blocker worked
    assert probe["ran"] > 20 and probe["failed"] == []


# ---- the wheel ---------------------------------------------------------------------------------

USER_PLUGIN = """\
import torch
from attnbench import register_attention
from attnbench.variants.common import default_scale, expand_kv, visible_mask


@register_attention({name!r}, memory="materialising", notes="a user's plugin")
def attention(q, k, v, *, causal=False, scale=None, attn_mask=None):
    \"\"\"Textbook attention, as a user would write it.\"\"\"
    k, v = expand_kv(k, v, q.shape[1])  # (B, Hq, S, D)
    scores = (q @ k.transpose(-2, -1)) * default_scale(q.shape[-1], scale)  # (B, Hq, N, S)
    mask = visible_mask(q.shape[2], k.shape[2], causal=causal, attn_mask=attn_mask,
                        device=q.device)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return torch.softmax(scores, dim=-1) @ v  # (B, Hq, N, Dv)
"""

ENTRY_POINT_PROJECT = """\
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "userplugin"
version = "0.0.1"

[project.entry-points."attnbench.variants"]
user = "userplugin_attention"

[tool.setuptools]
py-modules = ["userplugin_attention"]
"""


def build_wheel(source: Path, dist: Path, name: str) -> Path:
    """``pip wheel`` offline, with this environment's setuptools (no build isolation)."""
    run([PY, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
         "-w", str(dist), str(source)], source)
    (wheel,) = dist.glob(f"{name}-*.whl")
    return wheel


def fresh_venv(root: Path) -> tuple[Path, Path]:
    """A new venv that sees this environment's packages (torch, triton, pandas, ...) through
    a plain path entry: this environment's own .pth files, the editable install of the
    project among them, are not executed there, so the project can only come from the wheel.
    Returns (python, site-packages)."""
    run([PY, "-m", "venv", "--without-pip", str(root)], root.parent)
    python = root / "bin" / "python"
    (purelib,) = [Path(p) for p in json.loads(run(
        [str(python), "-c", "import json, site; print(json.dumps(site.getsitepackages()))"],
        root.parent).stdout)]
    (purelib / "_shared_environment.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    return python, purelib


def pip_install(python: Path, wheel: Path) -> None:
    run([PY, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "-q",
         str(wheel)], wheel.parent)


def listing(directory: Path) -> set[str]:
    return {p.name for p in directory.iterdir() if p.name != "__pycache__"}


@pytest.mark.slow
def test_the_wheel_installs_one_namespace_and_runs_beside_users_own_packages(tmp_path):
    source = copy_sources(tmp_path / "src")
    wheel = build_wheel(source, tmp_path / "dist", "attnbench")
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {"attnbench", "attnbench-0.1.0.dist-info"}
    presets = sorted(p.name for p in (REPO / "bench" / "throughput" / "presets").glob("*.toml"))
    assert presets and sorted(Path(n).name for n in names
                              if n.startswith("attnbench/throughput/presets/")) == presets
    assert "attnbench/testing/gate_probe.py" in names  # the self-check's plugins are packaged

    python, purelib = fresh_venv(tmp_path / "venv")
    before = listing(purelib)
    pip_install(python, wheel)
    assert listing(purelib) - before == {"attnbench", "attnbench-0.1.0.dist-info"}

    # A user's directory with its own kernels/ and reports/ packages and a plugin module.
    user = tmp_path / "user"
    for name in ("kernels", "reports"):
        (user / name).mkdir(parents=True)
        (user / name / "__init__.py").write_text(f"OWNER = 'user {name}'\n")
    (user / "myplugin.py").write_text(USER_PLUGIN.format(name="user_plugin_attention"))
    env = clean_env(PYTHONPATH=str(user))
    where = json.loads(run([str(python), "-c", (
        "import json, attnbench, attnbench.kernels, attnbench.reports, kernels, reports; "
        "print(json.dumps([attnbench.__file__, attnbench.kernels.__file__, "
        "attnbench.reports.__file__, kernels.OWNER, reports.OWNER]))")], user, env).stdout)
    for file in where[:3]:
        assert Path(file).is_relative_to(purelib), where  # the wheel's, not the checkout's
    assert where[3:] == ["user kernels", "user reports"]  # the user's packages are theirs

    attnbench = str(tmp_path / "venv" / "bin" / "attnbench")
    assert "naive" in run([attnbench, "list"], user, env).stdout
    verified = run([attnbench, "verify", "--variant", "naive", "--dtype", "fp32", "--check",
                    "contract", "out", "grad"], user, env).stdout
    assert "0 failed" in verified, verified
    plugin = run([attnbench, "verify", "--plugin", "myplugin", "--variant",
                  "user_plugin_attention", "--dtype", "fp32", "--check", "out"], user, env)
    assert "0 failed" in plugin.stdout, plugin.stdout
    assert "user_plugin_attention" in run([str(python), "-m", "attnbench", "list", "--plugin",
                                           "myplugin"], user, env).stdout

    # An installed package that registers through the entry-point group.
    project = tmp_path / "userplugin"
    project.mkdir()
    (project / "pyproject.toml").write_text(ENTRY_POINT_PROJECT)
    (project / "userplugin_attention.py").write_text(USER_PLUGIN.format(name="user_entry_point"))
    pip_install(python, build_wheel(project, tmp_path / "dist", "userplugin"))
    listed = run([attnbench, "list", "--kind", "attention"], tmp_path, clean_env()).stdout
    assert "user_entry_point" in listed, listed
