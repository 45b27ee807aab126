"""Running a stability sweep: jobs out to an executor, rows written by the driver as they come
back, derived rows and findings at the end.

Every run is an independent job: a frozen dataclass of plain values (``TrainJob``, ``InitJob``)
submitted with the top-level function ``execute`` to any ``concurrent.futures.Executor``. The
default is a local process pool (spawned workers, one torch thread each). Only the driver
writes results, as futures complete, so an interrupted sweep keeps every finished run and
``--resume`` submits only the rest.

Dask is built in (``engines.dask_executor``; from the shell ``--executor dask`` for a local
cluster, ``--scheduler tcp://host:8786`` for an existing one):

    from attnbench.stability.engines import dask_executor
    from attnbench.stability.sweep import run_stability
    with dask_executor("tcp://scheduler:8786", workers=0) as executor:
        run_stability("full", "results/stability-full", executor=executor)

Any other engine's ``concurrent.futures.Executor`` works the same way, from the shell with
``--executor mymodule:make_executor``. Workers must see the same corpus (the default is the
Python standard library's; a job refuses a corpus whose SHA-256 differs) and must be able to
import any ``--plugin`` module, which each job loads before it runs.
"""

from __future__ import annotations

import multiprocessing
import os
import re
import time
import traceback
from collections.abc import Callable, Iterable
from concurrent.futures import Executor, Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from attnbench.results import (
    ResultsError,
    ResultsWriter,
    check_restart_flags,
    load_provenance,
    load_results,
    variant_catalog,
)
from attnbench.stability.common import Outcome
from attnbench.stability.data import CorpusRef
from attnbench.stability.diagnostics import InitJob, run_init
from attnbench.stability.findings import Finding, derived_cases, evaluate_findings
from attnbench.stability.presets import StabilityPreset
from attnbench.stability.train import TrainJob, run_train

Job = TrainJob | InitJob
DERIVED = ("lrsens:", "lowdiv:", "finding:")  # case ids computed from the runs, not run
Log = Callable[[str], None]


def execute(job: Job, plugins: tuple[str, ...] = ()) -> Outcome:
    """Run one job in whatever process the executor chose. Top-level, so it pickles by name."""
    from attnbench.runtime import configure_triton

    configure_triton()  # before a plugin or built-in variant imports a Triton kernel
    from attnbench.variants.plugins import load_variants

    load_variants(list(plugins))
    return run_train(job) if isinstance(job, TrainJob) else run_init(job)


def error_rows(job: Job, reason: str) -> list[dict[str, Any]]:
    return [{**job.columns(), "status": "error", "metric": "run", "reason": reason}]


def local_pool(workers: int) -> ProcessPoolExecutor:
    """Spawned (not forked) workers: a fork of a process that already ran torch's thread pool
    can deadlock, and spawn behaves the same on Linux, macOS and Windows."""
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))


def run_jobs(jobs: Iterable[Job], writer: ResultsWriter, *, executor: Executor | None = None,
             workers: int = 1, plugins: tuple[str, ...] = (), log: Log = print
             ) -> dict[str, float]:
    """Run the jobs not yet in ``writer``; returns counts of ok and error runs and the jobs'
    total CPU seconds (what the sweep costs on an idle machine, whatever the load now).

    ``executor`` None uses a local spawned pool of ``workers`` processes, or this process when
    ``workers`` is 0. A job that raises becomes an error row. A worker that dies (a segfault,
    the OOM killer) breaks a local pool and every pending job with it: those jobs are retried
    one at a time in fresh pools, so only the job that kills its worker again is an error."""
    todo = [job for job in jobs if not writer.is_done(job.case_id)]
    counts: dict[str, float] = {"ok": 0, "error": 0, "cpu_s": 0.0}
    if not todo:
        return counts
    total = len(todo)

    def record(job: Job, outcome: Outcome | None, reason: str = "") -> None:
        if outcome is not None:
            writer.add_case(outcome.case_id, outcome.rows, outcome.samples)
            counts["ok"] += 1
            counts["cpu_s"] += outcome.cpu_seconds
            log(f"[{counts['ok'] + counts['error']}/{total}] {outcome.summary} "
                f"({outcome.seconds:.1f} s wall, {outcome.cpu_seconds:.1f} s CPU)")
        else:
            writer.add_case(job.case_id, error_rows(job, reason))
            counts["error"] += 1
            log(f"[{counts['ok'] + counts['error']}/{total}] {job.case_id}: ERROR {reason}")

    if executor is None and workers == 0:
        for job in todo:
            try:
                record(job, execute(job, plugins))
            except Exception as exc:  # a crashing run is a row, not the end of the sweep
                record(job, None, _describe(exc))
        return counts

    broken = _drain(todo, executor or local_pool(workers), executor is None, plugins, record)
    for job in broken:  # isolate the job that killed its worker
        _drain([job], local_pool(1), True, plugins, record,
               on_broken=lambda j: record(j, None, "the worker process died while running "
                                                   "this job (crash or out of memory)"))
    return counts


