"""`dynamic`: DAPO dynamic sampling (Yu et al. 2025, arXiv:2503.14476; verl `filter_groups`).

Oversample prompts, sample and score their groups, keep only informative groups — for binary rewards
0 < #correct < G, in general std_G(R) > 0 (OpenRLHF PR #1272) — and refill for at most `max_rounds` rounds
until `n` groups are kept. Every sampled rollout counts in `rollouts_spent`, kept or not.

The inner selector that proposes each round's prompts is any entry of `SELECTORS` (selection.md R2), chosen with
`rl.selector_args: {inner: mopps, inner_args: {...}}` (default `uniform`). A learning inner selector is updated
after every round, so a refill round sees the previous round's outcomes; `DynamicSampling.update` (called by the
training loop with every group `fill` sampled) is then a no-op, so nothing is counted twice.

Departures / choices: surplus informative groups beyond `n` are dropped
(verl's behaviour); when the rounds run out with fewer than `n` groups, `on_exhaust="train_partial"` trains on
what was kept (the loss normaliser counts only kept groups, so nothing is rescaled silently), `"error"` stops
the run as verl does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from ..config import ConfigError, from_dict
from ..types import Prompt


@dataclass
class DynamicConfig:
    inner: str = "uniform"  # the selector proposing each round's prompts (`SELECTORS`, not `dynamic`)
    inner_args: dict[str, Any] = field(default_factory=dict)  # its own settings
    success_threshold: float = 1.0  # reward >= this counts as a success in the inner selector's observations


def informative(rewards: Sequence[float]) -> bool:
    """A group teaches something only if its rewards are not all equal."""
    return len(rewards) > 1 and max(rewards) > min(rewards)


class DynamicSampling:
    def __init__(self, pool: list[Prompt], seed: int = 0, max_rounds: int = 4, oversample: float = 2.0,
                 on_exhaust: str = "train_partial", args: dict | None = None, **_: Any):
        if max_rounds < 1:
            raise ValueError(f"rl.dynamic_max_rounds must be >= 1, got {max_rounds}")
        if oversample < 1.0:
            raise ValueError(f"rl.dynamic_oversample must be >= 1, got {oversample}")
        from . import SELECTORS, Observation

        self.cfg: DynamicConfig = from_dict(DynamicConfig, args or {}, "rl.selector_args")
        if self.cfg.inner not in SELECTORS or self.cfg.inner == "dynamic":
            raise ConfigError(f"rl.selector_args.inner: {self.cfg.inner!r}; choose one of {sorted(set(SELECTORS) - {'dynamic'})}")
        self.inner = SELECTORS[self.cfg.inner](pool, seed=seed, args=self.cfg.inner_args)
        self._observation, self.rounds_done = Observation, 0
        self.max_rounds, self.oversample, self.on_exhaust = max_rounds, oversample, on_exhaust

    def select(self, n: int) -> list[Prompt]:
        return self.inner.select(n)

    def fill(self, n: int, sample_and_score: Callable[[list[Prompt]], list[Any]], rewards_of: Callable[[Any], Sequence[float]]):
        """Run the DAPO loop: returns (kept groups, metrics, every sampled group). `sample_and_score(prompts)`
        returns one group per prompt; `rewards_of(group)` its rewards. All sampled groups are returned so that
        outcome-learning selectors can `update` on dropped groups too."""
        kept, seen, spent, drawn, rounds = [], [], 0, 0, 0
        while len(kept) < n and rounds < self.max_rounds:
            want = n - len(kept)
            prompts = self.inner.select(max(want, int(round(want * self.oversample))))
            groups = sample_and_score(prompts)
            seen.extend(groups)
            t = self.cfg.success_threshold
            self.inner.update([self._observation(p.id, sum(r >= t for r in rewards_of(g)), len(rewards_of(g)), self.rounds_done)
                               for p, g in zip(prompts, groups)])
            self.rounds_done += 1
            rounds += 1
            drawn += len(groups)
            spent += sum(len(rewards_of(g)) for g in groups)
            kept.extend(g for g in groups if informative(rewards_of(g)))
        if len(kept) < n and self.on_exhaust == "error":
            raise RuntimeError(f"dynamic sampling: only {len(kept)} of {n} informative groups after {rounds} rounds")
        metrics = {"dynamic/rounds": rounds, "dynamic/groups_drawn": drawn, "dynamic/rollouts_spent": spent,
                   "dynamic/kept_fraction": len(kept) / drawn if drawn else 0.0, "dynamic/groups_kept": min(len(kept), n)}
        return kept[:n], metrics, seen

    def update(self, observations) -> None:
        """No-op: the inner selector already learnt from every round inside `fill`."""

    def metrics(self) -> dict[str, float]:
        return self.inner.metrics() if hasattr(self.inner, "metrics") else {}

    def state_dict(self) -> dict[str, Any]:
        return {"inner": self.inner.state_dict(), "rounds_done": self.rounds_done}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.inner.load_state_dict(state["inner"])
        self.rounds_done = state["rounds_done"]
