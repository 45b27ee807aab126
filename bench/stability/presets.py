"""Sweep presets as data, and their expansion into jobs.

A preset is a plain dict (the built-ins below, or a JSON file passed as ``--preset PATH``):
    model      d_model, n_heads, block_size (N), batch_size (B) of every model
    attention  the attention variant inside every block
    train      steps, eval_every, eval_batches and a list of grids; each grid is a product
               blocks x depths x lrs x warmups x seeds
    init       blocks x depths x seeds for the initialisation diagnostics, with the noise
               scale (perturbation), noise draws and the one-step learning rate (step_lr)

``quick`` is the pilot's model (d=64, 6 layers, 300 steps; docs/methods.md, "Stability
criteria") on a half-decade learning-rate grid; ``full`` is Wortsman et al.'s grid over depths
2 to 12, every block variant and 3 seeds. Both are fixed in advance and are not tuned to agree
with the papers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from itertools import product
from pathlib import Path
from typing import Any

from attnbench.stability.common import ModelSpec
from attnbench.stability.data import CorpusRef
from attnbench.stability.diagnostics import InitJob
from attnbench.stability.train import TrainJob

ALL_BLOCKS = ["post_ln", "pre_ln", "pre_rmsnorm", "deepnorm", "sandwich", "qk_norm"]
WORTSMAN_LRS = [3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1]
PILOT_MODEL = {"d_model": 64, "n_heads": 4, "block_size": 64, "batch_size": 16}
INIT_MEASURES = {"perturbation": 0.01, "draws": 4, "step_lr": 1e-3}

PRESETS: dict[str, dict[str, Any]] = {
    "quick": {
        "description": "Post-LN vs Pre-LN (with and without warm-up) and QK-norm at depth 6, "
                       "lr 1e-3..1e-1, 1 seed; init diagnostics at depths 2-12",
        "model": PILOT_MODEL,
        "attention": "sdpa",
        "train": {"steps": 300, "eval_every": 50, "eval_batches": 4, "grids": [
            {"blocks": ["post_ln", "pre_ln"], "depths": [6], "lrs": WORTSMAN_LRS[1:6],
             "warmups": [0, 100], "seeds": [0]},
            {"blocks": ["qk_norm"], "depths": [6], "lrs": WORTSMAN_LRS[1:6],
             "warmups": [0], "seeds": [0]},
        ]},
        "init": {"blocks": ALL_BLOCKS, "depths": [2, 4, 6, 8, 12], "seeds": [0],
                 **INIT_MEASURES},
    },
    "full": {
        "description": "every block variant x Wortsman's lr grid x depths 2-12 x warm-up "
                       "{0, 100} x 3 seeds; init diagnostics at depths 2-12, 3 seeds",
        "model": PILOT_MODEL,
        "attention": "sdpa",
        "train": {"steps": 300, "eval_every": 50, "eval_batches": 4, "grids": [
            {"blocks": ALL_BLOCKS, "depths": [2, 4, 6, 8, 10, 12], "lrs": WORTSMAN_LRS,
             "warmups": [0, 100], "seeds": [0, 1, 2]},
        ]},
        "init": {"blocks": ALL_BLOCKS, "depths": [2, 3, 4, 6, 8, 10, 12], "seeds": [0, 1, 2],
                 **INIT_MEASURES},
    },
}

GRID_KEYS = {"blocks", "depths", "lrs", "warmups", "seeds"}


class PresetError(ValueError):
    """A preset (built-in name or JSON file) is unknown or malformed."""


def _keys(where: str, data: Any, required: set[str], optional: set[str] = frozenset()) -> None:
    if not isinstance(data, dict):
        raise PresetError(f"{where}: expected an object, got {type(data).__name__}")
    missing, unknown = required - data.keys(), data.keys() - required - optional
    if missing or unknown:
        raise PresetError(f"{where}: missing keys {sorted(missing)}, unknown keys "
                          f"{sorted(unknown)}; expected {sorted(required | optional)}")


def _numbers(where: str, values: Any, kind: type, minimum: float) -> list:
    """A non-empty list of numbers of ``kind`` (int, or float which also takes ints), each at
    least ``minimum`` (for floats: above it)."""
    def ok(v: Any) -> bool:
        if isinstance(v, bool) or not isinstance(v, int | float if kind is float else int):
            return False
        return v > minimum if kind is float else v >= minimum

    if not isinstance(values, list) or not values or not all(ok(v) for v in values):
        bound = f"> {minimum}" if kind is float else f">= {minimum}"
        raise PresetError(f"{where}: expected a non-empty list of {kind.__name__} {bound}, "
                          f"got {values!r}")
    return values


def _names(where: str, values: Any) -> list:
    if not isinstance(values, list) or not values or not all(
            isinstance(v, str) and v for v in values):
        raise PresetError(f"{where}: expected a non-empty list of variant names, got {values!r}")
    return values


@dataclass(frozen=True)
class Preset:
    name: str
    data: dict[str, Any]

    @classmethod
    def load(cls, name_or_path: str) -> Preset:
        """A built-in preset by name, or a JSON file with the same structure."""
        if name_or_path in PRESETS:
            return cls(name_or_path, PRESETS[name_or_path]).validated()
        path = Path(name_or_path)
        if not path.is_file():
            raise PresetError(f"--preset {name_or_path}: expected one of {sorted(PRESETS)} or "
                              "a JSON file, found neither")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, OSError) as exc:
            raise PresetError(f"--preset {name_or_path}: not a readable JSON file "
                              f"({exc})") from None
        return cls(path.stem, data).validated()

    def validated(self) -> Preset:
        d = self.data
        _keys(f"preset {self.name}", d, {"model", "attention", "train", "init"}, {"description"})
        _keys(f"preset {self.name}: model", d["model"], {"d_model", "n_heads", "block_size",
                                                         "batch_size"})
        _numbers(f"preset {self.name}: model", list(d["model"].values()), int, 1)
        train = d["train"]
        _keys(f"preset {self.name}: train", train, {"steps", "eval_every", "eval_batches",
                                                    "grids"})
        steps, every = train["steps"], train["eval_every"]
        _numbers(f"preset {self.name}: train steps/eval_every/eval_batches",
                 [steps, every, train["eval_batches"]], int, 1)
        if steps % every:
            raise PresetError(f"preset {self.name}: train.steps ({steps}) must be a multiple of "
                              f"train.eval_every ({every}) so the last evaluation is at the end")
        if not isinstance(d["attention"], str):
            raise PresetError(f"preset {self.name}: attention: expected a variant name, got "
                              f"{d['attention']!r}")
        if not isinstance(train["grids"], list) or not train["grids"]:
            raise PresetError(f"preset {self.name}: train.grids: expected a non-empty list of "
                              f"grids, got {train['grids']!r}")
        for i, grid in enumerate(train["grids"]):
            where = f"preset {self.name}: train.grids[{i}]"
            _keys(where, grid, GRID_KEYS)
            _names(f"{where}.blocks", grid["blocks"])
            _numbers(f"{where}.depths", grid["depths"], int, 1)
            _numbers(f"{where}.lrs", grid["lrs"], float, 0.0)
            _numbers(f"{where}.seeds", grid["seeds"], int, 0)
            if max(_numbers(f"{where}.warmups", grid["warmups"], int, 0)) >= steps:
                raise PresetError(f"{where}.warmups: each must be below steps ({steps}), got "
                                  f"{grid['warmups']}")
        init = d["init"]
        _keys(f"preset {self.name}: init", init,
              {"blocks", "depths", "seeds", "perturbation", "draws", "step_lr"})
        where = f"preset {self.name}: init"
        _names(f"{where}.blocks", init["blocks"])
        _numbers(f"{where}.depths", init["depths"], int, 1)
        _numbers(f"{where}.seeds", init["seeds"], int, 0)
        _numbers(f"{where}.perturbation/step_lr", [init["perturbation"], init["step_lr"]],
                 float, 0.0)
        _numbers(f"{where}.draws", [init["draws"]], int, 1)
        return self

    def with_overrides(self, blocks: list[str] | None = None,
                       attention: str | None = None) -> Preset:
        """``--variant`` replaces the block list of every grid; ``--attention`` the attention."""
        data = json.loads(json.dumps(self.data))  # deep copy of plain data
        if blocks:
            for grid in data["train"]["grids"]:
                grid["blocks"] = list(blocks)
            data["init"]["blocks"] = list(blocks)
        if attention:
            data["attention"] = attention
        return replace(self, data=data)

    def blocks(self) -> list[str]:
        names = [b for g in self.data["train"]["grids"] for b in g["blocks"]]
        return list(dict.fromkeys(names + self.data["init"]["blocks"]))

    def model(self) -> ModelSpec:
        return ModelSpec(**self.data["model"])

    def init_jobs(self, corpus: CorpusRef) -> list[InitJob]:
        init = self.data["init"]
        return [InitJob(block, self.data["attention"], depth, seed, init["perturbation"],
                        init["draws"], init["step_lr"], self.model(), corpus)
                for block, depth, seed in product(init["blocks"], init["depths"], init["seeds"])]

    def train_jobs(self, corpus: CorpusRef) -> list[TrainJob]:
        train, jobs = self.data["train"], {}
        for grid in train["grids"]:
            for block, depth, lr, warmup, seed in product(*(grid[k] for k in (
                    "blocks", "depths", "lrs", "warmups", "seeds"))):
                job = TrainJob(block, self.data["attention"], depth, lr, warmup, seed,
                               train["steps"], train["eval_every"], train["eval_batches"],
                               self.model(), corpus)
                jobs.setdefault(job.case_id, job)  # overlapping grids run a case once
        # Deepest first: the longest jobs start early, so the pool's tail is short.
        return sorted(jobs.values(), key=lambda j: -j.depth)
