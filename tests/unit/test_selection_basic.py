import pytest

from mentor.selection import DynamicSampling, UniformSelector
from mentor.selection.dynamic import informative
from mentor.types import Prompt

POOL = [Prompt(id=str(i), text=f"q{i}", answer=str(i)) for i in range(10)]


def test_uniform_epochs_cover_pool_and_resume():
    s = UniformSelector(POOL, seed=1)
    ids = [p.id for p in s.select(6)] + [p.id for p in s.select(4)]
    assert sorted(ids, key=int) == [str(i) for i in range(10)]
    state = s.state_dict()
    nxt = [p.id for p in s.select(3)]
    s2 = UniformSelector(POOL, seed=1)
    s2.load_state_dict(state)
    assert [p.id for p in s2.select(3)] == nxt


def test_informative_groups():
    assert informative([0, 1, 0]) and informative([0.2, 0.3])
    assert not informative([1, 1, 1]) and not informative([0, 0]) and not informative([1])


def test_dynamic_sampling_drops_degenerate_groups_and_counts_spent_rollouts():
    # Scripted groups: prompts with even ids are all-correct (degenerate), odd ids mixed.
    def sample_and_score(prompts):
        return [(p, [1.0, 1.0] if int(p.id) % 2 == 0 else [1.0, 0.0]) for p in prompts]

    d = DynamicSampling(POOL, seed=0, max_rounds=10, oversample=1.0)  # 5 odd ids: 4 are always found within 5 rounds
    kept, m, seen = d.fill(4, sample_and_score, lambda g: g[1])
    assert len(seen) == m["dynamic/groups_drawn"]
    assert len(kept) == 4 and all(int(p.id) % 2 == 1 for p, _ in kept)
    # Round 1 draws 4 prompts, round 2 the missing count, ... each rollout (2 per group) counts as spent.
    assert m["dynamic/rollouts_spent"] == 2 * m["dynamic/groups_drawn"]
    assert m["dynamic/groups_kept"] == 4


def test_dynamic_sampling_exhaustion():
    d = DynamicSampling(POOL, max_rounds=2, oversample=1.0, on_exhaust="error")
    with pytest.raises(RuntimeError, match="only 0 of 3 informative groups after 2 rounds"):
        d.fill(3, lambda ps: [(p, [0.0, 0.0]) for p in ps], lambda g: g[1])
    d = DynamicSampling(POOL, max_rounds=2, oversample=1.0)
    kept, m, _ = d.fill(3, lambda ps: [(p, [0.0, 0.0]) for p in ps], lambda g: g[1])
    assert kept == [] and m["dynamic/rounds"] == 2 and m["dynamic/rollouts_spent"] == 12
