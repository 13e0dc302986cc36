#!/usr/bin/env python3
"""Draws the benchmark tables of bench/results/*.md as one PNG.

Each set is a panel: its scenarios' throughput relative to the set's
baseline (the ×baseline column next to requests/s, measured in the same
run). The targets are in the tables, next to the figures.

    .venv/bin/python scripts/bench_plot.py [RESULTS_DIR] [OUT_PNG]
"""
import pathlib
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def table(path):
    """(scenario, ratio) rows of the first markdown table in `path`."""
    rows = []
    header = None
    for line in path.read_text().splitlines():
        if not line.startswith("|"):
            if header is not None and rows:
                break
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if header is None:
            header = cells
            continue
        if set("".join(cells)) <= set("-: "):
            continue
        try:
            ratio = float(cells[header.index("requests/s") + 1])
        except (ValueError, IndexError):
            continue
        rows.append((cells[0], ratio))
    return rows


def main():
    results = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "bench/results")
    out = pathlib.Path(sys.argv[2] if len(sys.argv) > 2 else results / "bench.png")
    sets = [(p.stem, table(p)) for p in sorted(results.glob("*.md"))]
    sets = [(name, rows) for name, rows in sets if rows]
    if not sets:
        sys.exit(f"bench_plot: no result tables in {results}")
    height = sum(0.45 * len(rows) + 0.9 for _, rows in sets)
    fig, axes = plt.subplots(
        len(sets),
        1,
        figsize=(10, height),
        gridspec_kw={"height_ratios": [len(rows) for _, rows in sets]},
        squeeze=False,
    )
    for ax, (name, rows) in zip(axes[:, 0], sets):
        labels = [r[0] for r in rows][::-1]
        ratios = [r[1] for r in rows][::-1]
        bars = ax.barh(labels, ratios, color="#4c72b0")
        bars[-1].set_color("#999999")  # the baseline
        ax.axvline(1.0, color="black", linewidth=0.8)
        for bar, ratio in zip(bars, ratios):
            ax.text(bar.get_width() + 0.01, bar.get_y() + bar.get_height() / 2,
                    f"{ratio:.2f}", va="center", fontsize=8)
        ax.set_title(f"make bench SETS={name}: requests/s against the first row", fontsize=9, loc="left")
        ax.set_xlim(0, max(1.2, max(ratios) + 0.15))
        ax.tick_params(axis="y", labelsize=8)
        ax.tick_params(axis="x", labelsize=8)
    axes[-1, 0].set_xlabel("throughput relative to the set's baseline (targets: see bench/results/<set>.md)")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
