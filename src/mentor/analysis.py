"""Parameter-dynamics diagnostics across a run's checkpoints: `mentor analyze updates RUN_DIR`
(specs/effopd.md §2.3, R8).

The analysis behind EffOPD's "foresight" argument (Cai et al., "Learning to Foresee: Unveiling the Unlocking
Efficiency of On-Policy Distillation", https://arxiv.org/abs/2605.11739, §3; their `Analysis/` scripts): OPD
spends its update on intermediate-layer MLPs, its ΔW is low-rank, and the dominant singular subspaces of an early
update already align with the final one. For every weight W (init W_0, checkpoint W_c, ΔW = W_c − W_0):

| diagnostic | formula |
|---|---|
| relative update norm | ρ = ‖ΔW‖_F / ‖W_0‖_F (by layer × module type: q, k, v, o, gate, up, down, embed, lm_head, norm) |
| update-mass share | ‖ΔW‖_F² / Σ_all ‖ΔW'‖_F², per module type and per layer band (bottom / middle / top third) |
| low-rank concentration | E_k = Σ_{i≤k} σ_i² / Σ_i σ_i², σ the singular values of ΔW, k ∈ {1, 4, 16} |
| effective rank | exp(−Σ_i p_i ln p_i), p_i = σ_i² / Σ_j σ_j² |
| subspace alignment | S = ‖U_cᵀ U_f‖_F² / r, U the top-r left (or right) singular vectors of ΔW_c and ΔW_final |

Choices where the paper gives no formula (ours): the effective rank is Roy & Vetterli's ("The effective rank: a
measure of effective dimensionality", EUSIPCO 2007) entropy measure, but on the normalised *squared* singular
values (the energy distribution E_k also uses) instead of their p_i = σ_i / Σσ_j; it is 1 for a rank-1 update and r
for r equal singular values. S is the mean squared cosine of the r principal angles between the two subspaces:
1 for the same subspace, 0 for orthogonal ones, r / m in expectation for random r-dimensional subspaces of R^m (the
chance level printed in the summary). r is clipped to the matrix's smaller side. SVD metrics apply to 2-D weights;
1-D weights (norms, biases) get ρ and mass shares only. All arithmetic in float64 on CPU.

Inputs: checkpoints `RUN_DIR/ckpt/step_N/model` (safetensors). A training run keeps only the newest
`run.keep_checkpoints` (default 2): set `run.keep_checkpoints=0` (keep all) and a `run.save_every` that resolves
the early steps for this analysis. Initial weights: `--init MODEL`, else the run's `model.path` from
`RUN_DIR/config.yaml` (a `tiny:PRESET` model is rebuilt from `run.seed`, exactly as training built it).
LoRA runs save adapters, not full weights: merge them first (not handled here).

Outputs (default `RUN_DIR/analysis/updates/`): `updates.csv` (one row per checkpoint × tensor), `summary.md`
(tables), `rel_norm.png`, `mass_share.png`, `lowrank.png`, `alignment.png`. With `--early STEP --rescale-out DIR`
also the norm-rescaled early model W_0 + ΔW_early·‖ΔW_final‖_F/‖ΔW_early‖_F (per tensor) as a model directory, to
evaluate with `mentor eval` (the paper's "10 % of training recovers ≈ 80 %" check).
"""

from __future__ import annotations

import argparse
import csv
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

MODULE_TYPES = (("q_proj", "q"), ("k_proj", "k"), ("v_proj", "v"), ("o_proj", "o"), ("gate_proj", "gate"),
                ("up_proj", "up"), ("down_proj", "down"), ("embed", "embed"), ("lm_head", "lm_head"), ("norm", "norm"))
TYPE_ORDER = [t for _, t in MODULE_TYPES] + ["other"]
BANDS = ("bottom", "middle", "top")


# ----------------------------------------------------------------------------- numerics (pure functions)

def module_type(name: str) -> str:
    """q, k, v, o, gate, up, down, embed, lm_head, norm, or other (first matching keyword of the name)."""
    for key, kind in MODULE_TYPES:
        if key in name:
            return kind
    return "other"


