"""SCA (source-level counterfactual attribution) classes and the ATLAS quality score Q.

Paper: arXiv 2605.26971; code Celine-hxy/ATLAS @ d048f53, `Benchmark_Scoring/compute_scores.py` (Q) and
`analyze_features.py` (feature encoding). Spec atlas.md §2.2-2.3.

SCA: for an instance i of atomic source s, c_base(i) and c_after(i) in {0, 1} are the correctness of the shared
base model and of the RL checkpoint trained on s alone. Correctness = mean@k >= 0.5 (ATLAS validation: n = 4 samples
at T = 0.6). **Digit convention: first digit = base, second = after** ("01" = learnable, "10" = degraded); every
output carries `sca_digits = "base,after"`.

Released item scores (`analyze_features.py`) encode 0.0 -> 00, 0.2 -> 10, 0.5 -> 11, 1.0 -> 01. Known inconsistency,
flagged by `from_released_scores`: in the released features p10 is the largest class (0.52-0.72) and the <= 3B
weights reward p10 (+1.5) while penalising p01 (-0.3), which only makes sense if the released digits are
(after, base) or the weights are purely empirical fits. The importer takes the digit order explicitly.

Q (exactly `compute_scores.py`):
    L_SCA = a10 p10 + a01 p01 + a11 p11 + a00 p00
    S1a = 0.5 R_con + 0.3 (1 - 0.5 R_mcq) + 0.2 P_reuse,  P_reuse = clip(4 / avg_occ, 0.3, 1)
    S1b = sigmoid(3 L_SCA) + 0.05 H(p00, p10, p11, p01) / ln 4   (H in nats)
    S1c = 1 - N_leak / N
    S1 = w1a S1a + w1b S1b + w1c S1c;  lambda(M) = clip(log10 M, 0, 1) (M in billions)
    S2 = lambda dMean@4(MATH500) / 20 + (1 - lambda) clip(L_SCA, 0, 1)
    S3 = lambda dPass@4(MATH500) / 15 + (1 - lambda) clip(L_SCA, 0, 1)
    Q = w1 S1 + w2 S2 + w3 S3
Both presets are hand-set fits to 5-6 datasets (marked so in every output); weights are overridable.
"""

from __future__ import annotations

import json
import math
import re
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

SCA_DIGITS = "base,after"
CLASSES = ("00", "01", "10", "11")
PRESET_NOTE = "fitted on 5-6 datasets (ATLAS Benchmark_Scoring/compute_scores.py); not a validated metric"


# ------------------------------------------------------------------------------------ correctness input

def read_eval(path: str | Path) -> dict[str, float]:
    """Per-item pass rate from a JSONL file (e.g. `mentor eval --out`). Accepted per line, with an "id":
    "correct": bool | 0/1 | [bool, ...]  (list -> mean over samples), or "pass_rate" / "mean" / "score": float in [0, 1].
    Duplicate ids are an error."""
    out: dict[str, float] = {}
    from ..runs import iter_jsonl_objects

    for where, rec in iter_jsonl_objects(path):
        if "id" not in rec:
            raise ValueError(f"{where}: expected an object with an 'id'")
        rid = str(rec["id"])
        if rid in out:
            raise ValueError(f"{where}: duplicate id {rid!r}")
        if "correct" in rec:
            c = rec["correct"]
            vals = c if isinstance(c, list) else [c]
            if not vals or not all(isinstance(v, (bool, int, float)) and v in (0, 1, True, False) for v in vals):
                raise ValueError(f"{where}: 'correct' must be a bool, 0/1, or a non-empty list of them, got {c!r}")
            out[rid] = float(np.mean([float(v) for v in vals]))
        else:
            for k in ("pass_rate", "mean", "score"):
                if k in rec:
                    v = rec[k]
                    if not isinstance(v, (int, float)) or not 0.0 <= float(v) <= 1.0:
                        raise ValueError(f"{where}: {k!r} must be a number in [0, 1], got {v!r}")
                    out[rid] = float(v)
                    break
            else:
                raise ValueError(f"{where}: no correctness field (expected 'correct' or 'pass_rate')")
    return out


