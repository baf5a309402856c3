"""Step controllers (DESIGN.md §2): components that act around the learner step — a rollout horizon (ADWIN),
extrapolation along the update direction (EffOPD), a curriculum.

A controller is built as `CONTROLLERS[name](cfg, ctx)` where `cfg` is `TrainConfig` (its own settings come from
`cfg.controller_args[name]`, parsed by the controller with `mentor.config.from_dict` into its own dataclass, key
path `controller_args.NAME`) and `ctx` is a `ControllerContext`. It has:

- `before_step(step, ctx) -> dict` — e.g. set the sampling horizon for this step;
- `after_step(step, ctx, metrics) -> dict` — after the optimizer step, e.g. extrapolate weights; returns metrics
  to log (prefixed with the controller's name by convention);
- `state_dict()` / `load_state_dict(state)` — saved in every checkpoint, restored on `--resume`.

The dispatch table is `CONTROLLERS`; each controller lives in its own file here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable


@dataclass
class ControllerContext:
    """What a controller may touch: the live model and optimizer, the stepper (its sampler, scorer, selector),
    the tokenizer, the training and held-out prompts, the run directory, and the device."""

    model: Any
    optimizer: Any
    stepper: Any
    tokenizer: Any
    train_prompts: list
    eval_prompts: list
    run_dir: Any
    device: Any


from .adwin import AdwinController  # noqa: E402  (after ControllerContext, which controllers may import)
from .effopd import EffOPDController  # noqa: E402

CONTROLLERS: dict[str, Callable[..., Any]] = {"adwin": AdwinController, "effopd": EffOPDController}


def build_controllers(cfg, ctx: ControllerContext) -> list:
    from ..config import ConfigError

    unknown = [n for n in cfg.controllers if n not in CONTROLLERS]
    if unknown:
        raise ConfigError(f"controllers: {unknown[0]!r} is not a controller; choose from {sorted(CONTROLLERS)}")
    extra = sorted(set(cfg.controller_args) - set(cfg.controllers))
    if extra:
        raise ConfigError(f"controller_args.{extra[0]}: that controller is not enabled in `controllers`")
    return [(name, CONTROLLERS[name](cfg, ctx)) for name in cfg.controllers]
