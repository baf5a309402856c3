"""Replay of MR.Q (LAP prioritised segments) and DR.Q (faded prioritised replay).

Layout (as MR.Q's `buffer.py`): slot i holds the state s_t, action a_t (normalised to [−1, 1]), reward r_t and
not-done of one transition; its next state is slot i+1. When an episode ends, its last next-state is written to
one extra slot that holds no transition. A segment of length H starting at slot i (states i..i+H−1, next states
i+1..i+H) may be sampled when `mask[i] = 1`: all H transitions are written and none crosses a truncation (segments
that run past a *termination* are allowed; losses mask them with the not-done products).

Sampling: P(i) ∝ mask_i · p_i (LAP, p_i = max(|δ_i|, 1)^α written back after each value update; a new transition
gets the running maximum) · w_i (faded replay, DR.Q: w_i = max(decay^{age_i}, floor), age = adds since written).
Uniform over the mask when neither is on. No importance weights (LAP).

Departures from the reference code, none of which changes sampled values before the buffer wraps:
- the whole (possibly frame-stacked) state is stored per slot instead of MR.Q's de-duplicated history indices
  (pixel tasks therefore use 3× the memory);
- the extra next-state slot also zeroes that slot's action/reward/not-done (MR.Q leaves stale values after a wrap);
- the fade is applied lazily as decay^{age} (DR.Q multiplies every stored weight by `decay` on each add; same
  values to ~1e-12, O(1) per add instead of O(size));
- storage is always CPU tensors (the reference keeps it on the GPU when it fits).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .losses import fade_weight


class ReplayBuffer:
    def __init__(self, state_shape: tuple[int, ...], action_dim: int, capacity: int, horizon: int, batch_size: int,
                 prioritized: bool = True, initial_priority: float = 1.0, faded: bool = False,
                 fade_decay: float = 0.9999, fade_floor: float = 0.1, pixel_obs: bool = False):
        if capacity <= horizon + 1:
            raise ValueError(f"ReplayBuffer: capacity {capacity} must exceed horizon + 1 = {horizon + 1}")
        if not 0 < fade_decay <= 1 or not 0 <= fade_floor <= 1:
            raise ValueError(f"ReplayBuffer: need 0 < fade_decay <= 1 and 0 <= fade_floor <= 1, got {fade_decay}, {fade_floor}")
        self.state_shape, self.action_dim = tuple(state_shape), action_dim
        self.capacity, self.horizon, self.batch_size = int(capacity), horizon, batch_size
        self.prioritized, self.faded = prioritized, faded
        self.fade_decay, self.fade_floor = fade_decay, fade_floor
        self.obs_dtype = torch.uint8 if pixel_obs else torch.float32

        self.obs = torch.zeros((self.capacity, *self.state_shape), dtype=self.obs_dtype)
        self.ard = torch.zeros((self.capacity, action_dim + 2))  # reward, not_done, action
        self.priority = torch.zeros(self.capacity)
        self.mask = torch.zeros(self.capacity)
        self.add_index = torch.zeros(self.capacity, dtype=torch.int64)  # value of `num_adds` when the slot was written

        self.ind = 0  # next slot to write
        self.size = 0  # slots holding a transition (MR.Q's `size`; the reward scale averages over them)
        self.high = 0  # slots written at all (transitions and next-state slots), what a checkpoint must keep
        self.ep_timesteps = 0
        self.num_adds = 0
        self.env_terminates = False  # any terminal seen (turns the done loss on)
        self.initial_priority = initial_priority
        self.max_priority = initial_priority
        self.sampled_ind: np.ndarray | None = None

    # ------------------------------------------------------------------------- writing

    def add(self, state: np.ndarray, action: np.ndarray, next_state: np.ndarray, reward: float, terminated: bool, truncated: bool) -> None:
        """Store one transition; `action` already normalised to [−1, 1]."""
        i = self.ind
        self.obs[i] = torch.as_tensor(np.asarray(state), dtype=self.obs_dtype)
        self.ard[i, 0] = float(reward)
        self.ard[i, 1] = 1.0 - float(terminated)
        self.ard[i, 2:] = torch.as_tensor(np.asarray(action, dtype=np.float32))
        self.priority[i] = self.max_priority
        self.add_index[i] = self.num_adds
        self.num_adds += 1
        self.size = max(self.size, i + 1)
        self.high = max(self.high, i + 1)
        self.ep_timesteps += 1
        self.env_terminates |= bool(terminated)

        self.mask[i] = 0  # its segment is not complete yet
        if self.ep_timesteps > self.horizon:  # the segment that started H transitions ago is now complete
            self.mask[(i - self.horizon) % self.capacity] = 1
        self.ind = (i + 1) % self.capacity
        if terminated or truncated:
            self.end_episode(next_state, truncated)

    def end_episode(self, next_state: np.ndarray, truncated: bool) -> None:
        """Write the episode's last next-state slot and open (terminated) or close (truncated) its last segments."""
        i = self.ind
        self.obs[i] = torch.as_tensor(np.asarray(next_state), dtype=self.obs_dtype)
        self.ard[i] = 0.0
        self.mask[i] = 0
        self.high = max(self.high, i + 1)
        last = (i - np.arange(min(self.ep_timesteps, self.horizon)) - 1) % self.capacity
        self.mask[torch.as_tensor(last)] = 0.0 if truncated else 1.0  # truncated segments would bootstrap across episodes
        self.ind = (i + 1) % self.capacity
        self.ep_timesteps = 0

    # ------------------------------------------------------------------------- sampling

    def fade(self) -> torch.Tensor:
        """Current fade weights max(decay^age, floor) for every slot (float64)."""
        age = (self.num_adds - 1) - self.add_index
        return fade_weight(age, self.fade_decay, self.fade_floor)

    def sampling_weights(self) -> torch.Tensor:
        """Unnormalised P(i) for every slot (float64)."""
        w = self.mask.to(torch.float64)
        if self.prioritized:
            w = w * self.priority.to(torch.float64)
        if self.faded:
            w = w * self.fade()
        return w

    def sample_ind(self) -> np.ndarray:
        w = self.sampling_weights()
        csum = torch.cumsum(w, 0)
        if csum[-1] <= 0:
            raise RuntimeError("ReplayBuffer.sample: no complete segment to sample yet (need more than `horizon` steps)")
        u = torch.rand(self.batch_size, dtype=torch.float64) * csum[-1]
        ind = torch.searchsorted(csum, u, right=True).clamp(max=self.capacity - 1)
        self.sampled_ind = ind.numpy()
        return self.sampled_ind

    def sample_segments(self, horizon: int) -> tuple[torch.Tensor, ...]:
        """Unroll segments at prioritised starts, see `gather_segments`."""
        return self.gather_segments(self.sample_ind(), horizon)

    def sample_nstep(self, horizon: int) -> tuple[torch.Tensor, ...]:
        """Multi-step samples at prioritised starts, see `gather_nstep`."""
        return self.gather_nstep(self.sample_ind(), horizon)

    def gather_segments(self, ind_B: np.ndarray, horizon: int) -> tuple[torch.Tensor, ...]:
        """state (B, H, *S), action (B, H, A), next_state (B, H, *S), reward (B, H), not_done (B, H) of the
        segments starting at slots `ind_B`."""
        idx = (np.asarray(ind_B)[:, None] + np.arange(horizon + 1)[None, :]) % self.capacity
        states = self.obs[torch.as_tensor(idx)].float()
        ard = self.ard[torch.as_tensor(idx[:, :horizon])]
        return states[:, :-1], ard[..., 2:], states[:, 1:], ard[..., 0], ard[..., 1]

    def gather_nstep(self, ind_B: np.ndarray, horizon: int) -> tuple[torch.Tensor, ...]:
        """state (B, *S), first action (B, A), the state `horizon` slots later (B, *S), rewards (B, H) and
        not-dones (B, H) of the segments starting at slots `ind_B` (past a terminal, the slots hold the extra
        next-state slot and the next episode: the not-done products cut them in the return and bootstrap)."""
        ind = np.asarray(ind_B)
        idx = (ind[:, None] + np.arange(horizon)[None, :]) % self.capacity
        ard = self.ard[torch.as_tensor(idx)]
        state = self.obs[torch.as_tensor(ind)].float()
        next_state = self.obs[torch.as_tensor((ind + horizon) % self.capacity)].float()
        return state, ard[:, 0, 2:], next_state, ard[..., 0], ard[..., 1]

    def update_priority(self, priority_B: torch.Tensor) -> None:
        """Write back priorities for the last sampled indices (duplicates: the last write wins, as in MR.Q)."""
        if self.sampled_ind is None:
            raise RuntimeError("ReplayBuffer.update_priority called before sample")
        p = priority_B.detach().reshape(-1).float()
        self.priority[torch.as_tensor(self.sampled_ind)] = p
        self.max_priority = max(float(p.max()), self.max_priority)

    def reward_scale(self, eps: float = 1e-8) -> float:
        """Mean |r| over the stored transitions (MR.Q's reward scale)."""
        if self.size == 0:
            return 1.0
        return float(self.ard[: self.size, 0].abs().mean().clamp(min=eps))

    # ------------------------------------------------------------------------- checkpointing

    _SCALARS = ("ind", "size", "high", "ep_timesteps", "num_adds", "env_terminates", "max_priority")

    def state_dict(self) -> dict:
        n = self.high
        return {"obs": self.obs[:n].clone(), "ard": self.ard[:n].clone(), "priority": self.priority[:n].clone(),
                "mask": self.mask[:n].clone(), "add_index": self.add_index[:n].clone(), "capacity": self.capacity,
                "state_shape": self.state_shape, "action_dim": self.action_dim,
                **{k: getattr(self, k) for k in self._SCALARS}}

    def load_state_dict(self, sd: dict) -> None:
        if (tuple(sd["state_shape"]), sd["action_dim"]) != (self.state_shape, self.action_dim):
            raise ValueError(f"ReplayBuffer.load_state_dict: checkpoint has state/action shapes {tuple(sd['state_shape'])}/"
                             f"{sd['action_dim']}, buffer has {self.state_shape}/{self.action_dim}")
        # a different capacity is fine while the saved ring never wrapped (a run extended to more steps)
        if sd["capacity"] != self.capacity and (sd["high"] >= sd["capacity"] or sd["high"] > self.capacity):
            raise ValueError(f"ReplayBuffer.load_state_dict: checkpoint of capacity {sd['capacity']} holding {sd['high']} slots "
                             f"does not fit a buffer of capacity {self.capacity}")
        n = sd["high"]
        for name in ("obs", "ard", "priority", "mask", "add_index"):
            getattr(self, name).zero_()
            getattr(self, name)[:n] = sd[name]
        for k in self._SCALARS:
            setattr(self, k, sd[k])
        self.ind %= self.capacity
        self.sampled_ind = None

    def save(self, path: str | Path) -> None:
        torch.save(self.state_dict(), path)

    def load(self, path: str | Path) -> None:
        self.load_state_dict(torch.load(path, weights_only=False))
