"""Section 3: what each variant declares it supports, from provenance["variants"]."""

from __future__ import annotations

from typing import Any

from attnbench.reports.document import Cell, Details, Section, not_measured, table
from attnbench.reports.load import Bundle
from attnbench.reports.sections import register_section

ATTENTION = ("variant", "devices", "dtypes", "causal", "mask", "GQA", "backward", "head dim",
             "Dv ≠ D", "causal alignment", "fully masked rows", "LSE", "notes")
BLOCK = ("variant", "devices", "dtypes", "backward", "notes")  # the rest is the attention's


def yes_no(value: Any) -> Cell:
    return Cell("yes") if value else Cell("no", "muted")


def overrides(caps: dict[str, Any]) -> str:
    """Per-device differences in words: "cuda: dtypes float16, bfloat16; attn_mask no"."""
    parts = []
    for device, changes in sorted((caps.get("device_overrides") or {}).items()):
        said = []
        for key, value in sorted(changes.items()):
            if isinstance(value, list):
                value = ", ".join(map(str, value))
            elif isinstance(value, bool):
                value = "yes" if value else "no"
            said.append(f"{key} {value}")
        parts.append(f"{device}: " + "; ".join(said))
    return " | ".join(parts)


def row(name: str, entry: dict[str, Any], runs: tuple[str, ...], several: bool
        ) -> dict[str, Any]:
    """Every column's cell for one variant (block tables show only some)."""
    caps = entry.get("capabilities") or {}
    lo, hi = caps.get("head_dim_min", 1), caps.get("head_dim_max")
    masked = str(caps.get("fully_masked_rows", "?"))
    notes = ". ".join(x.rstrip(". ") for x in (
        entry.get("doc", ""), caps.get("notes", ""), overrides(caps),
        "needs " + ", ".join(caps["requires"]) if caps.get("requires") else "") if x)
    return {"variant": name + (f" [{', '.join(runs)}]" if several else ""),
            "devices": ", ".join(caps.get("devices", [])),
            "dtypes": ", ".join(caps.get("dtypes", [])), "causal": yes_no(caps.get("causal")),
            "mask": yes_no(caps.get("attn_mask")), "GQA": yes_no(caps.get("gqa")),
            "backward": yes_no(caps.get("backward")), "head dim": f"{lo}–{hi if hi else 'any'}",
            "Dv ≠ D": yes_no(caps.get("distinct_value_dim")),
            "causal alignment": str(caps.get("causal_alignment", "?")).replace("_", "-"),
            "fully masked rows": Cell(masked, "warn" if masked in ("nan", "undefined") else ""),
            "LSE": yes_no(caps.get("exposes_lse")), "notes": notes}


@register_section(order=30)
def build(bundle: Bundle) -> Section:
    section = Section("capabilities", "Capability and semantics matrix", (
        "What each variant declares, as recorded with the results. An unsupported case is "
        "skipped with its reason, never counted as a failure. 'causal alignment' is what "
        "causal=True means when N ≠ S; 'fully masked rows' is the output of a query that may "
        "attend to nothing (nan, zero, or undefined: do not rely on it)."))
    catalog = bundle.catalog()
    if not catalog:
        section.items.append(not_measured("capabilities",
                                          "no results directory recorded its variant catalog"))
        return section
    rows: dict[str, list[dict[str, Any]]] = {"attention": [], "block": []}
    for name, versions in catalog.items():
        several = len(versions) > 1  # runs registered this variant differently: one row each
        for runs, entry in versions.items():
            kind = "block" if entry.get("kind") == "block" else "attention"
            rows[kind].append(row(name, entry, runs, several))
    for kind, columns in (("attention", ATTENTION), ("block", BLOCK)):
        if rows[kind]:
            what = ("attention variants" if kind == "attention" else
                    "blocks (each runs on any attention variant)")
            section.items.append(Details(f"{len(rows[kind])} {what}: declared capabilities", [
                table(list(columns), [[r[c] for c in columns] for r in rows[kind]])]))
    return section
