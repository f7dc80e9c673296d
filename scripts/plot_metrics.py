#!/usr/bin/env python3
"""Draws an `aimc train` run's curves from its metrics log into a PNG.

    python3 scripts/plot_metrics.py OUT/metrics.jsonl [-o curves.png] [--smooth N]

metrics.jsonl (host/train.h) holds one JSON object per line: a training step
({"step", "loss", "lr", "grad_norm", "episodes_per_s", "tokens_per_s",
"data_s", "compute_s", "comm_s", "skipped", ...}) or a held-out evaluation
({"step", "eval_loss", ...}). Four panels: loss (each step, a running mean,
and the held-out loss), learning rate, gradient norm, throughput (episodes/s
and tokens/s). Skipped (non-finite) steps are marked. Needs matplotlib; aimc
itself never needs Python.
"""
import argparse
import json
import math
import os
import sys


def read_metrics(path):
    steps, evals = [], []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                sys.exit(f"plot_metrics: {path}:{n}: not JSON ({e})")
            if "eval_loss" in rec:
                evals.append(rec)
            elif "loss" in rec:
                steps.append(rec)
    if not steps and not evals:
        sys.exit(f"plot_metrics: {path} holds no training or evaluation lines")
    return steps, evals


def column(recs, key):
    """Values of key (None and absent become NaN, so gaps show)."""
    out = []
    for r in recs:
        v = r.get(key)
        out.append(float(v) if v is not None else math.nan)
    return out


def running_mean(xs, n):
    out, window = [], []
    for x in xs:
        if not math.isnan(x):
            window.append(x)
            if len(window) > n:
                window.pop(0)
        out.append(sum(window) / len(window) if window else math.nan)
    return out


def plot(steps, evals, out_png, smooth, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(2, 2, figsize=(12, 7.5), sharex=True)
    s = [r["step"] for r in steps]
    loss = column(steps, "loss")
    a = ax[0][0]
    a.plot(s, loss, lw=0.8, alpha=0.45, label="train loss (step)")
    a.plot(s, running_mean(loss, smooth), lw=1.8, label=f"train loss (mean of {smooth})")
    if evals:
        a.plot([r["step"] for r in evals], column(evals, "eval_loss"), "o-", lw=1.5, label="held-out loss")
    bad = [r["step"] for r in steps if r.get("skipped")]
    for x in bad:
        a.axvline(x, color="red", lw=0.6, alpha=0.6)
    a.set_ylabel("LM loss (nats / target token)")
    a.set_title("loss" + (f" ({len(bad)} skipped steps in red)" if bad else ""))
    a.legend()

    a = ax[0][1]
    a.plot(s, column(steps, "lr"))
    a.set_title("learning rate")

    a = ax[1][0]
    a.plot(s, column(steps, "grad_norm"))
    a.set_title("gradient norm (before clipping)")
    a.set_xlabel("step")

    a = ax[1][1]
    a.plot(s, column(steps, "episodes_per_s"), label="episodes/s")
    a.set_ylabel("episodes / s")
    a.set_xlabel("step")
    a2 = a.twinx()
    a2.plot(s, column(steps, "tokens_per_s"), "--", color="tab:orange", label="tokens/s")
    a2.set_ylabel("LM positions / s")
    a.set_title("throughput (all ranks)")
    lines = a.get_lines() + a2.get_lines()
    a.legend(lines, [l.get_label() for l in lines])

    for row in ax:
        for a in row:
            a.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    print(f"plot_metrics: {len(steps)} steps, {len(evals)} evaluations -> {out_png}")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("metrics", help="OUT/metrics.jsonl written by aimc train")
    p.add_argument("-o", "--out", help="PNG to write (default: next to the metrics, curves.png)")
    p.add_argument("--smooth", type=int, default=10, help="running-mean window in steps")
    a = p.parse_args()
    if a.smooth < 1:
        sys.exit("plot_metrics: --smooth must be >= 1")
    out = a.out or os.path.join(os.path.dirname(a.metrics) or ".", "curves.png")
    steps, evals = read_metrics(a.metrics)
    plot(steps, evals, out, a.smooth, a.metrics)


if __name__ == "__main__":
    main()