def correctness(pass_rate: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """c(i) = 1 if mean@k >= threshold."""
    return (np.asarray(pass_rate, dtype=np.float64) >= threshold).astype(np.int8)


def sca_classes(c_base, c_after) -> list[str]:
    """Class labels with digits (base, after): "01" learnable, "10" degraded, "11", "00"."""
    b, a = np.asarray(c_base, dtype=np.int64), np.asarray(c_after, dtype=np.int64)
    if b.shape != a.shape:
        raise ValueError(f"sca_classes: base has {b.shape} items, after has {a.shape}")
    if not (np.isin(b, (0, 1)).all() and np.isin(a, (0, 1)).all()):
        raise ValueError("sca_classes: correctness must be 0/1")
    return [f"{x}{y}" for x, y in zip(b, a)]


def sca_fractions(classes: list[str]) -> dict[str, float]:
    """p00, p01, p10, p11: class fractions (digits base, after)."""
    n = len(classes)
    if n == 0:
        raise ValueError("sca_fractions: no instances")
    bad = set(classes) - set(CLASSES)
    if bad:
        raise ValueError(f"sca_fractions: unknown classes {sorted(bad)}")
    return {f"p{c}": sum(1 for x in classes if x == c) / n for c in CLASSES}


_RELEASED = {0.0: "00", 0.2: "10", 0.5: "11", 1.0: "01"}


def from_released_scores(scores, digit_order: str = "base,after") -> list[str]:
    """Classes from the released item-score encoding (0.0 -> 00, 0.2 -> 10, 0.5 -> 11, 1.0 -> 01 as written in
    `analyze_features.py`). With `digit_order="after,base"` the digits are swapped into mentor's (base, after).
    Warns about the known inconsistency of the released features either way."""
    if digit_order not in ("base,after", "after,base"):
        raise ValueError(f"digit_order must be 'base,after' or 'after,base', got {digit_order!r}")
    warnings.warn("released ATLAS SCA features: p10 is the largest class (0.52-0.72) and the <=3B weights reward p10 "
                  "while penalising p01, inconsistent with 10 = degraded unless the released digits are (after, base); "
                  f"importing with digit order {digit_order}", stacklevel=2)
    out = []
    for s in scores:
        c = _RELEASED.get(round(float(s), 6))
        if c is None:
            raise ValueError(f"from_released_scores: {s!r} is not one of {sorted(_RELEASED)}")
        out.append(c if digit_order == "base,after" else c[::-1])
    return out


# ------------------------------------------------------------------------------------------------- Q

@dataclass(frozen=True)
class QWeights:
    a10: float
    a01: float
    a11: float
    a00: float
    w1: float
    w2: float
    w3: float
    w1a: float
    w1b: float
    w1c: float


PRESETS: dict[str, QWeights] = {
    "atlas_le3b": QWeights(a10=1.5, a01=-0.3, a11=-0.5, a00=-1.5, w1=0.60, w2=0.25, w3=0.15, w1a=0.20, w1b=0.55, w1c=0.25),
    "atlas_gt3b": QWeights(a10=0.5, a01=1.5, a11=-0.8, a00=-0.8, w1=0.35, w2=0.35, w3=0.30, w1a=0.20, w1b=0.50, w1c=0.30),
}


def preset_for(model_size_b: float) -> str:
    return "atlas_le3b" if model_size_b <= 3.0 else "atlas_gt3b"


def weights(preset: str, **overrides: float) -> QWeights:
    if preset not in PRESETS:
        raise ValueError(f"unknown Q preset {preset!r}; choose one of {', '.join(PRESETS)}")
    unknown = set(overrides) - set(asdict(PRESETS[preset]))
    if unknown:
        raise ValueError(f"unknown Q weight(s) {sorted(unknown)}; known: {', '.join(asdict(PRESETS[preset]))}")
    return replace(PRESETS[preset], **overrides)


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def entropy_nats(ps) -> float:
    return float(-sum(p * math.log(p) for p in ps if p > 0))


def quality_score(p00: float, p01: float, p10: float, p11: float, r_con: float, r_mcq: float, avg_occ: float,
                  leak_frac: float, d_mean4: float, d_pass4: float, model_size_b: float, w: QWeights) -> dict[str, float]:
    """Q and every intermediate term (see module docstring). p's are SCA fractions with digits (base, after)."""
    ps = (p00, p01, p10, p11)
    if any(p < 0 for p in ps) or abs(sum(ps) - 1.0) > 1e-6:
        raise ValueError(f"quality_score: SCA fractions must be >= 0 and sum to 1, got {ps}")
    if avg_occ <= 0:
        raise ValueError(f"quality_score: avg_occ must be > 0, got {avg_occ}")
    if model_size_b <= 0:
        raise ValueError(f"quality_score: model size (billions) must be > 0, got {model_size_b}")
    l_sca = w.a10 * p10 + w.a01 * p01 + w.a11 * p11 + w.a00 * p00
    p_reuse = min(max(4.0 / avg_occ, 0.3), 1.0)
    s1a = 0.5 * r_con + 0.3 * (1 - 0.5 * r_mcq) + 0.2 * p_reuse
    s1b = _sigmoid(3 * l_sca) + 0.05 * entropy_nats((p00, p10, p11, p01)) / math.log(4)
    s1c = 1 - leak_frac
    s1 = w.w1a * s1a + w.w1b * s1b + w.w1c * s1c
    lam = min(max(math.log10(model_size_b), 0.0), 1.0)
    clip_l = min(max(l_sca, 0.0), 1.0)
    s2 = lam * d_mean4 / 20 + (1 - lam) * clip_l
    s3 = lam * d_pass4 / 15 + (1 - lam) * clip_l
    q = w.w1 * s1 + w.w2 * s2 + w.w3 * s3
    return {"L_SCA": l_sca, "P_reuse": p_reuse, "S1a": s1a, "S1b": s1b, "S1c": s1c, "S1": s1, "lambda": lam,
            "S2": s2, "S3": s3, "Q": q}


# ------------------------------------------------------------------------------ dataset-level features

_OPTION = re.compile(r"\(([A-E])\)|(?:^|\s)([A-E])[.:)]\s")


def is_mcq(text: str) -> bool:
    """Heuristic multiple-choice detector: option markers for both A and B, as "(A) .. (B)" or "A. .. B." / "A) .. B)"."""
    letters = {a or b for a, b in _OPTION.findall(text)}
    return {"A", "B"} <= letters


def dataset_features(store: str | Path, dataset: str) -> dict[str, float]:
    """R_con, R_mcq, avg_occ and N of one traced dataset, from a `mentor data trace` store:
    R_con = fraction of the dataset's records that occur more than once whose occurrences all give one answer
    (1.0 if none repeats); R_mcq = fraction of records whose prompt looks multiple-choice; avg_occ = mean number of
    occurrences (over all traced datasets) of the dataset's records."""
    import pandas as pd

    store = Path(store)
    lin = pd.read_parquet(store / "lineage.parquet", columns=["dataset", "key"])
    keys = set(lin.loc[lin["dataset"] == dataset, "key"])
    if not keys:
        raise ValueError(f"{store}: no rows of dataset {dataset!r} in the lineage table")
    rec = pd.read_parquet(store / "records.parquet", columns=["key", "canon", "n_occ", "n_answers"])
    rec = rec[rec["key"].isin(keys)]
    rep = rec[rec["n_occ"] > 1]
    r_con = float((rep["n_answers"] <= 1).mean()) if len(rep) else 1.0
    return {"N": int(len(rec)), "R_con": r_con, "R_mcq": float(np.mean([is_mcq(t) for t in rec["canon"]])),
            "avg_occ": float(rec["n_occ"].mean())}
