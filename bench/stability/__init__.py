"""The training-stability benchmark (``attnbench stability``), read in this order:

    data.py         corpus (default: the stdlib's pydoc_data.topics), split, batches, unigram loss
    common.py       model size, seeded model building, one thread, a job's Outcome
    verdicts.py     divergence verdict, spikes, learning-rate sensitivity, lowest diverging lr
    train.py        TrainJob and one training run (curves, rows, verdict)
    diagnostics.py  InitJob: gradient, hidden-state and output-change measurements at init
    presets.py      the quick and full presets as data, expanded into jobs
    findings.py     per-group summaries and the published findings, from the results table
    sweep.py        run_stability(): jobs to any concurrent.futures.Executor, results written
                    by the driver (how to run on a Dask cluster is in its docstring)

Public entry points: ``sweep.run_stability``, ``presets.StabilityPreset`` / ``presets.PRESETS``,
``verdicts.divergence_verdict`` and ``verdicts.lr_sensitivity``. Kept import-free so the CLI's
``--help`` does not load torch and pandas.
"""
