"""`mentor data curate`: decontaminate a base set, then refill it with learnable rows (the DAPO++ recipe).

Paper: arXiv 2605.26971 (ATLAS), DAPO++ as described by the paper and summaries (spec atlas.md §2.4; the released
`DAPO_Plus.parquet` has no per-row lineage, SCA fields or selection ledger). Recipe:
1. start from the base set (DAPO-Math-17k in the paper);
2. remove rows whose leakage check matches a benchmark (contamination.py: exact, near-duplicate, cosine >= theta);
3. refill to `target` with randomly drawn rows of the refill pool that are: from the chosen sources
   (`deepmath_stack_exchange` in the paper), not multiple-choice, not leaked, not a (near-)duplicate of a kept or an
   already drawn row, and SCA-learnable ("01", digits base,after). Fallback when no SCA labels are given:
   base-model pass rate strictly inside (0, 1) [our design, spec §2.5].

mentor's additions: a ledger with one JSON line per decision (every removed base row with its benchmark evidence,
every pool row rejected with its reason, every drawn row with source, SCA class and random draw index, every
eligible row not needed), deterministic given the seed (one `numpy.random.default_rng(seed).permutation` of the
eligible pool, taken in order, skipping rows that duplicate an earlier draw).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import canon as canon_mod
from .contamination import ContamConfig, find_contamination
from .minhash import UnionFind, jaccard, lsh_candidate_pairs, shingle_set, signatures
from .sca import is_mcq


@dataclass(frozen=True)
class CurateConfig:
    target: int = 17_000
    sources: tuple[str, ...] = ("deepmath_stack_exchange",)  # refill sources; () = any source
    learnable: str = "01"  # required SCA class (digits base,after)
    allow_mcq: bool = False
    seed: int = 0
    contam: ContamConfig = field(default_factory=ContamConfig)


@dataclass
class Row:
    """A row as curation sees it: its id, prompt text, atomic source, SCA class / base pass rate, and the raw dict."""

    id: str
    text: str
    source: str | None
    raw: dict
    sca: str | None = None
    pass_rate: float | None = None


def curate(base: list[Row], pool: list[Row], benchmarks: dict[str, tuple[list[str], list[str]]], cfg: CurateConfig,
           encoder=None, base_emb: np.ndarray | None = None, pool_emb: np.ndarray | None = None
           ) -> tuple[list[Row], list[dict], dict]:
    """Returns (curated rows: kept base rows in order, then drawn pool rows in draw order), the ledger, a summary.
    `base_emb` / `pool_emb`: optional precomputed (cached) embeddings of the canonical prompts."""
    ledger: list[dict] = []
    # 1-2. decontaminate the base set
    _, leaked = find_contamination([r.text for r in base], benchmarks, cfg.contam, encoder=encoder,
                                   train_emb=base_emb)
    kept = []
    for i, r in enumerate(base):
        if i in leaked:
            ev = leaked[i]
            ledger.append({"action": "remove", "set": "base", "id": r.id, "reason": "leaked",
                           "evidence": [{"benchmark": b, "item": it, "match": m, "score": round(s, 4)} for b, it, m, s in ev]})
        else:
            kept.append(r)
    need = cfg.target - len(kept)
    # 3. refill candidates
    _, pool_leaked = find_contamination([r.text for r in pool], benchmarks, cfg.contam, encoder=encoder,
                                        train_emb=pool_emb) if pool else ({}, {})
    kept_keys = {canon_mod.keys(r.text, cfg.contam.canon)[1] for r in kept}
    eligible = []
    for j, r in enumerate(pool):
        reason = None
        if cfg.sources and r.source not in cfg.sources:
            reason = f"source {r.source!r} not in {list(cfg.sources)}"
        elif not cfg.allow_mcq and is_mcq(r.text):
            reason = "multiple-choice"
        elif j in pool_leaked:
            reason = "leaked: " + ", ".join(f"{b}:{it} ({m})" for b, it, m, _ in pool_leaked[j])
        elif canon_mod.keys(r.text, cfg.contam.canon)[1] in kept_keys:
            reason = "exact duplicate of a kept base row"
        elif r.sca is not None:
            if r.sca != cfg.learnable:
                reason = f"SCA class {r.sca} is not {cfg.learnable}"
        elif r.pass_rate is not None:
            if not 0.0 < r.pass_rate < 1.0:
                reason = f"base pass rate {r.pass_rate} not in (0, 1)"
        else:
            reason = "no SCA label and no base pass rate"
        if reason:
            ledger.append({"action": "reject", "set": "pool", "id": r.id, "reason": reason})
        else:
            eligible.append(j)
    # near-duplicate clusters among kept base rows and eligible pool rows
    texts = [canon_mod.keys(r.text, cfg.contam.canon)[0] for r in kept] + \
            [canon_mod.keys(pool[j].text, cfg.contam.canon)[0] for j in eligible]
    uf = UnionFind(len(texts))
    if len(texts) > 1:
        mh = cfg.contam.minhash
        for a, b in lsh_candidate_pairs(signatures(texts, mh), mh):
            if jaccard(shingle_set(texts[a], mh.ngram), shingle_set(texts[b], mh.ngram)) >= mh.threshold:
                uf.union(int(a), int(b))
    taken_clusters = {uf.find(i) for i in range(len(kept))}
    # exact duplicates inside the pool share one cluster too
    key_first: dict[str, int] = {}
    for e, j in enumerate(eligible):
        k = canon_mod.keys(pool[j].text, cfg.contam.canon)[1]
        if k in key_first:
            uf.union(len(kept) + key_first[k], len(kept) + e)
        else:
            key_first[k] = e
    order = np.random.default_rng(cfg.seed).permutation(len(eligible)) if eligible else np.zeros(0, np.int64)
    drawn: list[Row] = []
    for draw_index, e in enumerate(order):
        j = eligible[int(e)]
        r = pool[j]
        c = uf.find(len(kept) + int(e))
        if len(drawn) >= max(need, 0):
            ledger.append({"action": "skip", "set": "pool", "id": r.id, "reason": "eligible, target reached",
                           "draw_index": draw_index})
        elif c in taken_clusters:
            ledger.append({"action": "reject", "set": "pool", "id": r.id, "draw_index": draw_index,
                           "reason": "near-duplicate of a kept or drawn row"})
        else:
            taken_clusters.add(c)
            drawn.append(r)
            ledger.append({"action": "add", "set": "pool", "id": r.id, "source": r.source, "sca": r.sca,
                           "pass_rate": r.pass_rate, "draw_index": draw_index})
    summary = {"base_rows": len(base), "removed": len(base) - len(kept), "kept": len(kept), "need": max(need, 0),
               "pool_rows": len(pool), "eligible": len(eligible), "added": len(drawn),
               "final_rows": len(kept) + len(drawn), "target": cfg.target, "seed": cfg.seed,
               "shortfall": max(need, 0) - len(drawn), "sca_digits": "base,after"}
    return kept + drawn, ledger, summary
