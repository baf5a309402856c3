"""`gps`: Generalizable Predictive prompt Selection (Qu et al. 2026, "Small Generalizable Prompt Predictive Models
Can Steer Efficient RL Post-Training of Large Reasoning Models", arXiv:2602.01970) — mentor's amortised variant.

One predictive model, shared by every prompt, maps a prompt's features e_τ and a summary h_t of the recent
optimisation history to its current pass rate; it is trained online on every observed group's success counts,
so it predicts prompts it has never sampled. Selection is greedy batch acquisition:

    e_τ = featurise(text_τ)                                    (hashed char n-grams, `embed.py`; L2-normalised)
    u_τ = GELU(W e_τ + b)                                      (shared prompt encoder, 256)
    h_t = mean_{(τ', s') in the last M_h batches} φ([u_τ'; s'])   (DeepSets summary of recent history, 64)
    p̂_τ = sigmoid(f([u_τ; h_t; has_history]))                 (f: 256 → GELU → 1)
    train: after every update, `updates_per_step` Adam steps (lazy Adam on the bucket embeddings W) on the binomial NLL
           −[k log p̂ + (n−k) log(1−p̂)] / Σn of the newest observations plus `replay_steps` whole past batches
           drawn from a FIFO buffer; each observation is scored under the history that preceded it
    acquire: B = ∅; repeat n times:
           τ* = argmax_{τ∉B} −(p̂_τ − γ*)² + λ·[ mean_{τ'∈B} d(τ, τ') + μ·min_{τ''∈B_prev} d(τ, τ'') ],
           d = 1 − cos(e_τ, e_τ'); the mean term is absent for the first pick; ties go to the lower pool index

Departures from the paper [secondary reading; specs/selection.md §2.5]: no Gaussian latent z and no ELBO — the
history enters through the deterministic DeepSets summary h_t (an amortised model; benchmarks/selection.py reports
its held-out calibration); the paper's λ and M (App. E.9/E.10) are unknown, the defaults are ours (λ = 0.05,
μ = 0.5, M_h = 1 batch, B_prev = 1 step); hashed n-grams replace WordLlama embeddings by default. Cold start: until
`cold_start_updates` updates have been seen the model is untrained, so the batch is drawn uniformly at random from
the candidates (the output layer starts at zero, i.e. p̂ = 0.5 everywhere). Pools over `max_pool` prompts are
scored on a uniform subset of `subset_factor`·n candidates per step. `no_repeat_steps` = K (ours; 0 = off) removes
the prompts picked in the last K steps from the candidates while at least n others remain: without the paper's
sampled latent the acquisition is deterministic and, on a small pool, re-picks the same prompts step after step
(benchmarks/results/selection.md). `acquisition: thompson` (ours; the paper's exploration comes from sampling its
latent z, which this amortised model does not have) makes the acquisition stochastic per prompt instead: each
candidate's utility uses a draw p̃_τ ~ Beta(κ·p̂_τ, κ·(1 − p̂_τ)) — mean p̂_τ, variance p̂_τ(1 − p̂_τ)/(κ + 1), i.e. the
prediction treated as worth κ rollouts of evidence (`ts_concentration`, default 8 = one group) — as MoPPS does with
its per-prompt posteriors; the diversity terms are unchanged.
"""

from __future__ import annotations

import warnings
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ..config import ConfigError, from_dict
from ..types import Prompt
from .embed import cosine, featurise, rows_dense


