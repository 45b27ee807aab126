"""Section 3: what each variant declares it supports, from provenance["variants"]."""

from __future__ import annotations

from typing import Any

from reports.document import Cell, Section, not_measured, table
from reports.load import Bundle

COLUMNS = ("variant", "kind", "devices", "dtypes", "causal", "mask", "GQA", "backward",
           "head dim", "Dv ≠ D", "causal alignment", "fully masked rows", "LSE", "notes")


def yes_no(value: Any) -> Cell:
    return Cell("yes", "good") if value else Cell("no", "muted")


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


def row(name: str, entry: dict[str, Any], runs: tuple[str, ...], several: bool) -> list[Any]:
    caps = entry.get("capabilities") or {}
    lo, hi = caps.get("head_dim_min", 1), caps.get("head_dim_max")
    masked = str(caps.get("fully_masked_rows", "?"))
    notes = ". ".join(x.rstrip(". ") for x in (
        entry.get("doc", ""), caps.get("notes", ""), overrides(caps),
        "needs " + ", ".join(caps["requires"]) if caps.get("requires") else "") if x)
    label = name + (f" [{', '.join(runs)}]" if several else "")
    return [label, entry.get("kind", "?"), ", ".join(caps.get("devices", [])),
            ", ".join(caps.get("dtypes", [])), yes_no(caps.get("causal")),
            yes_no(caps.get("attn_mask")), yes_no(caps.get("gqa")), yes_no(caps.get("backward")),
            f"{lo}–{hi if hi else 'any'}", yes_no(caps.get("distinct_value_dim")),
            str(caps.get("causal_alignment", "?")).replace("_", "-"),
            Cell(masked, "warn" if masked in ("nan", "undefined") else ""),
            yes_no(caps.get("exposes_lse")), notes]


def build(bundle: Bundle) -> Section:
    section = Section("capabilities", "3. Capability and semantics matrix", (
        "What each variant declares, as recorded with the results. An unsupported case is "
        "skipped with its reason, never counted as a failure. 'causal alignment' is what "
        "causal=True means when N ≠ S; 'fully masked rows' is the output of a query that may "
        "attend to nothing (nan, zero, or undefined: do not rely on it)."))
    catalog = bundle.catalog()
    if not catalog:
        section.items.append(not_measured("capabilities",
                                          "no results directory recorded its variant catalog"))
        return section
    rows = []
    for name, versions in catalog.items():
        several = len(versions) > 1  # runs registered this variant differently: one row each
        rows += [row(name, entry, runs, several) for runs, entry in versions.items()]
    rows.sort(key=lambda r: (r[1], r[0]))
    section.items.append(table(list(COLUMNS), rows))
    return section
