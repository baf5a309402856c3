"""Benchmark contamination (ATLAS stages 2 and 4) and the cleaned training split.

Paper: arXiv 2605.26971; code Celine-hxy/ATLAS @ d048f53, `s2_test_match.py` (exact benchmark match) and
`s4_sim_analysis.py` (per source x benchmark cosine matrix, each test item's top-1 training prompt, diagnostics at
0.70 / 0.80 / 0.90). Variant implemented (spec atlas.md §2.1 "Contamination"; thresholds are mentor's design,
the paper's "high-confidence leakage" threshold is not in the code):

- for each benchmark item b: exact hit (canonical key or raw key equal to a training row's), near-duplicate hit
  (a training row with exact char-5-gram Jaccard >= 0.8 among MinHash LSH candidates), top-1 training neighbour
  and its cosine;
- b is flagged if exact, near-duplicate or top-1 cosine >= theta (default 0.9);
- leaked training rows = rows that are an exact or near-duplicate match of any item, the top-1 neighbour (cosine
  >= theta) of a flagged item, or rows whose own top-1 benchmark item has cosine >= theta (the reverse search
  also catches a second paraphrase of one item, which a top-1-per-item search misses);
- report per benchmark: counts by evidence, top-1 cosine histogram with edges at 0.7 / 0.8 / 0.9, leaked rows per
  training source, and every flagged item with its evidence.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import canon as canon_mod
from .canon import CanonConfig
from .minhash import MinHashConfig, jaccard, lsh_candidate_pairs, shingle_set, signatures

HIST_EDGES = (0.7, 0.8, 0.9)


@dataclass(frozen=True)
class ContamConfig:
    theta: float = 0.9  # cosine at or above which a top-1 match is a leak
    canon: CanonConfig = field(default_factory=CanonConfig)
    minhash: MinHashConfig = field(default_factory=MinHashConfig)  # .threshold is the Jaccard threshold

    def __post_init__(self):
        if not 0.0 < self.theta <= 1.0:
            raise ValueError(f"ContamConfig.theta must be in (0, 1], got {self.theta}")


def flag_items(exact: np.ndarray, near: np.ndarray, top1_cos: np.ndarray, theta: float) -> np.ndarray:
    """Benchmark items flagged as leaked: exact or near-duplicate hit, or top-1 cosine >= theta."""
    top1 = np.nan_to_num(np.asarray(top1_cos, dtype=np.float64), nan=-1.0)
    return np.asarray(exact, bool) | np.asarray(near, bool) | (top1 >= theta)


def cosine_histogram(cos: np.ndarray, edges=HIST_EDGES) -> dict[str, int]:
    """Counts of top-1 cosines in [-1, e0), [e0, e1), ..., [e_last, 1]."""
    cos = np.asarray(cos, dtype=np.float64)
    cos = cos[~np.isnan(cos)]
    bounds = [-np.inf, *edges, np.inf]
    names = [f"<{edges[0]}"] + [f"[{a},{b})" for a, b in zip(edges[:-1], edges[1:])] + [f">={edges[-1]}"]
    return {n: int(((cos >= lo) & (cos < hi)).sum()) for n, lo, hi in zip(names, bounds[:-1], bounds[1:])}


@dataclass
class BenchmarkMatches:
    name: str
    item_ids: list[str]
    exact: np.ndarray  # bool [B]
    exact_rows: list[list[int]]  # training rows per item
    near: np.ndarray  # bool [B]
    near_rows: list[list[tuple[int, float]]]  # (row, jaccard)
    top1_row: np.ndarray  # int [B], -1 when no encoder
    top1_cos: np.ndarray  # float [B], nan when no encoder
    flagged: np.ndarray = None  # bool [B]


def find_contamination(train_texts: list[str], benchmarks: dict[str, tuple[list[str], list[str]]], cfg: ContamConfig,
                       encoder=None, train_emb: np.ndarray | None = None) -> tuple[list[BenchmarkMatches], dict]:
    """Match every benchmark (name -> (item ids, prompts)) against the training prompts.

    Returns the per-benchmark matches and `leaked`: {train row -> list of (benchmark, item id, evidence, score)}.
    `train_emb` may be passed precomputed (cached) embeddings of the canonical training prompts."""
    canon_train = [canon_mod.keys(t, cfg.canon) for t in train_texts]
    key_rows: dict[str, list[int]] = {}
    for r, (_, k, rk) in enumerate(canon_train):
        key_rows.setdefault(k, []).append(r)
        if rk != k:
            key_rows.setdefault(rk, []).append(r)
    train_canon = [c for c, _, _ in canon_train]
    train_sigs = signatures(train_canon, cfg.minhash) if train_canon else np.zeros((0, cfg.minhash.num_perm), np.uint32)
    if encoder is not None and train_emb is None and train_canon:
        train_emb = encoder.encode(train_canon)
    train_index = None
    if train_emb is not None and len(train_emb):
        from .semantic import NeighbourIndex

        train_index = NeighbourIndex(train_emb)
    shingles: dict[int, frozenset] = {}
    leaked: dict[int, list[tuple[str, str, str, float]]] = {}
    results = []
    for name, (ids, prompts) in benchmarks.items():
        bc = [canon_mod.keys(p, cfg.canon) for p in prompts]
        b_canon = [c for c, _, _ in bc]
        exact_rows = [sorted(set(key_rows.get(k, []) + key_rows.get(rk, []))) for _, k, rk in bc]
        # near duplicates: LSH over train + benchmark signatures, keep cross pairs, verify exactly
        near_rows: list[list[tuple[int, float]]] = [[] for _ in bc]
        if b_canon and train_canon:
            b_sigs = signatures(b_canon, cfg.minhash)
            n_t = len(train_canon)
            pairs = lsh_candidate_pairs(np.concatenate([train_sigs, b_sigs]), cfg.minhash)
            pairs = pairs[(pairs[:, 0] < n_t) & (pairs[:, 1] >= n_t)]
            for r, b in pairs:
                r, b = int(r), int(b) - n_t
                s_r = shingles.get(r) or shingles.setdefault(r, shingle_set(train_canon[r], cfg.minhash.ngram))
                jac = jaccard(s_r, shingle_set(b_canon[b], cfg.minhash.ngram))
                if jac >= cfg.minhash.threshold and r not in exact_rows[b]:
                    near_rows[b].append((r, jac))
        top1_row = np.full(len(bc), -1, dtype=np.int64)
        top1_cos = np.full(len(bc), np.nan)
        b_emb = None
        if train_index is not None and b_canon:
            b_emb = encoder.encode(b_canon)
            sims, nn = train_index.search(b_emb, 1)
            top1_row, top1_cos = nn[:, 0].astype(np.int64), sims[:, 0].astype(np.float64)
        m = BenchmarkMatches(name, list(ids), np.array([bool(e) for e in exact_rows]), exact_rows,
                             np.array([bool(n) for n in near_rows]), near_rows, top1_row, top1_cos)
        m.flagged = flag_items(m.exact, m.near, m.top1_cos, cfg.theta)
        for b, item in enumerate(ids):
            for r in exact_rows[b]:
                leaked.setdefault(r, []).append((name, item, "exact", 1.0))
            for r, jac in near_rows[b]:
                leaked.setdefault(r, []).append((name, item, "near", jac))
            if m.flagged[b] and top1_row[b] >= 0 and top1_cos[b] >= cfg.theta:
                leaked.setdefault(int(top1_row[b]), []).append((name, item, "semantic", float(top1_cos[b])))
        if b_emb is not None:  # reverse: each training row's top-1 item in this benchmark
            from .semantic import NeighbourIndex

            sims, nn = NeighbourIndex(b_emb, kind="flat").search(train_emb, 1)
            for r in np.flatnonzero(sims[:, 0] >= cfg.theta):
                b = int(nn[r, 0])
                if not any(e[0] == name and e[1] == ids[b] for e in leaked.get(int(r), [])):
                    leaked.setdefault(int(r), []).append((name, ids[b], "semantic", float(sims[r, 0])))
                    m.flagged[b] = True
        results.append(m)
    return results, leaked


def report(matches: list[BenchmarkMatches], leaked: dict, train_sources: list[str | None], train_ids: list[str],
           theta: float) -> dict:
    """JSON-able contamination report."""
    out = {"theta": theta, "train_rows": len(train_ids), "leaked_rows": len(leaked), "benchmarks": {}}
    for m in matches:
        rows_b = {r for r, ev in leaked.items() if any(e[0] == m.name for e in ev)}
        per_source: dict[str, int] = {}
        for r in rows_b:
            s = train_sources[r] or "(unattributed)"
            per_source[s] = per_source.get(s, 0) + 1
        items = []
        for b in np.flatnonzero(m.flagged):
            ev = "exact" if m.exact[b] else "near" if m.near[b] else "semantic"
            items.append({"item": m.item_ids[b], "evidence": ev,
                          "exact_rows": [train_ids[r] for r in m.exact_rows[b]],
                          "near_rows": [[train_ids[r], round(j, 4)] for r, j in m.near_rows[b]],
                          "top1_row": train_ids[m.top1_row[b]] if m.top1_row[b] >= 0 else None,
                          "top1_cos": None if np.isnan(m.top1_cos[b]) else round(float(m.top1_cos[b]), 4)})
        out["benchmarks"][m.name] = {
            "items": len(m.item_ids), "flagged": int(m.flagged.sum()), "exact": int(m.exact.sum()),
            "near": int((m.near & ~m.exact).sum()),
            "semantic_only": int((m.flagged & ~m.exact & ~m.near).sum()),
            "leaked_rows": len(rows_b), "leaked_rows_by_source": dict(sorted(per_source.items())),
            "top1_cos_histogram": cosine_histogram(m.top1_cos) if not np.all(np.isnan(m.top1_cos)) else None,
            "flagged_items": items}
    return out


def report_markdown(rep: dict) -> str:
    lines = ["# Contamination report", "", f"theta = {rep['theta']}; training rows: {rep['train_rows']}; "
             f"leaked rows removed: {rep['leaked_rows']}.", "",
             "| benchmark | items | flagged | exact | near | semantic only | leaked rows | top-1 cos histogram |",
             "|---|---:|---:|---:|---:|---:|---:|---|"]
    for name, b in rep["benchmarks"].items():
        hist = ", ".join(f"{k}: {v}" for k, v in (b["top1_cos_histogram"] or {}).items()) or "n/a (no encoder)"
        lines.append(f"| {name} | {b['items']} | {b['flagged']} | {b['exact']} | {b['near']} | {b['semantic_only']} | "
                     f"{b['leaked_rows']} | {hist} |")
    lines += ["", "Leaked rows by training source:", ""]
    for name, b in rep["benchmarks"].items():
        lines.append(f"- {name}: " + (", ".join(f"{s} {c}" for s, c in b["leaked_rows_by_source"].items()) or "none"))
    return "\n".join(lines) + "\n"
