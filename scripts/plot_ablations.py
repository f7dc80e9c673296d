#!/usr/bin/env python3
"""Plots of an ablation grid (scripts/ablations.sh's results.csv, one row per
`aimc eval` run):

    python3 scripts/plot_ablations.py OUT/results.csv OUT

For each task and backbone it writes
  score_<task>_<backbone>.png       the score against the number of shots, one
                                    line per mode / projector / layer (the
                                    zero-shot run is every line's 0-shot point);
  efficiency_<task>_<backbone>.png  tokens per prompt, peak memory and latency
                                    (p50) against the shots: the paper's
                                    efficiency figure (AIM stays nearly flat,
                                    ICL grows with every demonstration's image
                                    tokens).
Needs matplotlib (pip install matplotlib); aimc itself never runs Python.
"""
import csv
import os
import sys
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def number(s):
    try:
        return float(s)
    except ValueError:
        return float("nan")


def variant(row):
    """The line a run belongs to: icl, or aim with its projector and layer."""
    if row["mode"] == "icl":
        return "ICL"
    if row["mode"] == "aim":
        return f"AIM ({row['projector_type']}, layer {row['layer']})"
    return "zero-shot"


def lines_of(rows):
    """{variant: sorted [(shots, row)]}, the zero-shot run as each line's 0 point."""
    zero = [r for r in rows if r["mode"] == "zero-shot"]
    lines = defaultdict(list)
    for r in rows:
        if r["mode"] != "zero-shot":
            lines[variant(r)].append((int(number(r["shots"])), r))
    for v in lines:
        if zero:
            lines[v].append((0, zero[0]))
        lines[v].sort(key=lambda p: p[0])
    if not lines and zero:
        lines["zero-shot"] = [(0, zero[0])]
    return dict(sorted(lines.items(), key=lambda kv: (kv[0] != "ICL", kv[0])))


AIM_COLOURS = ["tab:blue", "tab:orange", "tab:green", "tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan",
               "tab:gray"]


def styles(names):
    """ICL red and dashed; every other line its own colour (never ICL's red)."""
    out, i = {}, 0
    for name in names:
        if name == "ICL":
            out[name] = dict(marker="s", linestyle="--", color="tab:red")
        else:
            out[name] = dict(marker="o", color=AIM_COLOURS[i % len(AIM_COLOURS)])
            i += 1
    return out


def shot_ticks(ax, lines):
    ax.set_xticks(sorted({p[0] for pts in lines.values() for p in pts}))


def plot_score(rows, task, backbone, out):
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    metric = rows[0]["metric"]
    lines = lines_of(rows)
    st = styles(lines)
    for name, pts in lines.items():
        ax.plot([p[0] for p in pts], [number(p[1]["score"]) for p in pts], label=name, **st[name])
    shot_ticks(ax, lines)
    ax.set_xlabel("shots (demonstrations per query)")
    ax.set_ylabel({"vqa_accuracy": "VQA accuracy (%)", "cider": "CIDEr-D (x100)", "roc_auc": "ROC-AUC (x100)"}.get(metric, metric))
    ax.set_title(f"{task} on {backbone}: score vs shots")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = os.path.join(out, f"score_{task}_{backbone}.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_efficiency(rows, task, backbone, out):
    panels = [("tokens_per_prompt", "tokens per prompt"), ("peak_mem_mib", "peak memory (MiB)"),
              ("latency_p50_ms", "latency per query, p50 (ms)")]
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    lines = lines_of(rows)
    st = styles(lines)
    for ax, (key, label) in zip(axes, panels):
        for name, pts in lines.items():
            ax.plot([p[0] for p in pts], [number(p[1][key]) for p in pts], label=name, **st[name])
        shot_ticks(ax, lines)
        ax.set_xlabel("shots")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{task} on {backbone}: cost vs shots ({rows[0]['device']})")
    fig.tight_layout()
    path = os.path.join(out, f"efficiency_{task}_{backbone}.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: plot_ablations.py RESULTS.csv OUT_DIR")
    with open(sys.argv[1], newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        sys.exit(f"{sys.argv[1]}: no runs")
    groups = defaultdict(list)
    for r in rows:
        groups[(r["task"], r["backbone"])].append(r)
    os.makedirs(sys.argv[2], exist_ok=True)
    for (task, backbone), rs in sorted(groups.items()):
        for path in (plot_score(rs, task, backbone, sys.argv[2]), plot_efficiency(rs, task, backbone, sys.argv[2])):
            print(path)


if __name__ == "__main__":
    main()
