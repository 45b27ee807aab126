"""Sections 2-10 of the report, one module each; ``build(bundle) -> Section``. Section 1 (the
summary) lives in ``reports/summary.py``; the reading order is ``reports.SECTIONS``."""
