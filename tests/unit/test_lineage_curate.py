"""DAPO++ curation (spec atlas.md §4.1 curate row): 100 base rows with 7 leaked, 50 learnable pool rows."""

import numpy as np

from mentor.lineage.curate import CurateConfig, Row, curate
from mentor.lineage.synth import _partition, make_problem


def problems(n, group, seed):
    rng = np.random.default_rng(seed)
    v = _partition(np.random.default_rng(0), 4)[group]
    return [make_problem(rng, v)[0] for _ in range(n)]


def make_case(pool_extra=()):
    bench = problems(10, 3, seed=1)
    base_text = problems(93, 0, seed=2) + bench[:7]  # 7 planted exact copies of benchmark items
    base = [Row(f"base{i}", t, "dapo", {"id": f"base{i}"}) for i, t in enumerate(base_text)]
    pool = [Row(f"pool{i}", t, "deepmath_stack_exchange", {"id": f"pool{i}"}, sca="01")
            for i, t in enumerate(problems(50, 1, seed=3))] + list(pool_extra)
    return base, pool, {"bench": ([f"b{i}" for i in range(10)], bench)}


def test_curate_spec_case():
    base, pool, bench = make_case()
    rows, ledger, summary = curate(base, pool, bench, CurateConfig(target=100, seed=0))
    assert summary["removed"] == 7 and summary["kept"] == 93 and summary["added"] == 7 and len(rows) == 100
    removed = [e for e in ledger if e["action"] == "remove"]
    added = [e for e in ledger if e["action"] == "add"]
    assert len(removed) == 7 and len(added) == 7
    assert {e["id"] for e in removed} == {f"base{i}" for i in range(93, 100)}
    assert all(e["evidence"][0]["match"] == "exact" for e in removed)
    assert not {r.id for r in rows} & {e["id"] for e in removed}  # no leaked row remains
    assert [e["draw_index"] for e in added] == list(range(7))  # nothing skipped: first 7 draws
    assert sum(e["action"] == "skip" for e in ledger) == 43  # every other eligible row is in the ledger


def test_curate_is_deterministic_given_the_seed():
    base, pool, bench = make_case()
    ids = lambda seed: [r.id for r in curate(base, pool, bench, CurateConfig(target=100, seed=seed))[0][93:]]  # noqa
    assert ids(0) == ids(0) and ids(0) != ids(1)


def test_pool_filters_and_reasons():
    base, pool, bench = make_case()
    extra = [
        Row("mcq", "Which is larger? (A) 3 (B) 4 (C) 5", "deepmath_stack_exchange", {}, sca="01"),
        Row("other", "A fresh problem about seven kites and two drums.", "olympiads", {}, sca="01"),
        Row("wrongclass", "Another fresh problem about nine bells.", "deepmath_stack_exchange", {}, sca="11"),
        Row("leak", bench["bench"][1][1], "deepmath_stack_exchange", {}, sca="01"),
        Row("dup", base[0].text, "deepmath_stack_exchange", {}, sca="01"),
        Row("fallback", "A fresh problem about three owls.", "deepmath_stack_exchange", {}, pass_rate=0.0),
        Row("nolabel", "A fresh problem about five foxes.", "deepmath_stack_exchange", {}),
    ]
    _, ledger, summary = curate(base, pool[:3] + extra, bench, CurateConfig(target=100, seed=0))
    reason = {e["id"]: e["reason"] for e in ledger if e["action"] == "reject"}
    assert reason["mcq"] == "multiple-choice"
    assert reason["other"].startswith("source 'olympiads' not in")
    assert reason["wrongclass"] == "SCA class 11 is not 01"
    assert reason["leak"].startswith("leaked: bench:b1 (exact)")
    assert reason["dup"] == "exact duplicate of a kept base row"
    assert reason["fallback"] == "base pass rate 0.0 not in (0, 1)"
    assert reason["nolabel"] == "no SCA label and no base pass rate"
    assert summary["added"] == 3 and summary["shortfall"] == 4


def test_near_duplicate_pool_rows_are_drawn_once():
    base, pool, bench = make_case()
    twin = Row("twin", pool[0].text.replace(".", " .", 1), "deepmath_stack_exchange", {}, sca="01")
    rows, ledger, _ = curate(base, [pool[0], twin], bench, CurateConfig(target=100, seed=0))
    assert len(rows) == 94
    assert [e["reason"] for e in ledger if e["action"] == "reject"] == ["near-duplicate of a kept or drawn row"]
