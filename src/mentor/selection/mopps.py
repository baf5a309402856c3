"""`mopps`: Model Predictive Prompt Selection (Qu et al. 2025, "Can Prompt Difficulty be Online Predicted for
Accelerating RL Finetuning of Reasoning Models?", arXiv:2507.04632; code thu-rllab/MoPPS `recipe/ours/mopps.py`).

Each prompt τ carries a Beta(α_τ, β_τ) posterior over its pass rate. After a group of k rollouts with pass rate s:

    α ← λ·α + (1−λ)·α0 + k·s        β ← λ·β + (1−λ)·β0 + k·(1−s)        (λ = decay; 1 = no forgetting)

Selection draws `ts_ratio·B` candidates uniformly, samples γ̂_τ ~ Beta(α_τ, β_τ) (Thompson sampling with the
selector's seeded RNG) and keeps the B candidates with the smallest (γ̂_τ − γ*)² (`topk`), or those with
γ̂_τ ∈ [lower, upper] (`threshold`).

Departures / choices: the verl-recipe quirk that sets α = β = 8 when n = 1 is not reproduced (selection.md §2.4);
`threshold` fills a short batch with the remaining candidates closest to γ* (the reference code's behaviour on
a short batch is not documented); `thompson: false` ranks by posterior means (deterministic; used in tests);
prompts seen several times in one update are updated in order. `bandit_init` warm-starts from a JSONL of offline
counts (`{"id", "successes", "failures"}` per line): α = scale·successes + α0, β = scale·failures + β0 (scale 3
as in the code).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..config import ConfigError, from_dict
from ..types import Prompt


@dataclass
class MoPPSConfig:
    alpha0: float = 1.0  # Beta prior α0
    beta0: float = 1.0  # Beta prior β0
    decay: float = 1.0  # λ: weight kept on the old posterior per update (1 = no forgetting)
    target: float = 0.5  # γ*: the pass rate selection aims at
    ts_ratio: float = 16.0  # candidates drawn per selected prompt
    strategy: str = "topk"  # topk | threshold
    lower: float = 0.3  # threshold strategy: keep γ̂ >= lower
    upper: float = 0.7  # threshold strategy: keep γ̂ <= upper
    thompson: bool = True  # False: rank by posterior means instead of Thompson samples
    bandit_init: str | None = None  # JSONL of offline counts {"id", "successes", "failures"}
    bandit_init_scale: float = 3.0  # weight of the offline counts

    def __post_init__(self):
        if self.alpha0 <= 0 or self.beta0 <= 0:
            raise ConfigError(f"rl.selector_args: mopps alpha0/beta0 must be > 0, got {self.alpha0}, {self.beta0}")
        if not 0.0 <= self.decay <= 1.0:
            raise ConfigError(f"rl.selector_args.decay: must be in [0, 1], got {self.decay}")
        if self.ts_ratio < 1:
            raise ConfigError(f"rl.selector_args.ts_ratio: must be >= 1, got {self.ts_ratio}")
        if self.strategy not in ("topk", "threshold"):
            raise ConfigError(f"rl.selector_args.strategy: {self.strategy!r}; choose 'topk' or 'threshold'")
        if not 0.0 <= self.lower <= self.upper <= 1.0:
            raise ConfigError(f"rl.selector_args: need 0 <= lower <= upper <= 1, got {self.lower}, {self.upper}")


# ----------------------------------------------------------------------------- ALGO LOGIC (pure)

def beta_update(alpha: float, beta: float, k: int, s: float, decay: float, alpha0: float, beta0: float) -> tuple[float, float]:
    """One discounted Beta–Bernoulli update with k rollouts of pass rate s."""
    return (decay * alpha + (1 - decay) * alpha0 + k * s,
            decay * beta + (1 - decay) * beta0 + k * (1 - s))


def closest_to_target(gamma_C: np.ndarray, n: int, target: float) -> np.ndarray:
    """Positions of the n values closest to `target` (ties: lower position first)."""
    return np.argsort((gamma_C - target) ** 2, kind="stable")[:n]


def threshold_pick(gamma_C: np.ndarray, n: int, lower: float, upper: float, target: float) -> np.ndarray:
    """Positions with γ̂ in [lower, upper] in candidate order, then the others closest to target, n in all."""
    inside = [i for i in range(len(gamma_C)) if lower <= gamma_C[i] <= upper]
    if len(inside) >= n:
        return np.array(inside[:n], dtype=np.int64)
    rest = [int(i) for i in closest_to_target(gamma_C, len(gamma_C), target) if int(i) not in set(inside)]
    return np.array(inside + rest[: n - len(inside)], dtype=np.int64)


# ----------------------------------------------------------------------------- selector

class MoPPS:
    def __init__(self, pool: list[Prompt], seed: int = 0, args: dict | None = None, **_: Any):
        if not pool:
            raise ValueError("selector: the prompt pool is empty")
        self.cfg: MoPPSConfig = from_dict(MoPPSConfig, args or {}, "rl.selector_args")
        self.pool = pool
        self.index = {p.id: i for i, p in enumerate(pool)}
        if len(self.index) != len(pool):
            raise ValueError("mopps: prompt ids in the pool are not unique")
        self.alpha = np.full(len(pool), self.cfg.alpha0)
        self.beta = np.full(len(pool), self.cfg.beta0)
        self.rng = np.random.default_rng(seed)
        self.last: dict[str, float] = {}
        if self.cfg.bandit_init:
            self._bandit_init(Path(self.cfg.bandit_init))

    def _bandit_init(self, path: Path) -> None:
        c = self.cfg
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                i, succ, fail = self.index.get(row["id"]), float(row["successes"]), float(row["failures"])
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
                raise ValueError(f"{path}:{lineno}: bandit_init needs {{'id', 'successes', 'failures'}}: {e}") from None
            if i is not None:
                self.alpha[i] = c.bandit_init_scale * succ + c.alpha0
                self.beta[i] = c.bandit_init_scale * fail + c.beta0

    def posterior_mean(self) -> np.ndarray:
        return self.alpha / (self.alpha + self.beta)

    def select(self, n: int) -> list[Prompt]:
        c, N = self.cfg, len(self.pool)
        C = self.rng.choice(N, size=min(N, max(n, int(round(c.ts_ratio * n)))), replace=False)
        gamma_C = self.rng.beta(self.alpha[C], self.beta[C]) if c.thompson else self.posterior_mean()[C]
        pos = (closest_to_target(gamma_C, n, c.target) if c.strategy == "topk"
               else threshold_pick(gamma_C, n, c.lower, c.upper, c.target))
        self.last = {"mopps/sampled_gamma_mean": float(gamma_C[pos].mean()), "mopps/candidates": float(len(C))}
        return [self.pool[int(C[p])] for p in pos]

    def update(self, observations) -> None:
        c = self.cfg
        for o in observations:
            i = self.index.get(o.prompt_id)
            if i is None:
                raise ValueError(f"mopps.update: prompt {o.prompt_id!r} is not in the pool")
            if o.n_samples <= 0:
                raise ValueError(f"mopps.update: prompt {o.prompt_id!r} has n_samples={o.n_samples}")
            self.alpha[i], self.beta[i] = beta_update(self.alpha[i], self.beta[i], o.n_samples, o.pass_rate,
                                                      c.decay, c.alpha0, c.beta0)

    def predict(self, prompts: list[Prompt]) -> np.ndarray:
        """Posterior-mean pass rates; prompts outside the pool get the prior mean (MoPPS cannot generalise)."""
        m = self.posterior_mean()
        prior = self.cfg.alpha0 / (self.cfg.alpha0 + self.cfg.beta0)
        return np.array([m[self.index[p.id]] if p.id in self.index else prior for p in prompts])

    def metrics(self) -> dict[str, float]:
        return dict(self.last)

    def filter(self, groups):
        return groups, [], {}

    def state_dict(self) -> dict[str, Any]:
        return {"alpha": self.alpha.tolist(), "beta": self.beta.tolist(), "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.alpha, self.beta = np.array(state["alpha"]), np.array(state["beta"])
        self.rng.bit_generator.state = state["rng"]
