"""The committed standard stability run (reports/stability-standard) renders into the summary
with its per-depth rows joined to their configurations."""

from __future__ import annotations

from pathlib import Path

from attnbench.reports.load import load_bundle
from attnbench.reports.summary import stability_rows

STANDARD = Path(__file__).resolve().parents[1] / "reports" / "stability-standard" / "results"


def test_summary_joins_per_depth_rows_to_their_configuration():
    """The init diagnostics vary ``init``, the training runs do not: a configuration's name must
    come from the whole table, or the per-depth rows (lowest diverging lr, lr sensitivity) no
    longer match and every row read "not measured" (a bug this test pins)."""
    rows = {row[1]: row for row in stability_rows(load_bundle([STANDARD]))}
    post = rows["post_ln warmup 0 beta2 0.999 init scaled"]
    assert post[3] == "L2: 1e-2, L6: 3e-3, L12: 1e-3"
    assert post[4].startswith("L2: 0.378, L6: 0.569, L12: ")
    assert rows["pre_ln warmup 0 beta2 0.999 init scaled"][3] == "L2: none, L6: none, L12: none"
    # a setting with one lr has no sensitivity, which is not the same as "not measured" above
    assert rows["post_ln warmup 30 beta2 0.999 init scaled"][4] == "not measured"
