"""Prompt selectors (specs/selection.md): which prompts each training step samples.

Interface (selection.md §2.1): `select(n) -> list[Prompt]`, `update(observations)`, `filter(groups)`,
`state_dict()` / `load_state_dict()`. One dispatch table, `SELECTORS`; one file per selector.
"""

from __future__ import annotations

from dataclasses import dataclass

from .dynamic import DynamicSampling
from .gps import GPS
from .mopps import MoPPS
from .uniform import UniformSelector


@dataclass(frozen=True)
class Observation:
    """What a step observed for one prompt: `successes` of `n_samples` rollouts."""

    prompt_id: str
    successes: int
    n_samples: int
    step: int

    @property
    def pass_rate(self) -> float:
        return self.successes / self.n_samples if self.n_samples else 0.0


SELECTORS = {"uniform": UniformSelector, "dynamic": DynamicSampling, "mopps": MoPPS, "gps": GPS}

__all__ = ["SELECTORS", "Observation", "UniformSelector", "DynamicSampling", "MoPPS", "GPS"]
