"""`uniform`: shuffled epochs over the prompt pool, seeded, with a resumable cursor (selection.md §2.2)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..types import Prompt


class UniformSelector:
    def __init__(self, pool: list[Prompt], seed: int = 0, args: dict | None = None, **_: Any):
        if args:
            raise ValueError(f"rl.selector_args: uniform takes no settings, got {sorted(args)}")
        if not pool:
            raise ValueError("selector: the prompt pool is empty")
        self.pool, self.seed = pool, seed
        self.epoch, self.index = 0, 0

    def select(self, n: int) -> list[Prompt]:
        out: list[Prompt] = []
        while len(out) < n:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(len(self.pool))
            take = order[self.index : self.index + n - len(out)]
            out.extend(self.pool[int(i)] for i in take)
            self.index += len(take)
            if self.index >= len(self.pool):
                self.epoch, self.index = self.epoch + 1, 0
        return out

    def update(self, observations) -> None:
        """Uniform selection ignores outcomes."""

    def filter(self, groups):
        return groups, [], {}

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "index": self.index}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch, self.index = state["epoch"], state["index"]