def _drain(jobs: list[Job], executor: Executor, owned: bool, plugins: tuple[str, ...],
           record: Callable[[Job, Outcome | None, str], None],
           on_broken: Callable[[Job], None] | None = None) -> list[Job]:
    """Submit ``jobs``, record each as it completes; returns the jobs lost to a broken pool."""
    broken: list[Job] = []
    futures: dict[Future, Job] = {}
    try:
        futures = {executor.submit(execute, job, plugins): job for job in jobs}
        for future in as_completed(futures):
            job = futures[future]
            try:
                outcome = future.result()
            except BrokenProcessPool:
                (on_broken or broken.append)(job)
                continue
            except Exception as exc:
                record(job, None, _describe(exc))
                continue
            record(job, outcome)
    except BaseException:  # Ctrl-C: drop queued jobs; recorded ones are already on disk
        for future in futures:
            future.cancel()
        raise
    finally:
        if owned:
            executor.shutdown(wait=False, cancel_futures=True)
    return broken


def _describe(exc: BaseException) -> str:
    """'Type: message at file:line' of the innermost frame; for an exception from a process
    pool worker, that frame is in the worker's traceback text (the exception's __cause__)."""
    frames = re.findall(r'File "([^"]+)", line (\d+)', str(exc.__cause__ or ""))
    if not frames and exc.__traceback__:
        frames = [(f.filename, f.lineno) for f in traceback.extract_tb(exc.__traceback__)]
    at = f" at {Path(frames[-1][0]).name}:{frames[-1][1]}" if frames else ""
    return f"{type(exc).__name__}: {exc}{at}"


def check_same_configuration(out_dir: str | Path, preset: StabilityPreset, ref: CorpusRef) -> None:
    """--resume continues the *same* sweep: its derived rows and findings are computed once,
    so a changed preset or corpus would leave them describing other runs."""
    if not (Path(out_dir) / "provenance.json").exists():
        return
    previous = load_provenance(out_dir)
    if previous.get("suite") != "stability":
        raise ResultsError(f"--out {out_dir}: holds {previous.get('suite')!r} results, not "
                           "stability; choose another directory")
    if previous.get("preset_data") != preset.data:
        raise ResultsError(f"--resume: {out_dir} was started with another configuration "
                           f"(preset {previous.get('preset')!r} and its --variant/--attention); "
                           "resume with the same options or choose another --out")
    if previous.get("corpus", {}).get("sha256") != ref.sha256:
        raise ResultsError(f"--resume: {out_dir} was started on another corpus "
                           f"({previous.get('corpus', {}).get('source')}); resume with the same "
                           "--corpus or choose another --out")


def run_stability(preset: str | StabilityPreset, out_dir: str | Path, *, corpus: str | None = None,
                  executor: Executor | None = None, workers: int | None = None,
                  resume: bool = False, force: bool = False, plugins: tuple[str, ...] = (),
                  argv: list[str] | None = None, log: Log = print) -> list[Finding]:
    """The whole benchmark: init diagnostics and training runs of ``preset``, then the
    derived rows (lr_sensitivity, lowest_diverging_lr) and the findings, recomputed on every
    run (so ``resume=True`` on a finished sweep refreshes them with the current code)."""
    preset = preset if isinstance(preset, StabilityPreset) else StabilityPreset.load(preset)
    ref = CorpusRef.of(corpus)
    data = ref.load(preset.model().block_size)  # fail fast, here, on a bad or short corpus
    if workers is None:
        workers = os.cpu_count() or 1
    jobs: list[Job] = [*preset.init_jobs(ref), *preset.train_jobs(ref)]
    if resume and not force:
        check_same_configuration(out_dir, preset, ref)
    check_restart_flags(out_dir, resume=resume, force=force)
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    writer = ResultsWriter(out_dir, "stability", resume=resume, argv=argv,
                           seeds={"train": sorted({j.seed for j in jobs})},
                           extra={"variants": variant_catalog(), "preset": preset.name,
                                  "preset_data": preset.data, "workers": workers,
                                  "executor": type(executor).__name__ if executor else
                                  ("in-process" if workers == 0 else "ProcessPoolExecutor"),
                                  "load_average_start": load,
                                  "corpus": {"source": ref.source, "sha256": ref.sha256,
                                             "chars": len(data.train) + len(data.val),
                                             "vocab_size": len(data.vocab),
                                             "unigram_loss": data.unigram_loss()}})
    start = time.perf_counter()
    log(f"stability: preset {preset.name}, {len(jobs)} jobs, "
        f"{sum(not writer.is_done(j.case_id) for j in jobs)} to run, {workers} workers")
    counts = run_jobs(jobs, writer, executor=executor, workers=workers, plugins=plugins,
                      log=log)
    writer.drop_cases(DERIVED)  # recomputed from every run so far, by this code
    frame = load_results(writer.dir)
    findings = evaluate_findings(frame)
    for case_id, rows in derived_cases(frame, findings):
        writer.add_case(case_id, rows)
    wall = time.perf_counter() - start
    writer.finish(wall_s=wall, runs_ok=counts["ok"], runs_error=counts["error"],
                  jobs_cpu_s=counts["cpu_s"],
                  load_average_end=os.getloadavg() if hasattr(os, "getloadavg") else None,
                  findings={f.slug: f.verdict for f in findings})
    log(f"stability: {counts['ok']:.0f} ok, {counts['error']:.0f} errors in {wall:.0f} s wall "
        f"(jobs' CPU time {counts['cpu_s']:.0f} s) -> {writer.dir}")
    return findings
