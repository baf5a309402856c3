"""Cost accounting shared by every RL / distillation run (specs/adwin.md §2, "Cost accounting").

Every token a run processes is counted by role, with an estimated FLOP count, so any two runs can be compared on
accuracy against cumulative cost:

| role      | counts                                                                     | FLOPs per token          |
|-----------|----------------------------------------------------------------------------|--------------------------|
| `sampled` | prompt + generated tokens of student sampling (training, probes, validation) | 2·N_s                  |
| `teacher` | prompt + completion tokens prefilled by teachers and reference models      | 2·N_T (2·N_ref)          |
| `trained` | prompt + completion tokens through the learner (updates; `ℓold` passes)    | 6·N_s update, 2·N_s ℓold |
| `audit`   | prompt + completion tokens of alignment audits (ADWIN)                     | 6·N_s, +4·N_s per extra backward |

N is `flop_params(model)`: the non-embedding parameter count — every parameter except the input embedding
matrix, a lookup that costs no multiply-adds (with tied embeddings the LM head shares that matrix, so it is
excluded too, as in the usual 6·N·D estimate). Attention's quadratic term is ignored. Evaluation is not counted.

Logged (cumulative, every step): `cost/tokens_<role>`, `cost/flops_<role>`, and the totals `cost/tokens` and
`cost/flops`.
"""

from __future__ import annotations

from typing import Any

FORWARD = 2.0  # FLOPs per parameter per token: one forward pass
FORWARD_BACKWARD = 6.0  # forward + backward
EXTRA_BACKWARD = 4.0  # one more backward through a retained graph
ROLES = ("sampled", "teacher", "trained", "audit")


def flop_params(model) -> int:
    """Non-embedding parameter count N of a causal LM (see the module docstring)."""
    embed = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    skip = {id(p) for p in embed.parameters()} if embed is not None else set()
    return sum(p.numel() for p in model.parameters() if id(p) not in skip)


class CostMeter:
    """Cumulative tokens and FLOPs by role; part of the run's checkpoint."""

    def __init__(self):
        self.tokens = dict.fromkeys(ROLES, 0)
        self.flops = dict.fromkeys(ROLES, 0.0)

    def add(self, role: str, tokens: int, flops: float) -> None:
        if role not in self.tokens:
            raise ValueError(f"cost role {role!r}: choose one of {ROLES}")
        self.tokens[role] += int(tokens)
        self.flops[role] += float(flops)

    def metrics(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for r in ROLES:
            out[f"cost/tokens_{r}"] = self.tokens[r]
            out[f"cost/flops_{r}"] = self.flops[r]
        out["cost/tokens"] = sum(self.tokens.values())
        out["cost/flops"] = sum(self.flops.values())
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"tokens": dict(self.tokens), "flops": dict(self.flops)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.tokens, self.flops = dict(state["tokens"]), dict(state["flops"])
