"""Test configuration: Triton interpreter set-up, markers, hypothesis profiles."""

from __future__ import annotations

import os

from attnbench.runtime import configure_triton

configure_triton()  # must precede any import of a Triton kernel

import pytest  # noqa: E402
import torch  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

# `ci` keeps the suite inside its budget on 2 cores; `nightly` searches much harder.
settings.register_profile("ci", max_examples=25, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("nightly", max_examples=500, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=10, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

torch.set_num_threads(min(2, torch.get_num_threads()))

# `flex` compiles once per problem (8-22 s cold on 2 cores): tests that sweep every variant over
# many shapes run it eager; tests/test_flex.py tests the compiled path itself.
os.environ.setdefault("ATTNBENCH_FLEX_EAGER", "1")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if item.get_closest_marker("gpu") is not None:
            item.add_marker(skip_gpu)
