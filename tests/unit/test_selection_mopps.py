import json

import numpy as np
import pytest

from mentor.config import ConfigError
from mentor.selection import SELECTORS, DynamicSampling, MoPPS, Observation
from mentor.selection.mopps import beta_update, closest_to_target, threshold_pick
from mentor.types import Prompt

POOL = [Prompt(id=f"p{i}", text=f"q{i}", answer="0") for i in range(4)]


def test_beta_update_with_decay():
    # α = 0.5·3 + 0.5·1 + 8·0.25 = 4 ; β = 0.5·5 + 0.5·1 + 8·0.75 = 9
    assert beta_update(3.0, 5.0, 8, 0.25, 0.5, 1.0, 1.0) == pytest.approx((4.0, 9.0), abs=1e-12)


def test_beta_update_without_decay():
    # α = 3 + 2 = 5 ; β = 5 + 6 = 11
    assert beta_update(3.0, 5.0, 8, 0.25, 1.0, 1.0, 1.0) == pytest.approx((5.0, 11.0), abs=1e-12)


def test_hand_worked_sequence_through_the_selector():
    s = MoPPS(POOL, args={"decay": 0.5})
    # p0: (1,1) -> 2 of 4: α = .5+.5+2 = 3, β = 3 ; then 0 of 4: α = 1.5+.5 = 2, β = 1.5+.5+4 = 6
    s.update([Observation("p0", 2, 4, 0)])
    s.update([Observation("p0", 0, 4, 1), Observation("p1", 4, 4, 1)])
    assert s.alpha[0] == pytest.approx(2.0, abs=1e-12) and s.beta[0] == pytest.approx(6.0, abs=1e-12)
    # p1: (1,1) -> 4 of 4: α = 1 + 4 = 5, β = 1
    assert (s.alpha[1], s.beta[1]) == pytest.approx((5.0, 1.0), abs=1e-12)
    assert s.predict([POOL[0], Prompt(id="new", text="x")]) == pytest.approx([0.25, 0.5], abs=1e-12)


def test_deterministic_pick_closest_to_target():
    # posterior means 0.1, 0.45, 0.6, 0.9 (α, β = 1,9 / 9,11 / 3,2 / 9,1); B = 2 -> the 0.45 and 0.6 prompts
    s = MoPPS(POOL, args={"thompson": False, "ts_ratio": 2})  # 2·B = 4 candidates: the whole pool
    s.alpha, s.beta = np.array([1.0, 9.0, 3.0, 9.0]), np.array([9.0, 11.0, 2.0, 1.0])
    assert sorted(p.id for p in s.select(2)) == ["p1", "p2"]
    assert list(closest_to_target(np.array([0.1, 0.45, 0.6, 0.9]), 2, 0.5)) == [1, 2]


def test_threshold_strategy_fills_from_closest():
    # inside [0.3, 0.7]: only position 2 (0.6); the fill is the next closest to 0.5, position 1 (0.25)
    assert list(threshold_pick(np.array([0.05, 0.25, 0.6, 0.95]), 2, 0.3, 0.7, 0.5)) == [2, 1]


def test_thompson_selection_resumes_identically():
    pool = [Prompt(id=f"p{i}", text=f"q{i}") for i in range(40)]
    a = MoPPS(pool, seed=3, args={"ts_ratio": 4})
    a.update([Observation(f"p{i}", i % 5, 4, 0) for i in range(40) if i % 5 != 4])
    state = a.state_dict()
    nxt = [p.id for p in a.select(5)]
    b = MoPPS(pool, seed=99, args={"ts_ratio": 4})
    b.load_state_dict(state)
    assert [p.id for p in b.select(5)] == nxt


def test_bandit_init_and_errors(tmp_path):
    f = tmp_path / "init.jsonl"
    f.write_text(json.dumps({"id": "p2", "successes": 1, "failures": 3}) + "\n")
    s = MoPPS(POOL, args={"bandit_init": str(f)})
    assert (s.alpha[2], s.beta[2]) == (4.0, 10.0)  # 3·1 + 1, 3·3 + 1
    f.write_text('{"id": "p2"}\n')
    with pytest.raises(ValueError, match="init.jsonl:1: bandit_init needs"):
        MoPPS(POOL, args={"bandit_init": str(f)})
    with pytest.raises(ConfigError, match="strategy"):
        MoPPS(POOL, args={"strategy": "best"})
    with pytest.raises(ValueError, match="'zz' is not in the pool"):
        MoPPS(POOL).update([Observation("zz", 1, 2, 0)])


def test_dynamic_wraps_mopps_and_updates_it_every_round():
    assert SELECTORS["mopps"] is MoPPS
    d = DynamicSampling(POOL, max_rounds=2, oversample=1.0, args={"inner": "mopps", "inner_args": {"ts_ratio": 1}})
    kept, m, seen = d.fill(2, lambda ps: [(p, [0.0, 0.0]) for p in ps], lambda g: g[1])
    # two rounds of 2 all-wrong groups: 4 observations of 0/2 folded into β; α untouched
    assert kept == [] and m["dynamic/rounds"] == 2
    assert d.inner.alpha.sum() == pytest.approx(4.0) and d.inner.beta.sum() == pytest.approx(4.0 + 8.0)
    with pytest.raises(ConfigError, match="rl.selector_args.inner"):
        DynamicSampling(POOL, args={"inner": "dynamic"})