def layer_index(name: str) -> int | None:
    m = re.search(r"(?:layers|h|blocks|layer)\.(\d+)\.", name)
    return int(m.group(1)) if m else None


def layer_band(layer: int, n_layers: int) -> str:
    """Bottom / middle / top third of the stack (layer l of L: band floor(3l / L))."""
    if not 0 <= layer < n_layers:
        raise ValueError(f"layer {layer} outside a stack of {n_layers} layers")
    return BANDS[(3 * layer) // n_layers]


def relative_norm(w0: torch.Tensor, w: torch.Tensor) -> float:
    """ρ = ‖W − W_0‖_F / ‖W_0‖_F (inf when W_0 = 0 and W moved)."""
    d = float((w.double() - w0.double()).norm())
    n0 = float(w0.double().norm())
    return d / n0 if n0 > 0 else (0.0 if d == 0 else math.inf)


def singular_values(delta: torch.Tensor) -> torch.Tensor:
    if delta.dim() != 2:
        raise ValueError(f"singular values need a 2-D matrix, got shape {tuple(delta.shape)}")
    return torch.linalg.svdvals(delta.double())


def energy_fraction(s: torch.Tensor, k: int) -> float:
    """E_k = Σ_{i≤k} σ_i² / Σ σ_i² (σ sorted descending); NaN for a zero update."""
    e = s.double().pow(2)
    total = float(e.sum())
    return float(e[:k].sum()) / total if total > 0 else math.nan


def effective_rank(s: torch.Tensor) -> float:
    """exp(entropy of p_i = σ_i² / Σσ²) (module docstring); NaN for a zero update."""
    e = s.double().pow(2)
    total = float(e.sum())
    if total <= 0:
        return math.nan
    p = e[e > 0] / total
    return float(torch.exp(-(p * p.log()).sum()))


def top_singular_subspaces(delta: torch.Tensor, r: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Orthonormal bases (m, r) and (n, r) of the top-r left and right singular vectors of `delta`."""
    U, _, Vh = torch.linalg.svd(delta.double(), full_matrices=False)
    r = min(r, U.shape[1])
    return U[:, :r], Vh[:r].T


def subspace_alignment(A: torch.Tensor, B: torch.Tensor) -> float:
    """S = ‖AᵀB‖_F² / r for orthonormal bases A, B with r columns: the mean squared cosine of the principal angles."""
    if A.shape != B.shape:
        raise ValueError(f"subspace bases of different shapes {tuple(A.shape)} and {tuple(B.shape)}")
    return float((A.double().T @ B.double()).pow(2).sum()) / A.shape[1]


def mass_shares(sq_norms: dict[str, float]) -> dict[str, float]:
    """Each group's share of the total squared update norm."""
    total = sum(sq_norms.values())
    return {k: (v / total if total > 0 else math.nan) for k, v in sq_norms.items()}


def rescaled_early(w0: torch.Tensor, w_early: torch.Tensor, w_final: torch.Tensor) -> torch.Tensor:
    """W_0 + ΔW_early · ‖ΔW_final‖_F / ‖ΔW_early‖_F: the early direction at the final norm (paper §3; W_0 when
    the early update is zero)."""
    d_e = w_early.double() - w0.double()
    n_e = float(d_e.norm())
    scale = float((w_final.double() - w0.double()).norm()) / n_e if n_e > 0 else 0.0
    return (w0.double() + scale * d_e).to(w0.dtype)


# ----------------------------------------------------------------------------- per-checkpoint table

def tensor_rows(init: dict[str, torch.Tensor], states: dict[int, dict[str, torch.Tensor]], *, ks=(1, 4, 16),
                rank: int = 4) -> list[dict[str, Any]]:
    """One row per (checkpoint step, tensor) with ρ, ‖ΔW‖², E_k, effective rank, and alignment S (left/right)
    of that checkpoint's top-`rank` subspaces with the final checkpoint's."""
    if not states:
        raise ValueError("no checkpoints to analyse")
    final_step = max(states)
    names = [n for n in init if n in states[final_step]]
    if not names:
        raise ValueError("the checkpoints share no tensor name with the initial weights (a LoRA adapter checkpoint?)")
    n_layers = 1 + max((layer_index(n) for n in names if layer_index(n) is not None), default=-1)
    final_bases = {}
    for n in names:
        if init[n].dim() == 2:
            d = states[final_step][n].double() - init[n].double()
            if float(d.norm()) > 0:
                final_bases[n] = top_singular_subspaces(d, rank)
    rows = []
    for step in sorted(states):
        for n in names:
            w0, w = init[n], states[step][n]
            if w.shape != w0.shape:
                raise ValueError(f"{n}: shape {tuple(w.shape)} at step {step} but {tuple(w0.shape)} initially")
            layer = layer_index(n)
            row: dict[str, Any] = {"step": step, "name": n, "type": module_type(n), "layer": layer,
                                   "band": layer_band(layer, n_layers) if layer is not None else "",
                                   "rel_norm": relative_norm(w0, w),
                                   "delta_sq": float((w.double() - w0.double()).pow(2).sum())}
            if w0.dim() == 2:
                delta = w.double() - w0.double()
                s = singular_values(delta)
                row.update({f"E{k}": energy_fraction(s, k) for k in ks})
                row["eff_rank"] = effective_rank(s)
                row["rank_used"] = min(rank, *delta.shape)
                if n in final_bases and float(delta.norm()) > 0:
                    U, V = top_singular_subspaces(delta, rank)
                    row["S_left"] = subspace_alignment(U, final_bases[n][0])
                    row["S_right"] = subspace_alignment(V, final_bases[n][1])
                    row["chance_left"] = U.shape[1] / delta.shape[0]
            rows.append(row)
    return rows


def _mean(xs) -> float:
    xs = [x for x in xs if x is not None and not (isinstance(x, float) and math.isnan(x))]
    return float(np.mean(xs)) if xs else math.nan


def summarise(rows: list[dict[str, Any]], ks=(1, 4, 16)) -> dict[str, Any]:
    """Aggregates: per step (means over 2-D tensors), and at the final step ρ by layer × type, mass shares by type
    and band, E_k by type."""
    steps = sorted({r["step"] for r in rows})
    final = [r for r in rows if r["step"] == steps[-1]]
    per_step = []
    for s in steps:
        rs = [r for r in rows if r["step"] == s]
        mats = [r for r in rs if "eff_rank" in r]
        per_step.append({"step": s, "delta_norm": math.sqrt(sum(r["delta_sq"] for r in rs)),
                         "rel_norm": _mean(r["rel_norm"] for r in mats),
                         **{f"E{k}": _mean(r.get(f"E{k}") for r in mats) for k in ks},
                         "eff_rank": _mean(r["eff_rank"] for r in mats),
                         "S_left": _mean(r.get("S_left") for r in mats), "S_right": _mean(r.get("S_right") for r in mats),
                         "chance": _mean(r.get("chance_left") for r in mats)})
    types = [t for t in TYPE_ORDER if any(r["type"] == t for r in final)]
    layers = sorted({r["layer"] for r in final if r["layer"] is not None})
    rel = {(r["layer"], r["type"]): r["rel_norm"] for r in final if r["layer"] is not None}
    by_type = mass_shares({t: sum(r["delta_sq"] for r in final if r["type"] == t) for t in types})
    by_band = mass_shares({b: sum(r["delta_sq"] for r in final if r["band"] == b) for b in BANDS
                           if any(r["band"] == b for r in final)})
    lowrank_by_type = {t: {f"E{k}": _mean(r.get(f"E{k}") for r in final if r["type"] == t) for k in ks}
                       | {"eff_rank": _mean(r.get("eff_rank") for r in final if r["type"] == t)}
                       for t in types if any("eff_rank" in r for r in final if r["type"] == t)}
    align_by_type = {t: [(s, _mean(r.get("S_left") for r in rows if r["step"] == s and r["type"] == t)) for s in steps]
                     for t in lowrank_by_type}
    return {"steps": steps, "per_step": per_step, "types": types, "layers": layers, "rel_norm": rel,
            "mass_by_type": by_type, "mass_by_band": by_band, "lowrank_by_type": lowrank_by_type,
            "align_by_type": align_by_type}


# ----------------------------------------------------------------------------- I/O

def read_weights(model_dir: str | Path) -> dict[str, torch.Tensor]:
    """All tensors of an HF model directory's safetensors files (sharded or not)."""
    from safetensors.torch import load_file

    files = sorted(Path(model_dir).glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{model_dir}: no *.safetensors weights (is this a Hugging Face model directory?)")
    out: dict[str, torch.Tensor] = {}
    for f in files:
        out.update(load_file(str(f)))
    return out


def initial_weights(run_dir: Path | None, init: str | None) -> dict[str, torch.Tensor]:
    """`--init` (a model directory, hub id or tiny:PRESET) or the run's own starting model."""
    from .models import load_model

    seed = 0
    if init is None:
        if run_dir is None or not (run_dir / "config.yaml").exists():
            raise FileNotFoundError("no --init given and no RUN_DIR/config.yaml to read model.path from")
        from .config import load_config

        cfg = load_config(run_dir / "config.yaml")
        init, seed = cfg.model.path, cfg.run.seed
    if Path(init).is_dir():
        return read_weights(init)
    return {k: v.detach().cpu() for k, v in load_model(init, seed=seed).state_dict().items()}


def checkpoint_dirs(target: Path) -> dict[int, Path]:
    """step -> model directory: every `ckpt/step_N/model` of a run, or the single model directory given."""
    if (target / "ckpt").is_dir():
        found = {int(p.name.split("_")[1]): p / "model" for p in (target / "ckpt").iterdir()
                 if p.is_dir() and re.fullmatch(r"step_\d+", p.name) and (p / "model").is_dir()}
        if not found:
            raise FileNotFoundError(f"{target / 'ckpt'}: no complete step_N/model checkpoint")
        return found
    if (target / "config.json").exists():
        m = re.search(r"step_(\d+)", str(target))
        return {int(m.group(1)) if m else 1: target}
    raise FileNotFoundError(f"{target}: neither a run directory (with ckpt/) nor a model directory (with config.json)")


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    cols: list[str] = []
    for r in rows:
        cols += [k for k in r if k not in cols]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        w.writerows(rows)


def _fmt(x) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


def write_summary(summary: dict[str, Any], path: Path, source: str, rank: int, ks=(1, 4, 16)) -> None:
    from .runs import atomic_write_text

    L = [f"# Update diagnostics: {source}", "",
         f"ΔW = W_step − W_0. E_k: energy in the top-k singular values; eff. rank: exp(entropy of σ²/Σσ²); "
         f"S: alignment of each checkpoint's top-{rank} singular subspaces with the final one (1 same, 0 orthogonal; "
         f"chance ≈ r/m). Means over 2-D weights.", "",
         "| step | ‖ΔW‖_F (all) | mean ρ | " + " | ".join(f"E_{k}" for k in ks) + " | eff. rank | S left | S right | chance |",
         "|---:|---:|---:|" + "---:|" * len(ks) + "---:|---:|---:|---:|"]
    for p in summary["per_step"]:
        L.append(f"| {p['step']} | {p['delta_norm']:.4g} | {_fmt(p['rel_norm'])} | "
                 + " | ".join(_fmt(p[f'E{k}']) for k in ks)
                 + f" | {_fmt(p['eff_rank'])} | {_fmt(p['S_left'])} | {_fmt(p['S_right'])} | {_fmt(p['chance'])} |")
    types = [t for t in summary["types"] if any((l, t) in summary["rel_norm"] for l in summary["layers"])]
    L += ["", f"## Relative update norm ρ at step {summary['steps'][-1]} (layer × module)", "",
          "| layer | " + " | ".join(types) + " |", "|---:|" + "---:|" * len(types)]
    for l in summary["layers"]:
        L.append(f"| {l} | " + " | ".join(_fmt(summary["rel_norm"].get((l, t))) for t in types) + " |")
    L += ["", "## Update-mass share (final)", "", "| module type | share |", "|---|---:|"]
    L += [f"| {t} | {v:.1%} |" for t, v in summary["mass_by_type"].items()]
    L += ["", "| layer band | share |", "|---|---:|"] + [f"| {b} | {v:.1%} |" for b, v in summary["mass_by_band"].items()]
    L += ["", "## Low-rank concentration by module type (final)", "",
          "| type | " + " | ".join(f"E_{k}" for k in ks) + " | eff. rank |", "|---|" + "---:|" * (len(ks) + 1)]
    for t, v in summary["lowrank_by_type"].items():
        L.append(f"| {t} | " + " | ".join(_fmt(v[f'E{k}']) for k in ks) + f" | {_fmt(v['eff_rank'])} |")
    L += ["", "![relative norms](rel_norm.png) ![mass](mass_share.png)", "", "![low rank](lowrank.png) ![alignment](alignment.png)"]
    atomic_write_text(path, "\n".join(L) + "\n")


def plot(summary: dict[str, Any], out: Path, ks=(1, 4, 16)) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    types = [t for t in summary["types"] if any((l, t) in summary["rel_norm"] for l in summary["layers"])]
    grid = np.array([[summary["rel_norm"].get((l, t), np.nan) for t in types] for l in summary["layers"]])
    fig, ax = plt.subplots(figsize=(1 + 0.7 * len(types), 1.2 + 0.45 * len(summary["layers"])))
    im = ax.imshow(grid, aspect="auto", cmap="viridis", origin="lower")
    ax.set_xticks(range(len(types)), types)
    ax.set_yticks(range(len(summary["layers"])), summary["layers"])
    ax.set_xlabel("module")
    ax.set_ylabel("layer")
    ax.set_title(f"ρ = ‖ΔW‖/‖W₀‖ at step {summary['steps'][-1]}")
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    fig.savefig(out / "rel_norm.png", dpi=90)
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for ax, (title, d) in zip(axes, [("by module type", summary["mass_by_type"]), ("by layer band", summary["mass_by_band"])]):
        ax.bar(list(d), list(d.values()))
        ax.set_title(f"update-mass share {title}")
        ax.tick_params(axis="x", rotation=45)
    fig.tight_layout()
    fig.savefig(out / "mass_share.png", dpi=90)
    plt.close(fig)

    steps = summary["steps"]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for k in ks:
        axes[0].plot(steps, [p[f"E{k}"] for p in summary["per_step"]], marker="o", label=f"E_{k}")
    axes[0].set_ylim(0, 1.02)
    axes[0].set_title("energy in the top-k singular values (mean)")
    axes[1].plot(steps, [p["eff_rank"] for p in summary["per_step"]], marker="o")
    axes[1].set_title("effective rank of ΔW (mean)")
    for ax in axes:
        ax.set_xlabel("step")
        ax.set_xscale("log")
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(out / "lowrank.png", dpi=90)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    for t, curve in summary["align_by_type"].items():
        ax.plot([s for s, _ in curve], [v for _, v in curve], marker=".", label=t)
    ax.plot(steps, [p["chance"] for p in summary["per_step"]], ls="--", c="gray", label="chance")
    ax.set_xscale("log")
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("checkpoint step")
    ax.set_ylabel("S (left, vs final)")
    ax.set_title("subspace alignment with the final update")
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "alignment.png", dpi=90)
    plt.close(fig)


# ----------------------------------------------------------------------------- CLI

def write_rescaled_model(init: dict[str, torch.Tensor], early: dict[str, torch.Tensor], final_dir: Path,
                         out: Path) -> Path:
    """Save W_0 + ΔW_early·‖ΔW_final‖/‖ΔW_early‖ (per tensor; `rescaled_early`) as an HF model directory, built on
    the final checkpoint's config and tokenizer, for `mentor eval` (the paper's early lock-in check)."""
    from transformers import AutoModelForCausalLM

    from .models import load_tokenizer, save_model

    model = AutoModelForCausalLM.from_pretrained(final_dir)
    final = read_weights(final_dir)
    new = {n: rescaled_early(init[n], early[n], final[n]) for n in final if n in init and n in early}
    missing, unexpected = model.load_state_dict(new, strict=False)
    if unexpected:
        raise ValueError(f"rescaled weights do not fit the model: unexpected {unexpected[:3]}")
    model.tie_weights()
    return save_model(model, load_tokenizer(str(final_dir)), out)


def analyze_updates(target: str | Path, *, init: str | None = None, out: str | Path | None = None, rank: int = 4,
                    ks=(1, 4, 16), steps: list[int] | None = None, early: int | None = None,
                    rescale_out: str | Path | None = None) -> Path:
    """Analyse a run directory (or one model directory with `init`); returns the output directory. `early`
    restricts the analysis to that checkpoint and the final one; `rescale_out` also writes the norm-rescaled
    early model (needs `early`)."""
    target = Path(target)
    dirs = checkpoint_dirs(target)
    if early is not None:
        if early not in dirs:
            raise ValueError(f"--early: no checkpoint for step {early} (have {sorted(dirs)})")
        steps = sorted({early, max(dirs)})
    elif rescale_out is not None:
        raise ValueError("--rescale-out needs --early STEP (the checkpoint whose direction is rescaled)")
    if steps:
        missing = sorted(set(steps) - set(dirs))
        if missing:
            raise ValueError(f"--steps: no checkpoint for step {missing[0]} (have {sorted(dirs)})")
        dirs = {s: dirs[s] for s in steps}
    run_dir = target if (target / "ckpt").is_dir() else None
    w0 = initial_weights(run_dir, init)
    states = {s: read_weights(d) for s, d in sorted(dirs.items())}
    rows = tensor_rows(w0, states, ks=ks, rank=rank)
    out = Path(out) if out else (run_dir or target.parent) / "analysis" / "updates"
    out.mkdir(parents=True, exist_ok=True)
    write_csv(rows, out / "updates.csv")
    summary = summarise(rows, ks)
    write_summary(summary, out / "summary.md", str(target), rank, ks)
    plot(summary, out, ks)
    if rescale_out is not None:
        path = write_rescaled_model(w0, states[early], dirs[max(dirs)], Path(rescale_out))
        print(f"norm-rescaled step-{early} model: {path} (evaluate it with `mentor eval {path} ...`)")
    return out


def main(argv: list[str] | None = None) -> int:
    """`mentor analyze updates RUN_DIR|MODEL_DIR [--init MODEL] [--rank R] [--topk 1,4,16] [--steps 1,2,4]
    [--early STEP [--rescale-out DIR]] [--out DIR]`; argv starts with the sub-command ("updates")."""
    p = argparse.ArgumentParser(prog="mentor analyze", description="parameter-dynamics diagnostics of training runs")
    sub = p.add_subparsers(dest="what", required=True)
    u = sub.add_parser("updates", help="per-module update norms, low-rank concentration, subspace alignment")
    u.add_argument("target", help="run directory (its ckpt/step_N/model checkpoints) or one HF model directory")
    u.add_argument("--init", help="initial weights: model directory, hub id or tiny:PRESET (default: the run's model.path)")
    u.add_argument("--rank", type=int, default=4, help="r of the top-r singular subspaces compared (default 4)")
    u.add_argument("--topk", default="1,4,16", help="k values of the energy fractions E_k (default 1,4,16)")
    u.add_argument("--steps", help="comma-separated checkpoint steps to use (default: all)")
    u.add_argument("--early", type=int, help="compare only this checkpoint step with the final one")
    u.add_argument("--rescale-out", help="with --early: write W_0 + ΔW_early·‖ΔW_final‖/‖ΔW_early‖ here as a model")
    u.add_argument("--out", help="output directory (default RUN_DIR/analysis/updates)")
    args = p.parse_args(argv)
    try:
        ks = tuple(int(k) for k in args.topk.split(","))
        steps = [int(s) for s in args.steps.split(",")] if args.steps else None
    except ValueError:
        p.error("--topk and --steps take comma-separated integers")
    if args.rank < 1 or any(k < 1 for k in ks):
        p.error("--rank and --topk values must be >= 1")
    try:
        out = analyze_updates(args.target, init=args.init, out=args.out, rank=args.rank, ks=ks, steps=steps,
                              early=args.early, rescale_out=args.rescale_out)
    except (FileNotFoundError, ValueError) as e:
        print(f"mentor analyze updates: {e}")
        return 2
    print(f"update diagnostics: {out / 'summary.md'}")
    return 0
