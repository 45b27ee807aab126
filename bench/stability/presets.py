"""Sweep presets as data, and their expansion into jobs.

A preset is a plain dict (the built-ins below, or a JSON file passed as ``--preset PATH``):
    model      d_model, n_heads, block_size (N), batch_size (B) of every model
    attention  the attention variant inside every block
    train      steps, eval_every, eval_batches and a list of grids; each grid is a product
               blocks x depths x lrs x warmups x beta2s x inits x seeds. A warm-up is an int
               (steps) or a float in (0, 1) (that fraction of the steps); beta2s (AdamW's
               second-moment decay, default [0.95]) and inits ("scaled" / "unscaled", see
               ``variants.gpt``; default ["scaled"]) may be left out
    init       blocks x depths x inits x seeds for the initialisation diagnostics, with the
               noise scale (perturbation), noise draws and the one-step learning rate (step_lr)
``blocks`` may be "all": every block variant registered when the preset is expanded
(built-ins and plugins).

The regimes are chosen where the papers' effects are expected, and every preset is fixed in
advance, not tuned to agree with the papers. Post-LN's need for warm-up shows with Adam's usual
beta2 (Xiong et al. 2020 used 0.98; here 0.999): in the quick preset's runs at depth 6, lr 3e-3,
Post-LN without warm-up collapsed in 3/3 seeds and 100 warm-up steps rescued 3/3; at lr 1e-2 it
collapsed with 100 warm-up steps too, and a probe with 30 steps (10 %) at lr 3e-3 did not rescue
it. QK-norm's bound on the attention logits shows at high learning rates (Wortsman et al. 2023,
beta2 0.95). The initialisation findings are measured under both init schemes.

``quick`` (about 800 s of CPU time: under 7 minutes on 2 idle cores) tests each finding at
depth 6 with 3 seeds, the warm-up finding at lr 3e-3; ``standard`` (the reference result,
about 5300 s of CPU time by per-job timings: about 45 minutes on 2 idle cores) adds depths 2 and
12, the lr grid 1e-3..1e-2 and warm-up 0 / 33 % (100 of 300 steps, the warm-up that rescued
Post-LN in the quick preset), both beta2 at depths 2 and 6 and Adam's usual 0.999 at depth 12
(a depth-12 job costs twice a depth-6 one), and 10 % warm-up at depth 6, lr 3e-3, to show whether
a short warm-up suffices; ``full``
is Wortsman et al.'s lr grid over every block variant, depths 2 to 12 and both beta2.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from itertools import product
from pathlib import Path
from typing import Any

from attnbench.errors import UsageError
from attnbench.stability.common import ModelSpec
from attnbench.stability.data import CorpusRef
from attnbench.stability.diagnostics import InitJob
from attnbench.stability.train import TrainJob
from attnbench.variants.gpt import INIT_SCHEMES

WORTSMAN_LRS = [3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1]
PILOT_MODEL = {"d_model": 64, "n_heads": 4, "block_size": 64, "batch_size": 16}
INIT_MEASURES = {"perturbation": 0.01, "draws": 4, "step_lr": 1e-3}
SEEDS = [0, 1, 2]
ADAM_BETA2, WORTSMAN_BETA2 = 0.999, 0.95
TRAIN = {"steps": 300, "eval_every": 50, "eval_batches": 4}

PRESETS: dict[str, dict[str, Any]] = {
    "quick": {
        "description": "depth 6, 3 seeds: Post-LN vs Pre-LN with warm-up 0 / 100 at lr 3e-3 "
                       "(beta2 0.999); Pre-LN vs QK-norm at lr 3e-2, 1e-1 (beta2 0.95); "
                       "init diagnostics of every block at depths 2-12, both init schemes",
        "model": PILOT_MODEL,
        "attention": "sdpa",
        "train": {**TRAIN, "grids": [
            {"blocks": ["post_ln", "pre_ln"], "depths": [6], "lrs": [3e-3],
             "warmups": [0, 100], "beta2s": [ADAM_BETA2], "seeds": SEEDS},
            {"blocks": ["pre_ln", "qk_norm"], "depths": [6], "lrs": [3e-2, 1e-1],
             "warmups": [0], "beta2s": [WORTSMAN_BETA2], "seeds": SEEDS},
        ]},
        "init": {"blocks": "all", "depths": [2, 4, 8, 12], "inits": list(INIT_SCHEMES),
                 "seeds": SEEDS, **INIT_MEASURES},
    },
    "standard": {
        "description": "the reference result: Post-LN and Pre-LN x lr 1e-3..1e-2 x warm-up "
                       "0 / 33 % x 3 seeds at depths 2 and 6 (beta2 0.95 and 0.999) and 12 "
                       "(beta2 0.999); warm-up 10 % at depth 6, lr 3e-3; Pre-LN vs QK-norm at "
                       "lr 3e-2, 1e-1; init diagnostics at depths 2-12, both init schemes",
        "model": PILOT_MODEL,
        "attention": "sdpa",
        "train": {**TRAIN, "grids": [
            {"blocks": ["post_ln", "pre_ln"], "depths": [2, 6], "lrs": WORTSMAN_LRS[1:4],
             "warmups": [0, 0.33], "beta2s": [WORTSMAN_BETA2, ADAM_BETA2], "seeds": SEEDS},
            {"blocks": ["post_ln", "pre_ln"], "depths": [12], "lrs": WORTSMAN_LRS[1:4],
             "warmups": [0, 0.33], "beta2s": [ADAM_BETA2], "seeds": SEEDS},
            {"blocks": ["post_ln", "pre_ln"], "depths": [6], "lrs": [3e-3],
             "warmups": [0.1], "beta2s": [ADAM_BETA2], "seeds": SEEDS},
            {"blocks": ["pre_ln", "qk_norm"], "depths": [6], "lrs": [3e-2, 1e-1],
             "warmups": [0], "beta2s": [WORTSMAN_BETA2], "seeds": SEEDS},
        ]},
        "init": {"blocks": "all", "depths": [2, 3, 4, 6, 8, 12], "inits": list(INIT_SCHEMES),
                 "seeds": SEEDS, **INIT_MEASURES},
    },
    "full": {
        "description": "every block variant x Wortsman's lr grid x depths 2-12 x warm-up "
                       "{0, 100} x beta2 {0.95, 0.999} x 3 seeds; init diagnostics at depths "
                       "2-12, both init schemes, 3 seeds",
        "model": PILOT_MODEL,
        "attention": "sdpa",
        "train": {**TRAIN, "grids": [
            {"blocks": "all", "depths": [2, 4, 6, 8, 10, 12], "lrs": WORTSMAN_LRS,
             "warmups": [0, 100], "beta2s": [WORTSMAN_BETA2, ADAM_BETA2], "seeds": SEEDS},
        ]},
        "init": {"blocks": "all", "depths": [2, 3, 4, 6, 8, 10, 12],
                 "inits": list(INIT_SCHEMES), "seeds": SEEDS, **INIT_MEASURES},
    },
}

GRID_KEYS = {"blocks", "depths", "lrs", "warmups", "seeds"}
GRID_OPTIONAL = {"beta2s": [WORTSMAN_BETA2], "inits": ["scaled"]}


def registered_blocks() -> list[str]:
    """Every block variant in the registry (built-ins and loaded plugins)."""
    from attnbench.variants.registry import list_variants

    return [v.name for v in list_variants("block")]


def resolve_blocks(blocks: str | list[str]) -> list[str]:
    return registered_blocks() if blocks == "all" else list(blocks)


def warmup_steps(warmup: int | float, steps: int) -> int:
    """A warm-up given in steps (int) or as a fraction of the steps (float in (0, 1))."""
    return warmup if isinstance(warmup, int) else round(warmup * steps)


class PresetError(UsageError):
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
    if values == "all":
        return values
    if not isinstance(values, list) or not values or not all(
            isinstance(v, str) and v for v in values):
        raise PresetError(f"{where}: expected 'all' or a non-empty list of variant names, "
                          f"got {values!r}")
    return values


def _warmups(where: str, values: Any, steps: int) -> None:
    """Warm-ups: ints 0 <= w < steps (steps), or floats 0 < f < 1 (a fraction of the steps)."""
    def ok(v: Any) -> bool:
        if isinstance(v, bool):
            return False
        return 0 <= v < steps if isinstance(v, int) else isinstance(v, float) and 0 < v < 1

    if not isinstance(values, list) or not values or not all(ok(v) for v in values):
        raise PresetError(f"{where}: expected a non-empty list of warm-up steps (int, 0 <= w < "
                          f"steps = {steps}) or fractions of the steps (float in (0, 1)), got "
                          f"{values!r}")


def _inits(where: str, values: Any) -> None:
    if not isinstance(values, list) or not values or not set(values) <= set(INIT_SCHEMES):
        raise PresetError(f"{where}: expected a non-empty list of {list(INIT_SCHEMES)}, got "
                          f"{values!r}")


@dataclass(frozen=True)
class StabilityPreset:
    name: str
    data: dict[str, Any]

    @classmethod
    def load(cls, name_or_path: str) -> StabilityPreset:
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

    def validated(self) -> StabilityPreset:
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
            _keys(where, grid, GRID_KEYS, set(GRID_OPTIONAL))
            _names(f"{where}.blocks", grid["blocks"])
            _numbers(f"{where}.depths", grid["depths"], int, 1)
            _numbers(f"{where}.lrs", grid["lrs"], float, 0.0)
            _numbers(f"{where}.seeds", grid["seeds"], int, 0)
            _warmups(f"{where}.warmups", grid["warmups"], steps)
            beta2s = _numbers(f"{where}.beta2s", grid.get("beta2s", [0.5]), float, 0.0)
            if max(beta2s) >= 1:
                raise PresetError(f"{where}.beta2s: each must be in (0, 1), got {beta2s}")
            _inits(f"{where}.inits", grid.get("inits", ["scaled"]))
        init = d["init"]
        _keys(f"preset {self.name}: init", init,
              {"blocks", "depths", "seeds", "perturbation", "draws", "step_lr"}, {"inits"})
        where = f"preset {self.name}: init"
        _names(f"{where}.blocks", init["blocks"])
        _numbers(f"{where}.depths", init["depths"], int, 1)
        _numbers(f"{where}.seeds", init["seeds"], int, 0)
        _numbers(f"{where}.perturbation/step_lr", [init["perturbation"], init["step_lr"]],
                 float, 0.0)
        _numbers(f"{where}.draws", [init["draws"]], int, 1)
        _inits(f"{where}.inits", init.get("inits", ["scaled"]))
        return self

    def with_overrides(self, blocks: list[str] | None = None,
                       attention: str | None = None) -> StabilityPreset:
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
        names = [b for g in self.data["train"]["grids"] for b in resolve_blocks(g["blocks"])]
        return list(dict.fromkeys(names + resolve_blocks(self.data["init"]["blocks"])))

    def model(self) -> ModelSpec:
        return ModelSpec(**self.data["model"])

    def init_jobs(self, corpus: CorpusRef) -> list[InitJob]:
        init = self.data["init"]
        return [InitJob(block, self.data["attention"], depth, seed, init["perturbation"],
                        init["draws"], init["step_lr"], self.model(), corpus, scheme)
                for block, depth, scheme, seed in product(
                    resolve_blocks(init["blocks"]), init["depths"],
                    init.get("inits", ["scaled"]), init["seeds"])]

    def train_jobs(self, corpus: CorpusRef) -> list[TrainJob]:
        train, jobs = self.data["train"], {}
        for grid in train["grids"]:
            grid = {**GRID_OPTIONAL, **grid, "blocks": resolve_blocks(grid["blocks"])}
            for block, depth, lr, warmup, beta2, scheme, seed in product(*(grid[k] for k in (
                    "blocks", "depths", "lrs", "warmups", "beta2s", "inits", "seeds"))):
                job = TrainJob(block, self.data["attention"], depth, lr,
                               warmup_steps(warmup, train["steps"]), seed, train["steps"],
                               train["eval_every"], train["eval_batches"], self.model(), corpus,
                               float(beta2), scheme)
                jobs.setdefault(job.case_id, job)  # overlapping grids run a case once
        # Deepest first: the longest jobs start early, so the pool's tail is short.
        return sorted(jobs.values(), key=lambda j: -j.depth)