@dataclass
class GPSConfig:
    lam: float = 0.05  # λ: weight of the diversity terms against the intermediate-difficulty utility
    mu: float = 0.5  # μ: weight of inter-step exploration (distance to the previous batch) inside the diversity term
    target: float = 0.5  # γ*: the pass rate acquisition aims at
    history_batches: int = 1  # M_h: batches summarised in h_t
    prev_steps: int = 1  # B_prev: previous batches the exploration term keeps distance from
    max_pool: int = 50_000  # score the whole pool up to this size, else a uniform subset
    subset_factor: int = 32  # candidates per selected prompt when the pool is larger than max_pool
    hidden: int = 256  # width of the prompt encoder and of f's hidden layer
    history_dim: int = 64  # width of φ
    lr: float = 1.0e-3  # Adam learning rate of the predictor
    updates_per_step: int = 4  # Adam steps after each update() call
    replay: int = 8192  # observations kept for replay (FIFO)
    replay_steps: int = 8  # past batches replayed whole per Adam step (besides the newest one)
    cold_start_updates: int = 1  # select uniformly at random until this many update() calls have trained the model
    no_repeat_steps: int = 0  # ours, not the paper's: prompts picked in the last K steps are not candidates (0: off)
    acquisition: str = "greedy"  # greedy: utility on p̂ | thompson (ours): utility on p̃ ~ Beta(κ p̂, κ (1 − p̂))
    ts_concentration: float = 8.0  # κ of the Thompson draw: the prediction counts as κ rollouts of evidence
    featuriser: str = "hashed_ngrams"  # hashed_ngrams | sentence:<local path>
    dim: int = 1 << 14  # hashed n-gram buckets

    def __post_init__(self):
        for name in ("history_batches", "prev_steps", "max_pool", "subset_factor", "hidden", "history_dim",
                     "updates_per_step", "replay", "replay_steps", "dim"):
            if getattr(self, name) < 1:
                raise ConfigError(f"rl.selector_args.{name}: must be >= 1, got {getattr(self, name)}")
        if self.lam < 0 or self.mu < 0:
            raise ConfigError(f"rl.selector_args: lam and mu must be >= 0, got {self.lam}, {self.mu}")
        if not 0.0 < self.target < 1.0:
            raise ConfigError(f"rl.selector_args.target: must be in (0, 1), got {self.target}")
        if self.no_repeat_steps < 0:
            raise ConfigError(f"rl.selector_args.no_repeat_steps: must be >= 0, got {self.no_repeat_steps}")
        if self.acquisition not in ("greedy", "thompson"):
            raise ConfigError(f"rl.selector_args.acquisition: must be 'greedy' or 'thompson', got {self.acquisition!r}")
        if not self.ts_concentration > 0:
            raise ConfigError(f"rl.selector_args.ts_concentration: must be > 0, got {self.ts_concentration}")
        if self.cold_start_updates < 0:
            raise ConfigError(f"rl.selector_args.cold_start_updates: must be >= 0, got {self.cold_start_updates}")


# ----------------------------------------------------------------------------- ALGO LOGIC (pure)

def brier(p_hat, s) -> float:
    """Brier score (1/|P|) Σ (p̂_τ − s_τ)²."""
    p_hat, s = np.asarray(p_hat, dtype=np.float64), np.asarray(s, dtype=np.float64)
    return float(np.mean((p_hat - s) ** 2))


def binomial_nll(logits_N: torch.Tensor, k_N: torch.Tensor, n_N: torch.Tensor) -> torch.Tensor:
    """−Σ[k log σ(z) + (n−k) log σ(−z)] / Σ n: the per-rollout negative log-likelihood of the success counts."""
    ll = k_N * nn.functional.logsigmoid(logits_N) + (n_N - k_N) * nn.functional.logsigmoid(-logits_N)
    return -ll.sum() / n_N.sum()


def thompson_draw(p_N: torch.Tensor, kappa: float, rng: np.random.Generator) -> torch.Tensor:
    """p̃ ~ Beta(κ·p̂, κ·(1 − p̂)) per prompt: mean p̂, variance p̂(1 − p̂)/(κ + 1). p̂ is clipped to [1e-6, 1 − 1e-6] so
    both shape parameters stay positive."""
    p = np.clip(p_N.double().numpy(), 1e-6, 1 - 1e-6)
    return torch.from_numpy(rng.beta(kappa * p, kappa * (1.0 - p)))


