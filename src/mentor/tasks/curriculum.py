"""Depth curriculum for Composition-RL (specs/composition.md §2.4 "Curriculum", §2.5 defaults).

The paper trains depth 1 → depth 2 → depth 3 in stages, each stage continuing from the previous one [secondary].
mentor makes the stage switch a rule, decided per RL step:

- ``schedule``: a list of ``(step, max_depth)``; from `step` on, the maximum depth is `max_depth` (the last entry
  whose step is ≤ the current step; before the first entry, depth 1 = original prompts).
- ``pass_rate``: starts at `start_depth`; raises the maximum depth by 1 (up to `max_depth`) when the mean of the
  per-step pass rates *at the current maximum depth* over the last `window` steps that had prompts at that depth is
  ≥ `theta_up`, and at least `min_steps` steps have passed since that depth was entered. The pass rate of a step is
  correct / sampled over all rollouts of prompts of that depth. The window is cleared at each raise.

Both rules then draw each prompt's depth from the same mix: with probability `p_current` the current maximum, else
uniform over the depths below it (depth 1 = the original prompt); at maximum depth 1 every prompt stays original.

Pure bookkeeping: no randomness lives here (the caller passes its own `random.Random`), and the whole state is a
JSON-able dict, so a resumed run makes the same decisions as an uninterrupted one.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from ..config import ConfigError

CURRICULA = ("schedule", "pass_rate")


@dataclass
class CurriculumConfig:
    kind: str = "schedule"  # "schedule" | "pass_rate"
    schedule: list[list[int]] = field(default_factory=lambda: [[0, 2]])  # [[step, max_depth], ...], steps increasing
    start_depth: int = 2  # pass_rate: the maximum depth at step 0
    max_depth: int = 3  # pass_rate: never raised above this
    theta_up: float = 0.7  # pass_rate: raise when the windowed pass rate at the current depth is >= this
    window: int = 20  # pass_rate: number of steps (with prompts at the current depth) averaged
    min_steps: int = 50  # pass_rate: steps spent at the current depth before a raise
    p_current: float = 0.5  # probability of drawing the current maximum depth (else uniform below it)

    def __post_init__(self):
        if self.kind not in CURRICULA:
            raise ConfigError(f"curriculum.kind: {self.kind!r} is not allowed; choose one of {list(CURRICULA)}")
        prev = -1
        for i, entry in enumerate(self.schedule):
            if not (isinstance(entry, (list, tuple)) and len(entry) == 2 and all(isinstance(v, int) for v in entry)):
                raise ConfigError(f"curriculum.schedule[{i}]: expected [step, max_depth] integers, got {entry!r}")
            if entry[0] <= prev or entry[1] < 1:
                raise ConfigError(f"curriculum.schedule[{i}]: steps must increase and max_depth be >= 1, got {entry!r}")
            prev = entry[0]
        if self.kind == "schedule" and not self.schedule:
            raise ConfigError("curriculum.schedule: must not be empty for kind=schedule")
        if not 1 <= self.start_depth <= self.max_depth:
            raise ConfigError(f"curriculum: need 1 <= start_depth ({self.start_depth}) <= max_depth ({self.max_depth})")
        if not 0.0 <= self.p_current <= 1.0 or not 0.0 <= self.theta_up <= 1.0:
            raise ConfigError("curriculum: p_current and theta_up must lie in [0, 1]")
        if self.window < 1 or self.min_steps < 0:
            raise ConfigError("curriculum: window must be >= 1 and min_steps >= 0")


class DepthCurriculum:
    """`max_depth(step)`, `sample_depth(step, rng)`, `observe(step, {depth: (correct, total)})`, state dict."""

    def __init__(self, cfg: CurriculumConfig):
        self.cfg = cfg
        self.depth = cfg.start_depth  # pass_rate: current maximum depth
        self.entered = 0  # pass_rate: step at which `depth` was entered
        self.window: list[float] = []  # pass_rate: per-step pass rates at `depth`, most recent last
        self.raises: list[list[int]] = []  # [step, new_depth] of every raise (for logs and tests)

    def max_depth(self, step: int) -> int:
        if self.cfg.kind == "schedule":
            current = 1
            for s, d in self.cfg.schedule:
                if s <= step:
                    current = d
            return current
        return self.depth

    def sample_depth(self, step: int, rng: random.Random) -> int:
        top = self.max_depth(step)
        if top == 1 or rng.random() < self.cfg.p_current:
            return top
        return rng.randint(1, top - 1)

    def observe(self, step: int, counts: dict[int, tuple[int, int]]) -> None:
        """Feed one step's outcomes: depth -> (correct rollouts, sampled rollouts). Raises the depth if due (the raise
        applies from step + 1 on)."""
        if self.cfg.kind != "pass_rate":
            return
        correct, total = counts.get(self.depth, (0, 0))
        if total == 0:
            return
        self.window = (self.window + [correct / total])[-self.cfg.window:]
        spent = step + 1 - self.entered
        if (self.depth < self.cfg.max_depth and len(self.window) == self.cfg.window and spent >= self.cfg.min_steps
                and sum(self.window) / len(self.window) >= self.cfg.theta_up):
            self.depth += 1
            self.entered = step + 1
            self.window = []
            self.raises.append([step, self.depth])

    def state_dict(self) -> dict:
        return {"depth": self.depth, "entered": self.entered, "window": list(self.window),
                "raises": [list(r) for r in self.raises]}

    def load_state_dict(self, state: dict) -> None:
        self.depth, self.entered = int(state["depth"]), int(state["entered"])
        self.window = [float(v) for v in state["window"]]
        self.raises = [list(r) for r in state["raises"]]
