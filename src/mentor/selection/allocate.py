"""Test-time sample allocation from predicted difficulty (GPS, arXiv:2602.01970, test-time use; selection.md §2.5).

Given predicted pass rates p̂_τ and a budget of N samples, give each next sample to the prompt with the largest
marginal gain in expected solved prompts, p̂_τ (1 − p̂_τ)^{n_τ} (the chance that sample n_τ + 1 is the first
success), optionally capping n_τ. The greedy choice is optimal for this separable concave objective.
`allocate_and_eval` samples accordingly with `mentor.evaluate.evaluate` and reports pass@budget (a prompt counts
as solved if any of its samples is correct) next to uniform allocation of the same budget, overall and per
predicted-difficulty bin (easy p̂ ≥ 0.7, challenging 0.1 ≤ p̂ < 0.7, hard p̂ < 0.1).

Departures [our design]: the paper bins prompts by predicted difficulty; we allocate by the exact marginal gain
(bins only for the report). Predictions of 0 give no gain: such prompts get samples only once every other gain
is 0 too (ties go to the lower index).
"""

from __future__ import annotations

import heapq
from pathlib import Path
from typing import Any

import numpy as np

from ..types import Prompt

BINS = (("hard", 0.0, 0.1), ("challenging", 0.1, 0.7), ("easy", 0.7, 1.0 + 1e-9))


def allocate(p_hat, budget: int, cap: int | None = None) -> list[int]:
    """Samples per prompt maximising Σ_τ 1 − (1 − p̂_τ)^{n_τ} subject to Σ n_τ = budget (n_τ ≤ cap)."""
    p = np.asarray(p_hat, dtype=np.float64)
    if p.ndim != 1 or len(p) == 0:
        raise ValueError(f"allocate: p_hat must be a non-empty 1-D sequence, got shape {p.shape}")
    if np.any((p < 0) | (p > 1)) or np.any(np.isnan(p)):
        raise ValueError("allocate: predicted pass rates must lie in [0, 1]")
    if budget < 0:
        raise ValueError(f"allocate: budget must be >= 0, got {budget}")
    if cap is not None and cap * len(p) < budget:
        raise ValueError(f"allocate: budget {budget} exceeds cap {cap} x {len(p)} prompts")
    n = [0] * len(p)
    heap = [(-float(p[i]), i) for i in range(len(p))]  # (−gain, index): ties to the lower index
    heapq.heapify(heap)
    for _ in range(budget):
        _, i = heapq.heappop(heap)
        n[i] += 1
        if cap is None or n[i] < cap:
            heapq.heappush(heap, (-float(p[i] * (1 - p[i]) ** n[i]), i))
    return n


def uniform_allocation(n_prompts: int, budget: int) -> list[int]:
    """budget // n samples each; the remainder goes one each to the first prompts."""
    q, r = divmod(budget, n_prompts)
    return [q + (i < r) for i in range(n_prompts)]


def difficulty_bin(p: float) -> str:
    return next(name for name, lo, hi in BINS if lo <= p < hi)


def sample_counts(model, tokenizer, prompts: list[Prompt], counts: list[int], *, temperature: float = 1.0,
                  max_new_tokens: int = 128, template: str = "{prompt}", batch_size: int = 256, seed: int = 0) -> list[int]:
    """Number of correct samples per prompt when prompt i gets counts[i] samples (one `evaluate` call per count)."""
    from ..evaluate import evaluate

    correct = [0] * len(prompts)
    for k in sorted(set(c for c in counts if c > 0)):
        idx = [i for i, c in enumerate(counts) if c == k]
        res = evaluate(model, tokenizer, [prompts[i] for i in idx], k=k, greedy=False, temperature=temperature,
                       max_new_tokens=max_new_tokens, template=template, batch_size=batch_size, seed=seed + k)
        for i, item in zip(idx, res.items):
            correct[i] = int(sum(item["correct"]))
    return correct


def allocate_and_eval(model, tokenizer, prompts: list[Prompt], budget: int, predictor=None, *, cap: int | None = None,
                      temperature: float = 1.0, max_new_tokens: int = 128, template: str = "{prompt}",
                      batch_size: int = 256, seed: int = 0) -> dict[str, Any]:
    """pass@budget with predicted-difficulty allocation (when `predictor` has `predict(prompts) -> p̂`) and with
    uniform allocation of the same budget, overall and per predicted-difficulty bin."""
    if not prompts:
        raise ValueError("allocate_and_eval: no prompts")
    kw = dict(temperature=temperature, max_new_tokens=max_new_tokens, template=template, batch_size=batch_size, seed=seed)
    uni = uniform_allocation(len(prompts), budget)
    out: dict[str, Any] = {"budget": budget, "prompts": len(prompts)}
    arms = {"uniform": uni}
    p_hat = None
    if predictor is not None:
        p_hat = np.asarray(predictor.predict(prompts), dtype=np.float64)
        arms["predicted"] = allocate(p_hat, budget, cap)
    for name, counts in arms.items():
        correct = sample_counts(model, tokenizer, prompts, counts, **kw)
        solved = [c > 0 for c in correct]
        res = {"accuracy": float(np.mean(solved)), "samples": int(sum(counts)), "counts": counts}
        if p_hat is not None:
            res["bins"] = {b: {"prompts": int(sum(difficulty_bin(q) == b for q in p_hat)),
                               "samples": int(sum(c for c, q in zip(counts, p_hat) if difficulty_bin(q) == b)),
                               "accuracy": float(np.mean([s for s, q in zip(solved, p_hat) if difficulty_bin(q) == b]))
                               if any(difficulty_bin(q) == b for q in p_hat) else float("nan")}
                           for b, _, _ in BINS}
        out[name] = res
    if p_hat is not None:
        out["p_hat_mean"] = float(p_hat.mean())
        out["gain"] = out["predicted"]["accuracy"] - out["uniform"]["accuracy"]
    return out


def load_predictor(checkpoint: str | Path, selector_args: dict | None = None):
    """A GPS predictor from a training checkpoint (`runs/<run>/ckpt/step_N` or its `trainer.pt`): the model
    weights and the history summary the run ended with. `selector_args` must match the run's (featuriser, sizes)."""
    import torch

    from .gps import GPS

    path = Path(checkpoint)
    path = path / "trainer.pt" if path.is_dir() else path
    if not path.exists():
        raise ValueError(f"--allocate: no checkpoint at {path}")
    state = torch.load(path, weights_only=False)
    sel = state.get("stepper", {}).get("selector", state)
    if "model" not in sel or "history_texts" not in sel:
        raise ValueError(f"--allocate: {path} holds no GPS selector state (was the run's rl.selector gps?)")
    texts = [t for b in sel["history_texts"] for t in b] or [""]
    pool = [Prompt(id=f"h{i}", text=t) for i, t in enumerate(texts)]
    g = GPS(pool, args=selector_args)
    g.model.load_state_dict(sel["model"])
    pos = 0
    for b, rates in zip(sel["history_texts"], (h[1] for h in sel["history"])):
        g.history.append((list(range(pos, pos + len(b))), list(rates)))
        pos += len(b)
    g.n_updates = sel["n_updates"]
    return g
