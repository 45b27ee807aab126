"""``attnbench list``: the registry and each variant's declared capabilities."""

from __future__ import annotations

import argparse

from attnbench.variants.registry import Case, dtype_name, list_variants, not_supported_reasons
from tabulate import tabulate


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = sub.add_parser("list", help="show registered variants and their capabilities")
    parser.add_argument("--kind", choices=("attention", "block"), help="only this kind")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from attnbench.cli import print_json

    found = list_variants(args.kind)
    if args.json:
        print_json([{"name": v.name, "kind": v.kind, "module": v.module, "doc": v.doc,
                     "capabilities": v.caps.as_dict(),
                     "here": not_supported_reasons(v, Case()) or "available"} for v in found])
        return 0
    rows = []
    for v in found:
        c = v.caps
        reasons = not_supported_reasons(v, Case(dtype=c.on("cpu").dtypes[0]))
        yes_no = ["yes" if flag else "no" for flag in (c.causal, c.attn_mask, c.gqa)]
        # Masking, GQA and alignment describe an attention call; a block has none of its own.
        memory = c.memory if isinstance(c.memory, str) else "own model" if c.memory else "-"
        # Patterns run natively (declared families) and, with attn_mask, every mask-only one.
        patterns = "all" if c.patterns == "all" else "+".join(
            [*c.patterns, *(["mask-only"] if c.attn_mask else [])]) or "-"
        attention_only = ([*yes_no, "yes" if c.backward else "no", c.causal_alignment,
                           c.fully_masked_rows, memory, patterns] if v.kind == "attention"
                          else ["-", "-", "-", "yes" if c.backward else "no", "-", "-", "-", "-"])
        rows.append([v.name, v.kind, ",".join(c.devices),
                     ",".join(dtype_name(d) for d in c.dtypes), *attention_only,
                     "available" if not reasons else "; ".join(reasons)])
    print(tabulate(rows, headers=["name", "kind", "devices", "dtypes", "causal", "mask", "gqa",
                                  "bwd", "causal align", "masked rows", "memory", "patterns",
                                  "here (cpu)"]))
    return 0
