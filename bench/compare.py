"""Every figure of a run next to the same figure of a reference run, with their ratio.

    scripts/bench --compare bench/results/reference/<file>.json    (after a run)
    python3 -m bench.compare NEW.json REFERENCE.json                 (two runs already made)

The figures are the rows of the bench's table (bench/report.py), operator column; a figure
either run lacks shows as "—". Ratios are this run ÷ the reference: above 1 is better for
rates, below 1 is better for times and counts.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from bench.report import _fmt, rows


def figures(data: dict[str, Any]) -> dict[str, tuple[Any, str]]:
    """Figure name → (the operator's value, its unit), as the table shows them."""
    return {name: (op, unit) for name, op, _b1, _b2, unit, _target, _text in rows(data)}


def _ratio(new: Any, ref: Any) -> str:
    if not isinstance(new, (int, float)) or not isinstance(ref, (int, float)) or isinstance(new, bool):
        return "—"
    if ref == 0:
        return "=" if new == 0 else "—"
    return f"{new / ref:.2f}×"


def table(data: dict[str, Any], reference: dict[str, Any], reference_name: str = "reference") -> str:
    new, ref = figures(data), figures(reference)
    ref_by_prefix = {name.split(" (")[0]: v for name, v in ref.items()}
    header = ("figure", "this run", "reference", "÷ reference")
    body = []
    for name, (value, unit) in new.items():
        # figure names carry their sizes ("backlog 200"): match the reference on the same name,
        # else on the part before the first parenthesis
        other = ref.get(name) or ref_by_prefix.get(name.split(" (")[0])
        ref_value = other[0] if other else None
        if value is None and ref_value is None:
            continue
        body.append((name, _fmt(value, unit), _fmt(ref_value, unit), _ratio(value, ref_value)))
    widths = [max(len(str(r[i])) for r in [header, *body]) for i in range(len(header))]
    lines = [f"\ncompared with {reference_name}" + _machine(reference),
             "  ".join(str(c).ljust(w) for c, w in zip(header, widths)).rstrip(),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in body]
    return "\n".join(lines) + "\n"


def _machine(data: dict[str, Any]) -> str:
    meta = data.get("meta") or {}
    said = [f"{meta['cpus']} cores" if meta.get("cpus") else "", meta.get("machine") or ""]
    said = [s for s in said if s]
    return f" ({'; '.join(said)})" if said else ""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m bench.compare", description=__doc__.split("\n")[0])
    ap.add_argument("new", type=Path, help="a run's JSON")
    ap.add_argument("reference", type=Path, help="the JSON to compare it with")
    a = ap.parse_args(argv)
    print(table(json.loads(a.new.read_text()), json.loads(a.reference.read_text()), str(a.reference)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
