"""Environments for `mentor control`: gymnasium MuJoCo and the DeepMind Control Suite, MR.Q's preprocessing.

Names:
- `Gym-HalfCheetah-v5` (or plain `HalfCheetah-v5`, any gymnasium id with a Box action space): raw observations,
  no action repeat, the environment's own time limit (1,000 steps on MuJoCo).
- `Dmc-cheetah-run`: proprioceptive DMC, observations flattened in key order, action repeat 2 (rewards summed),
  500 agent steps (1,000 frames) per episode, truncation only.
- `Dmc-visual-walker-run`: 84×84 RGB from camera 0 (2 for quadruped), channels-first, 3-frame stack (9 channels),
  action repeat 2, uint8.

Every environment takes actions normalised to [−1, 1] and maps them to its own box. Episodes are seeded once
(`seed`); later resets continue the environment's RNG, whose state `rng_state()`/`set_rng_state()` save and
restore so that a run resumed at an episode boundary sees the same episodes. dm-control comes with the `control`
extra, which pins mujoco < 4: the current dm-control release (1.0.50) does not load with mujoco 4.0 (missing
`MjModel.flex_vertedge`); a missing or broken dm-control gives a clear error. Pixel observations render headless
through EGL unless `MUJOCO_GL` says otherwise (as MR.Q's and DrQ-v2's code do).
"""

from __future__ import annotations

import collections
import os
import warnings
from typing import Any

import numpy as np

os.environ.setdefault("MUJOCO_GL", "egl")  # dm_control reads it once, at its first import: set before any import of it


class ControlEnv:
    """Minimal interface the loop uses: `reset() -> obs`, `step(a) -> (obs, reward, terminated, truncated)`."""

    name: str
    state_shape: tuple[int, ...]
    action_dim: int
    pixel_obs: bool

    def reset(self) -> np.ndarray: ...

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool]: ...

    def rng_state(self) -> Any: ...

    def set_rng_state(self, state: Any) -> None: ...


def _check_action(action: np.ndarray, action_dim: int, env_name: str) -> np.ndarray:
    a = np.asarray(action, dtype=np.float64).reshape(-1)
    if a.shape[0] != action_dim or not np.all(np.isfinite(a)):
        raise ValueError(f"{env_name}: action must be {action_dim} finite numbers in [-1, 1], got {action!r}")
    return np.clip(a, -1.0, 1.0)


class GymEnv(ControlEnv):
    def __init__(self, env_id: str, seed: int):
        import gymnasium as gym

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                self.env = gym.make(env_id)
            except gym.error.Error as e:
                raise ValueError(f"unknown gymnasium environment {env_id!r}: {e}") from e
        if not isinstance(self.env.action_space, gym.spaces.Box):
            raise ValueError(f"{env_id}: only continuous (Box) action spaces are supported, got {self.env.action_space}")
        self.name, self.pixel_obs = env_id, False
        self.state_shape = tuple(self.env.observation_space.shape)
        self.action_dim = int(np.prod(self.env.action_space.shape))
        self.low, self.high = self.env.action_space.low.astype(np.float64), self.env.action_space.high.astype(np.float64)
        self._seed: int | None = seed
        self.env.action_space.seed(seed)

    def reset(self) -> np.ndarray:
        obs, _ = self.env.reset(seed=self._seed)
        self._seed = None
        return np.asarray(obs, dtype=np.float32)

    def step(self, action):
        a = _check_action(action, self.action_dim, self.name)
        obs, r, term, trunc, _ = self.env.step(self.low + (a + 1.0) * 0.5 * (self.high - self.low))
        return np.asarray(obs, dtype=np.float32), float(r), bool(term), bool(trunc)

    def rng_state(self):
        return {"seed": self._seed, "np_random": self.env.unwrapped.np_random.bit_generator.state}

    def set_rng_state(self, state) -> None:
        self._seed = state["seed"]
        if self._seed is None:  # the env was reset before: restore its generator (creating it by a first reset)
            self.env.reset(seed=0)
            self.env.unwrapped.np_random.bit_generator.state = state["np_random"]


