"""TD3 baseline (Fujimoto, van Hoof, Meger 2018, arXiv:1802.09477; reference code `sfujim/TD3:TD3.py`).

Actor and twin critics 256-256 ReLU, Adam 3e-4, batch 256, γ 0.99, soft targets τ = 0.005, target policy noise
0.2 clipped at 0.5, policy delay 2, Gaussian exploration noise 0.1, uniform replay, 25k random start steps
(`start_steps`, configurable). y = r + γ(1 − d)·min_k Q̄_k(s', clip(π̄(s') + clip(N(0, 0.2²), ±0.5), ±1)).

Same interface as `agent.Agent` (`replay`, `act`, `wants_random_action`, `train`, `state_dict`) so the training loop
treats both alike. Actions are normalised to [−1, 1] (the environment wrapper rescales), where sfujim's code
multiplies by `max_action`; identical for the symmetric MuJoCo action boxes. As the reference `main.py`, the first
`start_steps` environment steps take uniform random actions and training (one update per step) starts with the next
one. Departure: the replay is the shared segment buffer with horizon 1 and no priorities, i.e. uniform over stored
transitions, except that the last transition of a time-limit-truncated episode is never sampled (sfujim's buffer keeps it and bootstraps
from it; 1 transition in 1,000 on MuJoCo).
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from . import losses as L
from .buffer import ReplayBuffer


@dataclasses.dataclass
class TD3Hyperparameters:
    batch_size: int = 256
    buffer_size: int = 1_000_000
    discount: float = 0.99
    tau: float = 0.005  # soft target update rate
    policy_noise: float = 0.2
    noise_clip: float = 0.5
    policy_freq: int = 2  # actor and target updates every this many critic updates
    exploration_noise: float = 0.1
    start_steps: int = 25_000  # random actions and no training before this many transitions
    hdim: int = 256
    lr: float = 3e-4


def make_td3_hyperparameters(**overrides: Any) -> TD3Hyperparameters:
    fields = {f.name for f in dataclasses.fields(TD3Hyperparameters)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(f"unknown TD3 hyperparameter(s) {unknown}; allowed: {sorted(fields)}")
    return TD3Hyperparameters(**overrides)


class Actor(nn.Module):
    def __init__(self, state_dim: int, action_dim: int, hdim: int = 256):
        super().__init__()
        self.l1, self.l2, self.l3 = nn.Linear(state_dim, hdim), nn.Linear(hdim, hdim), nn.Linear(hdim, action_dim)

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.l3(F.relu(self.l2(F.relu(self.l1(s))))))


class Critic(nn.Module):
    def __init__(self, state_dim: int, action_dim: int, hdim: int = 256):
        super().__init__()
        self.q1 = nn.Sequential(nn.Linear(state_dim + action_dim, hdim), nn.ReLU(), nn.Linear(hdim, hdim), nn.ReLU(), nn.Linear(hdim, 1))
        self.q2 = nn.Sequential(nn.Linear(state_dim + action_dim, hdim), nn.ReLU(), nn.Linear(hdim, hdim), nn.ReLU(), nn.Linear(hdim, 1))

    def forward(self, s: torch.Tensor, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        sa = torch.cat([s, a], 1)
        return self.q1(sa), self.q2(sa)


class TD3:
    def __init__(self, state_shape: tuple[int, ...], action_dim: int, hp: TD3Hyperparameters, buffer_capacity: int | None = None):
        if len(state_shape) != 1:
            raise ValueError(f"TD3 takes flat observations, got state shape {state_shape} (use drq/mrq for pixels)")
        self.hp, self.state_shape, self.action_dim = hp, tuple(state_shape), action_dim
        self.replay = ReplayBuffer(self.state_shape, action_dim, int(buffer_capacity or hp.buffer_size), 1, hp.batch_size,
                                   prioritized=False)
        self.actor = Actor(state_shape[0], action_dim, hp.hdim)
        self.critic = Critic(state_shape[0], action_dim, hp.hdim)
        self.actor_target = copy.deepcopy(self.actor).requires_grad_(False)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=hp.lr)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=hp.lr)
        self.training_steps = 0
        self.last_metrics: dict[str, float] = {}

    def wants_random_action(self) -> bool:
        return self.replay.num_adds < self.hp.start_steps  # env steps taken so far (sfujim: t < start_timesteps)

    @torch.no_grad()
    def act(self, state: np.ndarray, explore: bool) -> np.ndarray:
        a = self.actor(torch.as_tensor(np.asarray(state), dtype=torch.float32)[None])[0]
        if explore:
            a = a + torch.randn_like(a) * self.hp.exploration_noise
        return a.clamp(-1, 1).numpy()

    def train(self) -> None:
        hp = self.hp
        if self.replay.num_adds <= hp.start_steps:  # sfujim trains from the transition of step t = start_timesteps on
            return
        self.training_steps += 1
        state, action, next_state, reward_B1, not_done_B1 = self.replay.sample_nstep(1)
        with torch.no_grad():
            next_action = L.smoothed_target_action(self.actor_target(next_state), hp.policy_noise, hp.noise_clip)
            tq1, tq2 = self.critic_target(next_state, next_action)
            target = L.td3_target(reward_B1, not_done_B1, tq1, tq2, hp.discount)
        q1, q2 = self.critic(state, action)
        critic_loss = F.mse_loss(q1, target) + F.mse_loss(q2, target)
        self.critic_opt.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_opt.step()
        self.last_metrics.update(critic_loss=critic_loss.item(), q_mean=q1.mean().item())
        if self.training_steps % hp.policy_freq == 0:
            actor_loss = -self.critic(state, self.actor(state))[0].mean()
            self.actor_opt.zero_grad(set_to_none=True)
            actor_loss.backward()
            self.actor_opt.step()
            with torch.no_grad():
                for net, tgt in ((self.critic, self.critic_target), (self.actor, self.actor_target)):
                    for p, tp in zip(net.parameters(), tgt.parameters()):
                        tp.mul_(1 - hp.tau).add_(p, alpha=hp.tau)
            self.last_metrics["actor_loss"] = actor_loss.item()

    _NETS = ("actor", "critic", "actor_target", "critic_target", "actor_opt", "critic_opt")

    def state_dict(self, include_replay: bool = True) -> dict:
        sd = {k: getattr(self, k).state_dict() for k in self._NETS}
        sd.update(hp=dataclasses.asdict(self.hp), training_steps=self.training_steps)
        if include_replay:
            sd["replay"] = self.replay.state_dict()
        return sd

    def load_state_dict(self, sd: dict) -> None:
        if sd["hp"] != dataclasses.asdict(self.hp):
            raise ValueError(f"TD3.load_state_dict: hyperparameters differ from the checkpoint: now {dataclasses.asdict(self.hp)}, saved {sd['hp']}")
        for k in self._NETS:
            getattr(self, k).load_state_dict(sd[k])
        self.training_steps = sd["training_steps"]
        if "replay" in sd:
            self.replay.load_state_dict(sd["replay"])