def greedy_acquire(p_N: torch.Tensor, X: torch.Tensor, n: int, lam: float, mu: float, target: float = 0.5,
                   prev_dense: torch.Tensor | None = None) -> list[int]:
    """Greedy maximisation of Σ −(p̂ − γ*)² + λ·D(B) over the rows of X (sparse or dense, rows L2-normalised).
    Returns row positions in pick order."""
    N = p_N.shape[0]
    if X.is_sparse:
        with warnings.catch_warnings():  # "sparse CSR support is in beta": mat-vecs are all we use
            warnings.simplefilter("ignore", UserWarning)
            X = X.to_sparse_csr()  # CSR mat-vecs are ~10x faster than COO
    if n > N:
        raise ValueError(f"greedy_acquire: asked for {n} prompts from {N} candidates")
    p = p_N.double()
    util = -(p - target) ** 2
    explore = torch.zeros(N, dtype=torch.float64)
    if lam > 0 and mu > 0 and prev_dense is not None and prev_dense.shape[0] > 0:
        explore = mu * (1.0 - cosine(X, prev_dense).double()).min(dim=1).values
    sum_d = torch.zeros(N, dtype=torch.float64)
    taken = torch.zeros(N, dtype=torch.bool)
    picks: list[int] = []
    for j in range(n):
        score = util + lam * (explore + (sum_d / j if j else 0.0))
        score[taken] = -float("inf")
        i = int(torch.argmax(score))  # first maximal index on ties
        picks.append(i)
        taken[i] = True
        if lam > 0:
            sum_d += 1.0 - cosine(X, rows_dense(X, [i])).double()[:, 0]
    return picks


class PassRateModel(nn.Module):
    """p̂(τ | H) = sigmoid(f([u_τ; h; has_history])), u_τ = GELU(W e_τ + b), h = mean φ([u; s]) over history."""

    def __init__(self, dim: int, hidden: int, history_dim: int):
        super().__init__()
        self.enc_w = nn.Parameter(torch.randn(dim, hidden))  # an embedding row per bucket: unit-norm e gives O(1) u
        self.enc_b = nn.Parameter(torch.zeros(hidden))
        self.phi = nn.Sequential(nn.Linear(hidden + 1, history_dim), nn.GELU())
        self.f = nn.Sequential(nn.Linear(hidden + history_dim + 1, hidden), nn.GELU(), nn.Linear(hidden, 1))
        nn.init.zeros_(self.f[-1].weight)
        nn.init.zeros_(self.f[-1].bias)  # p̂ = 0.5 everywhere before any training
        self.history_dim = history_dim

    def encode(self, X: torch.Tensor) -> torch.Tensor:
        if X.is_sparse:  # W·e as a weighted bag of embedding rows (autograd through torch.sparse.mm is ~100x slower)
            X = X.coalesce()
            rows, cols = X.indices()
            offsets = torch.cumsum(torch.bincount(rows, minlength=X.shape[0]), 0) - torch.bincount(rows, minlength=X.shape[0])
            h = nn.functional.embedding_bag(cols, self.enc_w, offsets, mode="sum", per_sample_weights=X.values(), sparse=True)
        else:
            h = X @ self.enc_w
        return nn.functional.gelu(h + self.enc_b)

    def summarise(self, u_H: torch.Tensor, s_H: torch.Tensor, seg_H: torch.Tensor, n_seg: int) -> torch.Tensor:
        """Mean of φ([u; s]) per segment (one segment per history context) -> [n_seg, history_dim + 1]; the last
        column flags whether the segment had any history."""
        out = torch.zeros(n_seg, self.history_dim)
        cnt = torch.zeros(n_seg)
        if u_H.shape[0]:
            out = out.index_add(0, seg_H, self.phi(torch.cat([u_H, s_H[:, None]], dim=1)))
            cnt = cnt.index_add(0, seg_H, torch.ones(len(seg_H)))
        return torch.cat([out / cnt.clamp(min=1)[:, None], (cnt > 0).float()[:, None]], dim=1)

    def logits(self, u_N: torch.Tensor, h_N: torch.Tensor) -> torch.Tensor:
        return self.f(torch.cat([u_N, h_N], dim=1))[:, 0]


def _text(p: Prompt) -> str:
    return p.text if p.text is not None else "\n".join(m.get("content", "") for m in p.messages)


# ----------------------------------------------------------------------------- selector

