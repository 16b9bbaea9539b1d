"""Summarises bench/recipe.py's results: medians over seeds per (set, configuration), and a plot.

Usage: python bench/recipe_report.py RESULTS.jsonl --out FOLDER [--group label]
Writes FOLDER/summary.md (a Markdown table) and FOLDER/recipe.png (R@1 both ways, every seed).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import statistics

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

METRICS = [f"{d}_r{k}" for d in ("image_to_text", "text_to_image") for k in (1, 5, 10)]


def _pct(value: float) -> str:
    return f"{100 * value:.1f}"


def summarise(rows: list[dict], group: str) -> str:
    groups: dict[tuple[str, str], list[dict]] = collections.defaultdict(list)
    for row in rows:
        groups[(row["set"], row[group])].append(row)
    lines = [
        "| set | model | seeds | steps | train s | i->t R@1 / 5 / 10 | t->i R@1 / 5 / 10 | zero-shot top-1 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (name, label), runs in sorted(groups.items()):
        med = {m: statistics.median(r[m] for r in runs) for m in METRICS}
        zero_shot = [r["zero_shot_top1"] for r in runs if "zero_shot_top1" in r]
        lines.append(
            f"| {name} | {label} | {len(runs)} | {runs[0]['steps']} "
            f"| {statistics.median(r['loop_seconds'] for r in runs):.0f} "
            f"| {' / '.join(_pct(med[f'image_to_text_r{k}']) for k in (1, 5, 10))} "
            f"| {' / '.join(_pct(med[f'text_to_image_r{k}']) for k in (1, 5, 10))} "
            f"| {_pct(statistics.median(zero_shot)) if zero_shot else '-'} |"
        )
    chances = {row["set"]: row["image_to_text_r1_chance"] for row in rows}
    lines.append("")
    lines.append(
        "Medians over seeds, in %. R@1 chance: "
        + ", ".join(f"{name} {_pct(c)}" for name, c in sorted(chances.items()))
        + "."
    )
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], group: str, path: str) -> None:
    sets = sorted({row["set"] for row in rows})
    width = max(5.0, 0.9 * len({row[group] for row in rows}))  # room for every configuration's label
    figure, axes = plt.subplots(1, len(sets), figsize=(width * len(sets), 4.2), squeeze=False)
    for axis, name in zip(axes[0], sets, strict=True):
        runs = [r for r in rows if r["set"] == name]
        labels = sorted({r[group] for r in runs})
        for offset, (metric, marker) in enumerate((("image_to_text_r1", "o"), ("text_to_image_r1", "s"))):
            xs = [labels.index(r[group]) + (offset - 0.5) * 0.2 for r in runs]
            axis.scatter(xs, [100 * r[metric] for r in runs], marker=marker, label=metric.replace("_", " "))
        axis.axhline(100 * runs[0]["image_to_text_r1_chance"], color="grey", linestyle=":", label="chance")
        axis.set_xticks(range(len(labels)), labels, rotation=20, ha="right")
        axis.set_title(f"{name}: held-out R@1 (%), every seed")
        axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results")
    parser.add_argument("--out", required=True)
    parser.add_argument("--group", default="label", help="field that names a configuration")
    args = parser.parse_args()
    rows = [json.loads(line) for line in open(args.results, encoding="utf-8") if line.strip()]
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "summary.md"), "w", encoding="utf-8") as f:
        f.write(summarise(rows, args.group))
    plot(rows, args.group, os.path.join(args.out, "recipe.png"))


if __name__ == "__main__":
    main()
