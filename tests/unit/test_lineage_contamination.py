"""Contamination flags (spec atlas.md §4.1 contamination row) with a stub encoder of hand-set cosines."""

import numpy as np
import pytest

from mentor.lineage.canon import canonicalize
from mentor.lineage.contamination import ContamConfig, cosine_histogram, find_contamination, flag_items
from mentor.lineage.synth import DAPO_PREFIX, DAPO_SUFFIX


def test_flag_items_by_hand():
    exact = np.array([1, 1, 0, 0, 0], bool)
    near = np.zeros(5, bool)
    top1 = np.array([1.0, 1.0, 0.93, 0.5, np.nan])
    assert flag_items(exact, near, top1, 0.9).tolist() == [True, True, True, False, False]
    assert flag_items(exact, near, top1, 0.95).sum() == 2


def test_cosine_histogram_by_hand():
    assert cosine_histogram(np.array([0.65, 0.75, 0.85, 0.95, 0.9, np.nan])) == \
        {"<0.7": 1, "[0.7,0.8)": 1, "[0.8,0.9)": 1, ">=0.9": 2}


class StubEncoder:
    """Vectors looked up by canonical text: unit basis vectors, plus one paraphrase at cosine 0.93."""

    name = "stub"

    def __init__(self, table):
        self.table = table

    def encode(self, texts, progress=None):
        return np.stack([self.table[t] for t in texts]).astype(np.float32)

    def describe(self):
        return {"encoder": "stub"}


BENCH = [f"Benchmark problem number {w} asks for the sum of {w} and seven." for w in
         ("one", "two", "three", "four", "five")]
TRAIN = [f"Training problem {w} about apples and pears in a basket." for w in ("alpha", "beta", "gamma", "delta")]


def make_case():
    d = 16
    e = np.eye(d)
    table = {canonicalize(t): e[i] for i, t in enumerate(BENCH)}
    table.update({canonicalize(t): e[5 + i] for i, t in enumerate(TRAIN)})
    # training rows: 2 planted exact copies (one wrapped in the DAPO template), 1 paraphrase of item 2
    para = "In this benchmark question three, add three and seven together."
    table[canonicalize(para)] = 0.93 * e[2] + np.sqrt(1 - 0.93 ** 2) * e[15]
    train = TRAIN + [BENCH[0], DAPO_PREFIX + BENCH[1] + DAPO_SUFFIX, para]
    return train, StubEncoder(table)


@pytest.mark.parametrize("theta,flagged,leaked", [(0.9, 3, {4, 5, 6}), (0.95, 2, {4, 5})])
def test_planted_exact_and_paraphrase(theta, flagged, leaked):
    train, enc = make_case()
    ids = [f"b{i}" for i in range(5)]
    (m,), leak = find_contamination(train, {"bench": (ids, BENCH)}, ContamConfig(theta=theta), encoder=enc)
    assert m.exact.tolist() == [True, True, False, False, False]
    assert m.exact_rows[0] == [4] and m.exact_rows[1] == [5]
    np.testing.assert_allclose(m.top1_cos[2], 0.93, atol=1e-6)
    assert int(m.flagged.sum()) == flagged
    assert set(leak) == leaked


def test_near_duplicate_without_encoder():
    item = ("A farmer has twelve sheep and buys five more at the market on Monday morning; "
            "how many sheep does the farmer own at the end of the week?")
    edited = item.replace("Monday", "Sunday")
    (m,), leak = find_contamination(["unrelated text about geometry of circles"] * 3 + [edited],
                                    {"b": (["i0"], [item])}, ContamConfig())
    assert m.near.tolist() == [True] and m.near_rows[0][0][0] == 3 and m.near_rows[0][0][1] >= 0.8
    assert np.isnan(m.top1_cos[0]) and set(leak) == {3}
