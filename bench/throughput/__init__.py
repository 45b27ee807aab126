"""Throughput, peak-memory and accuracy benchmark of attention and block variants.

Reusable pieces (the regression gate interleaves A/B measurements with them):
    cases.BenchCase, cases.make_call(case) -> zero-argument callable of the timed work
    timing.time_callable(fn, *, device, rounds=None, ...) -> per-call seconds
    timing.summarize(samples) -> (median, iqr)
    measure.measure_case(case, settings) -> Measurement (times, FLOPs, memory, accuracy)
    runner.run_throughput(config) -> writes a results directory (``attnbench bench``)
"""

from attnbench.throughput.cases import BenchCase, make_call
from attnbench.throughput.measure import Measurement, measure_case
from attnbench.throughput.timing import TimingSettings, summarize, time_callable

__all__ = ["BenchCase", "Measurement", "TimingSettings", "make_call", "measure_case",
           "summarize", "time_callable"]