class GPS:
    def __init__(self, pool: list[Prompt], seed: int = 0, args: dict | None = None, **_: Any):
        if not pool:
            raise ValueError("selector: the prompt pool is empty")
        self.cfg: GPSConfig = from_dict(GPSConfig, args or {}, "rl.selector_args")
        c = self.cfg
        self.pool = pool
        self.index = {p.id: i for i, p in enumerate(pool)}
        if len(self.index) != len(pool):
            raise ValueError("gps: prompt ids in the pool are not unique")
        self.X = featurise([_text(p) for p in pool], c.featuriser, c.dim)
        dim = self.X.shape[1]
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self.model = PassRateModel(dim, c.hidden, c.history_dim)
        # sparse features: lazy Adam on the bucket embeddings (only the rows a batch touches move), Adam on the rest
        rest = [p for n, p in self.model.named_parameters() if n != "enc_w"]
        self.opts = ([torch.optim.SparseAdam([self.model.enc_w], lr=c.lr), torch.optim.Adam(rest, lr=c.lr)]
                     if self.X.is_sparse else [torch.optim.Adam(self.model.parameters(), lr=c.lr)])
        self.rng = np.random.default_rng(seed)
        self.torch_rng = torch.Generator().manual_seed(seed)
        # history: the last M_h batches as (pool indices, pass rates); contexts: the history each observation saw
        self.history: deque = deque(maxlen=c.history_batches)
        self.prev: deque = deque(maxlen=c.prev_steps)
        self.recent: deque = deque(maxlen=c.no_repeat_steps)  # batches excluded from acquisition (no_repeat_steps)
        self.replay: deque = deque(maxlen=c.replay)  # (pool index, successes, n, context id)
        self.contexts: dict[int, tuple[list[int], list[float]]] = {}
        self.n_updates = 0
        self.last: dict[str, float] = {}

    # --- prediction
    def _history_context(self) -> tuple[list[int], list[float]]:
        idx = [i for b in self.history for i in b[0]]
        rates = [r for b in self.history for r in b[1]]
        return idx, rates

    def _context_summary(self, ctx_ids: list[int]) -> torch.Tensor:
        idx, rates, seg = [], [], []
        for j, cid in enumerate(ctx_ids):
            ci, cr = self.contexts[cid]
            idx += ci
            rates += cr
            seg += [j] * len(ci)
        u_H = self.model.encode(self.X.index_select(0, torch.tensor(idx, dtype=torch.long))) if idx else torch.zeros(0, self.cfg.hidden)
        return self.model.summarise(u_H, torch.tensor(rates, dtype=torch.float32), torch.tensor(seg, dtype=torch.long), len(ctx_ids))

    def _predict_rows(self, X_rows: torch.Tensor) -> torch.Tensor:
        idx, rates = self._history_context()
        with torch.no_grad():
            u_H = self.model.encode(self.X.index_select(0, torch.tensor(idx, dtype=torch.long))) if idx else torch.zeros(0, self.cfg.hidden)
            h = self.model.summarise(u_H, torch.tensor(rates, dtype=torch.float32), torch.zeros(len(idx), dtype=torch.long), 1)
            u = self.model.encode(X_rows)
            return torch.sigmoid(self.model.logits(u, h.expand(u.shape[0], -1)))

    def predict(self, prompts: list[Prompt]) -> np.ndarray:
        """Predicted current pass rates of any prompts (in the pool or never seen), given the recent history."""
        X_rows = featurise([_text(p) for p in prompts], self.cfg.featuriser, self.cfg.dim)
        return self._predict_rows(X_rows).double().numpy()

    # --- selection
    def select(self, n: int) -> list[Prompt]:
        c, N = self.cfg, len(self.pool)
        if n > N:
            raise ValueError(f"gps.select: asked for {n} prompts from a pool of {N}")
        cand = np.arange(N) if N <= c.max_pool else np.sort(self.rng.choice(N, size=min(N, c.subset_factor * n), replace=False))
        if self.recent:  # no_repeat_steps: drop recently picked prompts while enough others remain
            seen = {i for b in self.recent for i in b}
            fresh = np.array([i for i in cand if int(i) not in seen], dtype=cand.dtype)
            cand = fresh if len(fresh) >= n else cand
        X_c = self.X.index_select(0, torch.as_tensor(cand, dtype=torch.long)) if len(cand) < N else self.X
        if self.n_updates < c.cold_start_updates:
            pos = [int(i) for i in self.rng.choice(len(cand), size=n, replace=False)]
            p_c = torch.full((len(cand),), 0.5)
        else:
            p_c = self._predict_rows(X_c)
            prev = [i for b in self.prev for i in b]
            prev_dense = rows_dense(self.X, prev) if prev else None
            p_u = thompson_draw(p_c, c.ts_concentration, self.rng) if c.acquisition == "thompson" else p_c
            pos = greedy_acquire(p_u, X_c, n, c.lam, c.mu, c.target, prev_dense)
        picked = [int(cand[p]) for p in pos]
        self.prev.append(picked)
        if c.no_repeat_steps:
            self.recent.append(picked)
        self.last.update({"gps/pred_selected": float(p_c[pos].mean()), "gps/pred_pool": float(p_c.mean()),
                          "gps/cold_start": float(self.n_updates < c.cold_start_updates)})
        return [self.pool[i] for i in picked]

    # --- learning
    def update(self, observations) -> None:
        obs = list(observations)
        if not obs:
            return
        rows = []
        for o in obs:
            i = self.index.get(o.prompt_id)
            if i is None:
                raise ValueError(f"gps.update: prompt {o.prompt_id!r} is not in the pool")
            if o.n_samples <= 0 or not 0 <= o.successes <= o.n_samples:
                raise ValueError(f"gps.update: prompt {o.prompt_id!r} has successes={o.successes}, n_samples={o.n_samples}")
            rows.append((i, o.successes, o.n_samples))
        # calibration of the predictions this batch was selected on, before learning from it
        p_before = self._predict_rows(self.X.index_select(0, torch.tensor([r[0] for r in rows]))).double().numpy()
        s = np.array([k / n for _, k, n in rows])
        cid = self.n_updates
        self.contexts[cid] = self._history_context()
        new = [(i, k, n, cid) for i, k, n in rows]
        self.replay.extend(new)
        live = {r[3] for r in self.replay}
        self.contexts = {k: v for k, v in self.contexts.items() if k in live}
        nll = self._train(new)
        self.history.append(([r[0] for r in rows], list(s)))
        self.n_updates += 1
        self.last.update({"gps/pred_observed": float(p_before.mean()), "gps/observed": float(s.mean()),
                          "gps/brier_batch": brier(p_before, s), "gps/train_nll": nll})

    def _train(self, new: list[tuple[int, int, int, int]]) -> float:
        c = self.cfg
        self.model.train()
        nll = float("nan")
        cid = new[0][3]
        past = sorted({r[3] for r in self.replay} - {cid})
        for _ in range(c.updates_per_step):
            chosen = {past[j] for j in torch.randperm(len(past), generator=self.torch_rng)[: c.replay_steps].tolist()}
            batch = new + [r for r in self.replay if r[3] in chosen]
            ctx_ids = sorted({b[3] for b in batch})
            where = {cid: j for j, cid in enumerate(ctx_ids)}
            h = self._context_summary(ctx_ids)[torch.tensor([where[b[3]] for b in batch])]
            u = self.model.encode(self.X.index_select(0, torch.tensor([b[0] for b in batch])))
            loss = binomial_nll(self.model.logits(u, h), torch.tensor([float(b[1]) for b in batch]),
                                torch.tensor([float(b[2]) for b in batch]))
            for opt in self.opts:
                opt.zero_grad(set_to_none=True)
            loss.backward()
            for opt in self.opts:
                opt.step()
            nll = float(loss.detach())
        self.model.eval()
        return nll

    def metrics(self) -> dict[str, float]:
        return dict(self.last)

    def filter(self, groups):
        return groups, [], {}

    # --- state
    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "opts": [o.state_dict() for o in self.opts], "rng": self.rng.bit_generator.state,
                "history_texts": [[_text(self.pool[i]) for i in b[0]] for b in self.history],
                "torch_rng": self.torch_rng.get_state(), "history": list(self.history), "prev": list(self.prev),
                "recent": list(self.recent), "replay": list(self.replay), "contexts": dict(self.contexts), "n_updates": self.n_updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        for o, st in zip(self.opts, state["opts"]):
            o.load_state_dict(st)
        self.rng.bit_generator.state = state["rng"]
        self.torch_rng.set_state(state["torch_rng"])
        self.history.clear()
        self.history.extend(state["history"])
        self.prev.clear()
        self.prev.extend(state["prev"])
        self.recent.clear()
        self.recent.extend(state.get("recent", []))
        self.replay.clear()
        self.replay.extend(state["replay"])
        self.contexts = dict(state["contexts"])
        self.n_updates = state["n_updates"]
