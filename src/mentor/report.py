"""`mentor report RUN_DIR`: PNG plots and a Markdown summary from a run's `metrics.jsonl`.

Panels are drawn for whichever metric groups the run logged (loss, accuracy / reward, lengths, learning
rate and grad norm, KL and entropy, throughput), so the same report serves SFT, RL and distillation runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .runs import atomic_write_text, read_jsonl

PANELS: list[tuple[str, tuple[str, ...]]] = [
    ("loss", ("loss", "pg_loss", "nll")),
    ("accuracy", ("eval/accuracy", "eval/pass@1", "accuracy", "reward/mean", "teacher_accuracy")),
    ("length", ("eval/length/mean", "length/mean", "response_length/mean")),
    ("optimisation", ("lr", "grad_norm")),
    ("divergence", ("kl", "approx_kl", "entropy", "opd/reverse_kl")),
    ("throughput", ("tokens_per_s", "time/step")),
    ("horizon", ("adwin/horizon", "adwin/ema", "adwin/mass")),
]
COST_AXES = ("cost/flops", "cost/tokens")  # accuracy is also drawn against these cumulative counters


def _series(records: list[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    xs, ys = [], []
    for r in records:
        v = r.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            xs.append(r["step"])
            ys.append(float(v))
    return xs, ys


def _plot_against_cost(records: list[dict[str, Any]], path: Path) -> None:
    """Held-out accuracy against cumulative FLOPs and tokens (`mentor.cost`): the axis on which runs of different
    cost per step (ADWIN prefixes, EffOPD validation, dynamic sampling) compare."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(COST_AXES), figsize=(4.6 * len(COST_AXES), 3.4), squeeze=False)
    for ax, x_key in zip(axes[0], COST_AXES):
        cost = {0: 0.0}
        for r in records:
            if isinstance(r.get(x_key), (int, float)):
                cost[r["step"]] = float(r[x_key])
        pts = [(cost[r["step"]], r["eval/accuracy"]) for r in records if "eval/accuracy" in r and r["step"] in cost]
        ax.plot([x for x, _ in pts], [y for _, y in pts], marker="o", ms=3)
        ax.set(xlabel=f"{x_key} (cumulative)", ylabel="eval/accuracy", title=f"accuracy vs {x_key.split('/')[1]}")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write_report(run_dir: str | Path) -> Path:
    """Write `report.md` and `plots/*.png` into the run directory; returns the Markdown path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    records = read_jsonl(run_dir / "metrics.jsonl")
    if not records:
        raise FileNotFoundError(f"mentor report: {run_dir / 'metrics.jsonl'} is missing or empty")
    plots = run_dir / "plots"
    plots.mkdir(exist_ok=True)
    lines = [f"# Run report: `{run_dir}`", "", f"{len(records)} logged steps (last step {records[-1]['step']}).", ""]
    drawn = []
    for name, keys in PANELS:
        present = [k for k in keys if _series(records, k)[0]]
        if not present:
            continue
        fig, axes = plt.subplots(1, len(present), figsize=(4.2 * len(present), 3.2), squeeze=False)
        for ax, key in zip(axes[0], present):
            xs, ys = _series(records, key)
            ax.plot(xs, ys, marker="o" if len(xs) < 30 else None, ms=3)
            ax.set_title(key)
            ax.set_xlabel("step")
            ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(plots / f"{name}.png", dpi=90)
        plt.close(fig)
        drawn.append((name, present))

    if _series(records, "eval/accuracy")[0] and _series(records, "cost/flops")[0]:
        _plot_against_cost(records, plots / "accuracy_vs_cost.png")
        drawn.append(("accuracy_vs_cost", []))

    lines += ["| metric | first | last | best |", "|---|---|---|---|"]
    for _, keys in drawn:
        for key in keys:
            _, ys = _series(records, key)
            best = max(ys) if ("acc" in key or "pass" in key or "reward" in key) else min(ys)
            lines.append(f"| {key} | {ys[0]:.4g} | {ys[-1]:.4g} | {best:.4g} |")
    lines.append("")
    for name, _ in drawn:
        lines.append(f"![{name}](plots/{name}.png)")
    out = run_dir / "report.md"
    atomic_write_text(out, "\n".join(lines) + "\n")
    return out
