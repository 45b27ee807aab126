"""``attnbench report``: render results directories into one HTML page, Markdown and a CSV.

Reads results files only; nothing is run. Several directories (two commits, CPU and GPU, two
machines) are shown side by side, each labelled with its run.
"""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        "report", help="render a comparison report (HTML, Markdown, CSV) from results directories",
        description="Render results directories (or folders holding them, e.g. results/latest) "
                    "into index.html, report.md with figures/, and results.csv.")
    parser.add_argument("results", nargs="+", metavar="RESULTS_DIR",
                        help="results directory, or a folder of results directories")
    parser.add_argument("--out", metavar="DIR",
                        help="output directory (default: report/ beside the first results dir)")
    parser.add_argument("--baseline", default="sdpa", metavar="VARIANT",
                        help="variant the speed-ups are measured against (default: sdpa)")
    parser.add_argument("--gate", metavar="PATH",
                        help="JSON verdict file from `attnbench gate` to show in section 10")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from attnbench.reports import write_report

    files = write_report(args.results, args.out, baseline=args.baseline, gate_path=args.gate)
    print(f"report: {files.index}")
    print(f"markdown: {files.markdown} ({len(files.figures)} figures)")
    print(f"table: {files.csv}")
    return 0
