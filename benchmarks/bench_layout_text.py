"""How large is the private-value text on the two full document layouts, at the page size and at model input?

Renders ``--profiles`` people per domain (seed 0) on both full layouts at ``--size`` px (default: the data
set's default page, 448 px) and measures, inside every sensitive field's value box, the ink height: the number
of pixel rows between the first and the last row holding a dark pixel (grey < 128). Prints min / median / max
per layout, and the same scaled to each ``--input`` size (LLaVA-1.5 resizes a page to 336 px, the tiny test
model to 64 px; Qwen2-VL reads the page at its own resolution). docs/data.md ("The two full layouts") quotes it.

    python benchmarks/bench_layout_text.py [--profiles 10] [--size 448] [--input 336 64]

A few seconds on one CPU thread. A JSON line comes last.
"""

from __future__ import annotations

import argparse
import json
import statistics

import numpy as np


def ink_heights(profiles: int, size: int) -> dict[int, list[int]]:
    """Layout -> value-text ink height in px of every sensitive field of every rendered person."""
    from icu_tasks.data import render, schema
    from icu_tasks.data.profiles import make_profiles

    heights: dict[int, list[int]] = {k: [] for k in range(schema.FULL_LAYOUTS)}
    for person in make_profiles(profiles, seed=0):
        for layout in heights:
            page = render.render_document(person, layout, size)
            grey = page.image.convert("L")
            for box in page.boxes.values():
                dark_rows = np.where((np.asarray(grey.crop(box)) < 128).any(axis=1))[0]
                heights[layout].append(int(dark_rows.max() - dark_rows.min() + 1) if len(dark_rows) else 0)
    return heights


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", type=int, default=10, help="people per domain (10)")
    parser.add_argument("--size", type=int, default=448, help="page side in px (448, the data default)")
    parser.add_argument("--input", type=int, nargs="+", default=[336, 64], help="model input sides in px")
    args = parser.parse_args()
    heights = ink_heights(args.profiles, args.size)
    summary = {}
    for layout, values in heights.items():
        stats = {
            "min": min(values),
            "median": statistics.median(values),
            "max": max(values),
            "n": len(values),
        }
        scaled = {side: {k: round(stats[k] * side / args.size, 1) for k in ("min", "median", "max")}
                  for side in args.input}  # fmt: skip
        summary[f"layout_{layout}"] = {"px": stats, "at_input": scaled}
        print(f"layout {layout}: value ink height at {args.size} px: {stats}")
        for side, s in scaled.items():
            print(f"    at a {side} px input: {s}")
    rows = [  # for run_all's table: informational, no target
        {
            "name": f"full layout {layout} value text at a {side} px input",
            "measured": f"{s['at_input'][side]['min']}-{s['at_input'][side]['max']} px high",
            "target": "",
            "pass": None,
        }
        for layout, s in enumerate(summary.values())
        for side in args.input
    ]
    print(json.dumps({"size": args.size, **summary, "rows": rows}))


if __name__ == "__main__":
    main()
