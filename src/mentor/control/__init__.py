"""Continuous control: MR.Q and DR.Q (one agent, presets of one `Hyperparameters`), TD3 baseline, MuJoCo/DMC envs.

See `agent.py` for the method and the list of DR.Q flags, `loop.py` for the protocol, `specs/drq.md` for sources.
"""

from .agent import PRESETS, Agent, Hyperparameters, make_hyperparameters
from .td3 import TD3, TD3Hyperparameters

__all__ = ["PRESETS", "Agent", "Hyperparameters", "make_hyperparameters", "TD3", "TD3Hyperparameters"]