class DmcEnv(ControlEnv):
    def __init__(self, domain: str, task: str, seed: int, visual: bool, action_repeat: int = 2, frame_stack: int = 3,
                 episode_frames: int = 1000, image_size: int = 84):
        try:
            from dm_control import suite

            self.env = suite.load(domain, task, task_kwargs={"random": seed})
        except ImportError as e:
            raise RuntimeError("Dmc-* environments need dm-control (`pip install dm-control`), which is not installed") from e
        except AttributeError as e:
            raise RuntimeError(f"dm-control is installed but does not work with this mujoco version ({e}); "
                               "install a matching pair (e.g. dm-control 1.0.x with the mujoco it pins)") from e
        except ValueError as e:
            raise ValueError(f"unknown DMC task {domain}-{task}: {e}") from e
        self.name = f"Dmc-{'visual-' if visual else ''}{domain}-{task}"
        self.pixel_obs, self.action_repeat, self.frame_stack, self.image_size = visual, action_repeat, frame_stack, image_size
        self.max_steps = episode_frames // action_repeat
        self.camera = 2 if domain == "quadruped" else 0
        spec = self.env.action_spec()
        self.low, self.high = spec.minimum.astype(np.float64), spec.maximum.astype(np.float64)
        self.action_dim = int(np.prod(spec.shape))
        self.frames: collections.deque = collections.deque(maxlen=frame_stack)
        if visual:
            self.state_shape = (3 * frame_stack, image_size, image_size)
        else:
            self.state_shape = (sum(int(np.prod(v.shape)) for v in self.env.observation_spec().values()),)
        self.t = 0

    def _obs(self, ts) -> np.ndarray:
        if not self.pixel_obs:
            return np.concatenate([np.asarray(v, dtype=np.float32).reshape(-1) for v in ts.observation.values()])
        return self.env.physics.render(self.image_size, self.image_size, camera_id=self.camera).transpose(2, 0, 1).copy()

    def reset(self) -> np.ndarray:
        self.t = 0
        obs = self._obs(self.env.reset())
        if not self.pixel_obs:
            return obs
        for _ in range(self.frame_stack):
            self.frames.append(obs)
        return np.concatenate(self.frames, 0)

    def step(self, action):
        a = _check_action(action, self.action_dim, self.name)
        a = self.low + (a + 1.0) * 0.5 * (self.high - self.low)
        reward = 0.0
        for _ in range(self.action_repeat):
            ts = self.env.step(a)
            reward += ts.reward or 0.0
            if ts.last():
                break
        self.t += 1
        obs = self._obs(ts)
        if self.pixel_obs:
            self.frames.append(obs)
            obs = np.concatenate(self.frames, 0)
        return obs, float(reward), False, bool(ts.last() or self.t >= self.max_steps)

    def rng_state(self):
        return self.env.task.random.get_state()

    def set_rng_state(self, state) -> None:
        self.env.task.random.set_state(state)


def make_env(name: str, seed: int) -> ControlEnv:
    """`Gym-<id>` / `<gymnasium id>`, `Dmc-<domain>-<task>`, `Dmc-visual-<domain>-<task>`."""
    if name.startswith("Dmc-"):
        rest = name[len("Dmc-"):]
        visual = rest.startswith("visual-")
        rest = rest[len("visual-"):] if visual else rest
        domain, _, task = rest.partition("-")
        if not domain or not task:
            raise ValueError(f"DMC environment names look like Dmc-cheetah-run or Dmc-visual-walker-run, got {name!r}")
        return DmcEnv(domain, task.replace("-", "_"), seed, visual)
    return GymEnv(name[len("Gym-"):] if name.startswith("Gym-") else name, seed)
