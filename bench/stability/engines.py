"""Where a sweep's jobs run: a Dask cluster, built in (the optional ``dask`` extra:
``pip install 'attnbench[dask]'``).

    dask_executor(None, workers=4)                 a LocalCluster of 4 worker processes,
                                                   one thread each, closed afterwards
    dask_executor("tcp://scheduler:8786", ...)     an existing cluster's scheduler

Either way the sweep gets a ``concurrent.futures.Executor`` (the client's ``get_executor()``),
so nothing else changes: the driver still writes every result. Workers of an existing cluster
must import the same attnbench (``pip install -e .`` on each) and see the same corpus (a job
refuses a corpus whose SHA-256 differs); start them with one thread each
(``dask worker tcp://scheduler:8786 --nthreads 1 --nworkers N``), since a job runs torch on one
thread and jobs sharing a process would share it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from concurrent.futures import Executor


class EngineError(RuntimeError):
    """The requested engine is not installed or cannot be reached."""


@contextlib.contextmanager
def dask_executor(scheduler: str | None, workers: int) -> Iterator[Executor]:
    """A Dask-backed executor: on the cluster at ``scheduler``, or on a LocalCluster of
    ``workers`` processes when ``scheduler`` is None. The client (and a local cluster) close
    when the block ends."""
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise EngineError("Dask is not installed: pip install 'attnbench[dask]' (or "
                          "'dask[distributed]')") from None
    cluster = None
    try:
        if scheduler is None:
            if workers < 1:
                raise EngineError(f"--workers: a local Dask cluster needs 1 or more worker "
                                  f"processes, got {workers}")
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                   dashboard_address=None)
            client = Client(cluster)
        else:
            try:
                client = Client(scheduler, timeout="10s")
            except OSError as exc:
                raise EngineError(f"--scheduler {scheduler}: cannot connect ({exc})") from None
        try:
            yield client.get_executor()
        finally:
            client.close()
    finally:
        if cluster is not None:
            cluster.close()
