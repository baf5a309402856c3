"""The ATLAS lineage rule: which atomic source a canonical record inherits, and why.

Paper: arXiv 2605.26971; code Celine-hxy/ATLAS @ d048f53, `s3_merge_sim_match_no_match_result.py` (spec atlas.md
§2.1 "Lineage rule"). Exact variant implemented, per record (one record = one canonical key):

1. A record's own source is the first non-null cleaned label among its occurrences (computed by the caller).
2. Known-source pass: a record labelled `numina_X` (canon.KNOWN_SOURCE_PREFIXED) takes `X` when one of its
   near-duplicate or semantic neighbours carries the own label `X` (best-similarity neighbour kept as evidence).
3. A record without a source, visited in date order (earliest first), looks at
   a. its verified near-duplicates (exact Jaccard >= `jaccard_threshold`)  [mentor's addition], then
   b. its top-`top_k` semantic neighbours (self excluded): if all of them share the record's own first dataset id,
      it keeps its own (null) source ("own_dataset"); otherwise
   and inherits the source of the **earliest-dated** candidate that has a source, similarity at or above the
   threshold (cosine >= `cos_threshold` for b) and a date strictly earlier than the record's. Ties on date go to
   the higher similarity, then to the lower record index.

Departures: (3a) the spec lets MinHash add candidates but keeps cosine as the judge; the issue asks cheaper stages
to resolve rows before the encoder runs, so a verified near-duplicate (Jaccard >= 0.8 on char 5-grams, a stricter
test than cosine >= 0.9) resolves the record on its own. Candidates may themselves have been attributed (not only
labelled): visiting records in date order makes this well defined, since a candidate is always strictly earlier.
Records or candidates without a date are treated as dated +infinity (a candidate without a date never qualifies).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .canon import KNOWN_SOURCE_PREFIXED

NO_DATE = np.iinfo(np.int64).max


@dataclass(frozen=True)
class Attribution:
    source: str | None
    evidence: str  # label | known_source | near | semantic | own_dataset | unattributed
    via: int = -1  # record index of the neighbour the source came from (-1: none)
    similarity: float = float("nan")  # Jaccard (near) or cosine (semantic, known_source)


def _earliest(cands: list[tuple[int, float]], date: np.ndarray) -> tuple[int, float]:
    return min(cands, key=lambda c: (int(date[c[0]]), -c[1], c[0]))


def resolve_lineage(own_source: list[str | None], date: np.ndarray, first_dataset: np.ndarray,
                    near: dict[int, list[tuple[int, float]]] | None = None,
                    semantic: dict[int, list[tuple[int, float]]] | None = None,
                    cos_threshold: float = 0.9, jaccard_threshold: float = 0.8, top_k: int = 3) -> list[Attribution]:
    """Attribute every record. `near[i]` lists (j, jaccard) verified near-duplicates of record i; `semantic[i]` its
    nearest neighbours (j, cosine), best first, self excluded. Returns one Attribution per record."""
    n = len(own_source)
    date = np.asarray(date, dtype=np.int64)
    first_dataset = np.asarray(first_dataset)
    if len(date) != n or len(first_dataset) != n:
        raise ValueError(f"resolve_lineage: own_source has {n} records, date {len(date)}, first_dataset {len(first_dataset)}")
    near, semantic = near or {}, semantic or {}
    source: list[str | None] = list(own_source)
    out: list[Attribution | None] = [None] * n

    for i in range(n):
        s = own_source[i]
        if s is None:
            continue
        if s in KNOWN_SOURCE_PREFIXED:
            target = KNOWN_SOURCE_PREFIXED[s]
            hits = [(j, jac) for j, jac in near.get(i, []) if jac >= jaccard_threshold and own_source[j] == target]
            hits += [(j, c) for j, c in semantic.get(i, [])[:top_k] if c >= cos_threshold and own_source[j] == target]
            if hits:
                j, sim = max(hits, key=lambda h: (h[1], -h[0]))
                source[i] = target
                out[i] = Attribution(target, "known_source", j, float(sim))
                continue
        out[i] = Attribution(s, "label")

    todo = [i for i in range(n) if own_source[i] is None]
    todo.sort(key=lambda i: (int(date[i]), i))
    for i in todo:
        di = int(date[i])
        cands = [(j, jac) for j, jac in near.get(i, [])
                 if jac >= jaccard_threshold and source[j] is not None and int(date[j]) < di]
        if cands:
            j, sim = _earliest(cands, date)
            source[i] = source[j]
            out[i] = Attribution(source[j], "near", j, float(sim))
            continue
        nbrs = semantic.get(i, [])[:top_k]
        if nbrs and len(nbrs) >= min(top_k, n - 1) and all(first_dataset[j] == first_dataset[i] for j, _ in nbrs):
            out[i] = Attribution(None, "own_dataset")
            continue
        cands = [(j, c) for j, c in nbrs if c >= cos_threshold and source[j] is not None and int(date[j]) < di]
        if cands:
            j, sim = _earliest(cands, date)
            source[i] = source[j]
            out[i] = Attribution(source[j], "semantic", j, float(sim))
            continue
        out[i] = Attribution(None, "unattributed")
    return out  # type: ignore[return-value]
