"""`mentor data trace`: the ATLAS lineage pipeline, staged, streamed, checkpointed and resumable.

Paper: arXiv 2605.26971 (ATLAS); code Celine-hxy/ATLAS @ d048f53 (`s1_edit_train_json.py`, `s3_*`). Stages
(spec atlas.md §2.1) and where each writes in the store directory `OUT/`:

  ingest    stream every dataset, canonicalise, hash      rows/part-DDDD-CCCCC.parquet (<= part_rows rows each;
                                                          datasets spread over worker processes)
  records   merge occurrences by canonical key            records.parquet (own source, earliest date, ...)
  minhash   MinHash signatures of every record            minhash/part-*.npy (multiprocessing, per chunk)
  near      LSH candidates, exact-Jaccard verification    near_edges.parquet
  embed     encoder on every record, only if some record  emb/part-*.npy (per chunk)
            is still unresolved after exact + near
  semantic  FAISS top-k of the unresolved records         semantic_edges.parquet
  resolve   the lineage rule (attribution.py)             lineage.parquet (row -> atomic source, evidence,
                                                          similarity), records_attributed.parquet,
                                                          composition.{json,md,png}

`state.json` records the config, the ingest cursor and finished stages; every file is written atomically, so a
killed trace re-run with the same arguments continues from the last finished part. Departures from the official
code: the MinHash stage and the FAISS index (official: brute-force cosine, no near duplicates); near-duplicate
pairs are verified only when at least one side has no label of its own (pairs of two labelled records cannot
change an attribution) unless `verify_all_pairs`; the semantic stage embeds the pool only when cheaper stages
left something unresolved (the pool itself is all records, as in the official top-3 search).
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import time
import dataclasses
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..runs import atomic_write_text
from . import canon as canon_mod
from .attribution import Attribution, resolve_lineage
from .canon import CanonConfig, clean_label
from .io import NO_DATE, DatasetSpec, FieldMap, atomic_npy, atomic_parquet, format_date, iter_rows, parse_date
from .minhash import MinHashConfig, UnionFind, jaccard, lsh_candidate_pairs, shingle_set, signatures

STORE_FORMAT = "mentor-lineage-trace/1"
UNATTRIBUTED = "(unattributed)"


@dataclass(frozen=True)
class TraceConfig:
    canon: CanonConfig = field(default_factory=CanonConfig)
    minhash: MinHashConfig = field(default_factory=MinHashConfig)
    fields: FieldMap = field(default_factory=FieldMap)
    encoder: str = "minilm"  # minilm | hashed | none (skip the semantic stage)
    encoder_dim: int = 512  # hashed encoder only
    model_path: str | None = None  # local sentence-transformers directory for minilm
    index: str = "auto"  # auto | flat | hnsw | ivf
    cos_threshold: float = 0.9  # lineage cosine threshold [code]
    top_k: int = 3  # semantic neighbours per unresolved record [code]
    verify_all_pairs: bool = False  # verify LSH pairs between two labelled records too
    discover_wrappers: bool = True  # find dataset-specific instruction templates first (canon.discover_wrappers)
    discover_sample: int = 5_000  # prompts sampled per dataset (its first rows) for wrapper discovery
    workers: int = 2  # processes for MinHash and verification
    part_rows: int = 100_000  # rows per ingest part
    chunk_records: int = 50_000  # records per MinHash / embedding checkpoint chunk

    def to_dict(self) -> dict:
        d = asdict(self)
        d["canon"] = self.canon.to_dict()
        return d


def _progress(total: int, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="rows", disable=None, mininterval=2.0, leave=False)


class TraceStore:
    """A trace output directory: state, stages, timings."""

    def __init__(self, out: str | Path, cfg: TraceConfig, datasets: list[DatasetSpec]):
        self.out = Path(out)
        self.cfg = cfg
        self.datasets = datasets
        self.state_path = self.out / "state.json"
        want = {"format": STORE_FORMAT, "config": cfg.to_dict(),
                "datasets": [asdict(d) for d in datasets]}
        if self.state_path.exists():
            state = json.loads(self.state_path.read_text())
            for k in ("format", "config", "datasets"):
                if json.loads(json.dumps(state.get(k))) != json.loads(json.dumps(want[k])):
                    raise ValueError(f"{self.out}: holds a trace made with a different {k}; use a new --out "
                                     "directory (or delete it) to start over")
            self.state = state
        else:
            self.out.mkdir(parents=True, exist_ok=True)
            self.state = {**want, "ingest": {"datasets_done": []}, "done": [], "timings": {}}
            self.save()

    _cpu_mark = 0.0

    def mark(self) -> None:
        self._cpu_mark = self.cpu_seconds()

    @property
    def canon(self) -> CanonConfig:
        """The canonicalisation in force: the configured one plus discovered wrappers."""
        found = tuple(tuple(w) for w in self.state.get("wrappers", []))
        return dataclasses.replace(self.cfg.canon, extra_wrappers=tuple(self.cfg.canon.extra_wrappers) + found)

    def save(self) -> None:
        atomic_write_text(self.state_path, json.dumps(self.state, indent=1, default=str))

    def done(self, stage: str) -> bool:
        return stage in self.state["done"]

    def cpu_seconds(self) -> float:
        """CPU seconds used so far by this process and its finished children (the worker pools)."""
        import resource

        me, ch = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return me.ru_utime + me.ru_stime + ch.ru_utime + ch.ru_stime

    def finish(self, stage: str, rows: int, seconds: float, **extra) -> None:
        cpu = self.cpu_seconds()
        self.state["done"].append(stage)
        self.state["timings"][stage] = {"rows": int(rows), "seconds": round(seconds, 3),
                                        "cpu_s": round(cpu - self._cpu_mark, 3),
                                        "rows_per_s": round(rows / seconds, 1) if seconds > 0 else None, **extra}
        self.save()


# ============================================================================ stage: wrappers

def wrappers_stage(store: TraceStore) -> None:
    """Sample each dataset's first prompts and record the instruction templates they share."""
    t0 = time.perf_counter()
    store.mark()
    cfg, sample, n = store.cfg, {}, 0
    for spec in store.datasets:
        texts = []
        for i, row in enumerate(iter_rows(spec.path)):
            if i >= cfg.discover_sample:
                break
            try:
                texts.append(canon_mod.prompt_text(cfg.fields.prompt_of(row, f"{spec.path} row {i}")))
            except TypeError as e:
                raise ValueError(f"{spec.path} row {i}: {e}") from None
        sample[spec.name] = texts
        n += len(texts)
    store.state["wrappers"] = [list(w) for w in canon_mod.discover_wrappers(sample)] if cfg.discover_wrappers else []
    store.finish("wrappers", n, time.perf_counter() - t0, found=len(store.state["wrappers"]))


# ============================================================================ stage: ingest

ROW_COLUMNS = ("dataset", "row_idx", "row_id", "key", "raw_key", "canon", "label", "date", "answer")


def _row_schema():
    import pyarrow as pa

    return pa.schema([("dataset", pa.int32()), ("row_idx", pa.int64()), ("row_id", pa.string()), ("key", pa.string()),
                      ("raw_key", pa.string()), ("canon", pa.string()), ("label", pa.string()), ("date", pa.int64()),
                      ("answer", pa.string())])


def _ingest_dataset(args) -> tuple[int, int]:
    """Canonicalise and hash one dataset into rows/part-DDDD-CCCCC.parquet (part C holds rows
    [C * part_rows, (C + 1) * part_rows)). Parts already on disk are skipped, so a killed ingest resumes."""
    import pyarrow as pa

    di, out, spec, cfg, canon_cfg = args
    part_rows = cfg.part_rows
    done_parts = 0
    while (out / "rows" / f"part-{di:04d}-{done_parts:05d}.parquet").exists():
        done_parts += 1
    skip = done_parts * part_rows
    buf: dict[str, list] = {c: [] for c in ROW_COLUMNS}
    n_new, part = 0, done_parts
    dates: dict = {}

    def flush():
        nonlocal buf, part
        if buf["key"]:
            atomic_parquet(pa.table(buf, schema=_row_schema()), out / "rows" / f"part-{di:04d}-{part:05d}.parquet")
            part += 1
            buf = {c: [] for c in ROW_COLUMNS}

    for i, row in enumerate(iter_rows(spec.path)):
        if i < skip:
            continue
        where = f"{spec.path} row {i}"
        prompt = cfg.fields.prompt_of(row, where)
        try:
            canon, key, raw_key = canon_mod.keys(prompt, canon_cfg)
        except TypeError as e:
            raise ValueError(f"{where}: {e}") from None
        rid = cfg.fields.get(row, cfg.fields.id)
        dv = cfg.fields.get(row, cfg.fields.date)
        d = dates.get(dv) if isinstance(dv, (str, int)) else None
        if d is None:
            d = parse_date(dv, where=f"{where} field {cfg.fields.date!r}")
            if isinstance(dv, (str, int)):
                dates[dv] = d
        ans = cfg.fields.get(row, cfg.fields.answer)
        buf["dataset"].append(di)
        buf["row_idx"].append(i)
        buf["row_id"].append(str(rid) if rid is not None else f"{spec.name}:{i}")
        buf["key"].append(key)
        buf["raw_key"].append(raw_key)
        buf["canon"].append(canon)
        buf["label"].append(clean_label(cfg.fields.source_of(row), spec.name))
        buf["date"].append(d if d != NO_DATE else spec.date)
        buf["answer"].append(None if ans is None else str(ans))
        n_new += 1
        if len(buf["key"]) >= part_rows:
            flush()
    flush()
    return di, n_new


def ingest(store: TraceStore) -> None:
    """Stream every dataset, canonicalise and hash; datasets are spread over `workers` processes."""
    cfg, canon_cfg = store.cfg, store.canon
    t0 = time.perf_counter()
    store.mark()
    done = set(store.state["ingest"].get("datasets_done", []))
    todo = [(di, store.out, spec, cfg, canon_cfg) for di, spec in enumerate(store.datasets) if di not in done]
    (store.out / "rows").mkdir(parents=True, exist_ok=True)
    bar = _progress(len(store.datasets), "trace: ingest (datasets)")
    bar.update(len(done))
    n_rows = 0
    pool = _pool(min(cfg.workers, len(todo)))
    try:
        it = pool.imap_unordered(_ingest_dataset, todo) if pool else map(_ingest_dataset, todo)
        for di, n in it:
            n_rows += n
            done.add(di)
            store.state["ingest"]["datasets_done"] = sorted(done)
            store.save()
            bar.update(1)
    finally:
        if pool:
            pool.close()
            pool.join()
    bar.close()
    store.finish("ingest", n_rows, time.perf_counter() - t0)


def read_rows(out: Path, columns: list[str]):
    import pyarrow as pa
    import pyarrow.parquet as pq

    parts = sorted((out / "rows").glob("part-*.parquet"))
    if not parts:
        return pa.table({c: [] for c in columns})
    return pa.concat_tables([pq.read_table(p, columns=columns) for p in parts])


# ============================================================================ stage: records

def build_records(store: TraceStore):
    """Merge occurrences by key: own source = first non-null label in (date, dataset, row) order; record date =
    earliest occurrence date; first dataset = dataset of the first occurrence."""
    t0 = time.perf_counter()
    store.mark()
    rows = read_rows(store.out, ["dataset", "row_idx", "key", "canon", "label", "date", "answer"]).to_pandas()
    rows = rows.sort_values(["date", "dataset", "row_idx"], kind="stable")
    g = rows.groupby("key", sort=False)
    rec = g.agg(canon=("canon", "first"), own_source=("label", "first"), date=("date", "first"),
                first_dataset=("dataset", "first"), n_occ=("dataset", "size"),
                n_answers=("answer", "nunique")).reset_index()
    rec["own_source"] = rec["own_source"].astype(object).where(rec["own_source"].notna(), None)
    import pyarrow as pa

    atomic_parquet(pa.Table.from_pandas(rec, preserve_index=False), store.out / "records.parquet")
    store.finish("records", len(rows), time.perf_counter() - t0, records=len(rec))


def load_records(out: Path):
    import pyarrow.parquet as pq

    rec = pq.read_table(out / "records.parquet").to_pandas()
    rec["own_source"] = rec["own_source"].astype(object).where(rec["own_source"].notna(), None)
    return rec


# ============================================================================ stage: minhash

_SHARED: dict = {}  # read by forked workers (copy-on-write): texts and configs


def _sig_worker(args):
    lo, hi = args
    return lo, signatures(_SHARED["texts"][lo:hi], _SHARED["mh"])


def _pool(workers: int):
    return mp.get_context("fork").Pool(workers) if workers > 1 else None


def minhash_stage(store: TraceStore, texts: list[str]) -> np.ndarray:
    cfg = store.cfg
    t0 = time.perf_counter()
    store.mark()
    d = store.out / "minhash"
    chunks = [(lo, min(lo + cfg.chunk_records, len(texts))) for lo in range(0, len(texts), cfg.chunk_records)]
    todo = [c for i, c in enumerate(chunks) if not (d / f"part-{i:05d}.npy").exists()]
    if todo:
        bar = _progress(len(texts), "trace: minhash")
        bar.update(len(texts) - sum(hi - lo for lo, hi in todo))
        _SHARED.update(texts=texts, mh=cfg.minhash)
        sub = [(lo2, min(lo2 + 2048, hi)) for lo, hi in todo for lo2 in range(lo, hi, 2048)]
        pending = {lo: {"hi": hi, "parts": {}} for lo, hi in todo}
        pool = _pool(cfg.workers)
        it = pool.imap(_sig_worker, sub) if pool else map(_sig_worker, sub)
        try:
            for lo2, sig in it:
                lo = max(k for k in pending if k <= lo2)
                pending[lo]["parts"][lo2] = sig
                bar.update(len(sig))
                got = sum(len(s) for s in pending[lo]["parts"].values())
                if got == pending[lo]["hi"] - lo:
                    arr = np.concatenate([pending[lo]["parts"][k] for k in sorted(pending[lo]["parts"])])
                    atomic_npy(d / f"part-{lo // cfg.chunk_records:05d}.npy", arr)
                    del pending[lo]
        finally:
            if pool:
                pool.close()
                pool.join()
            _SHARED.clear()
        bar.close()
    sigs = np.concatenate([np.load(d / f"part-{i:05d}.npy") for i in range(len(chunks))]) if chunks else \
        np.zeros((0, cfg.minhash.num_perm), np.uint32)
    if not store.done("minhash"):
        store.finish("minhash", len(texts), time.perf_counter() - t0)
    return sigs


# ============================================================================ stage: near

def _verify_worker(pairs):
    texts, n = _SHARED["texts"], _SHARED["ngram"]
    cache: dict[int, frozenset] = {}

    def sh(i):
        s = cache.get(i)
        if s is None:
            s = cache[i] = shingle_set(texts[i], n)
        return s

    return np.array([jaccard(sh(int(i)), sh(int(j))) for i, j in pairs], dtype=np.float64)


def verify_pairs(texts: list[str], pairs: np.ndarray, ngram: int, workers: int) -> np.ndarray:
    """Exact Jaccard of char n-gram shingle sets for each candidate pair."""
    if len(pairs) == 0:
        return np.zeros(0)
    order = np.argsort(pairs[:, 0], kind="stable")  # pairs sharing a record land in one chunk: shingle cache hits
    chunks = np.array_split(pairs[order], max(1, min(len(pairs) // 5000, 256)))
    _SHARED.update(texts=texts, ngram=ngram)
    pool = _pool(workers)
    try:
        res = pool.map(_verify_worker, chunks) if pool else [_verify_worker(c) for c in chunks]
    finally:
        if pool:
            pool.close()
            pool.join()
        _SHARED.clear()
    out = np.empty(len(pairs))
    out[order] = np.concatenate(res)
    return out


def near_stage(store: TraceStore, texts: list[str], sigs: np.ndarray, labelled: np.ndarray) -> np.ndarray:
    """Verified near-duplicate edges [m, 3] (i, j, jaccard) with i < j."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = store.out / "near_edges.parquet"
    if store.done("near"):
        t = pq.read_table(path)
        return np.stack([t["i"].to_numpy(), t["j"].to_numpy(), t["jaccard"].to_numpy()], axis=1) if t.num_rows \
            else np.zeros((0, 3))
    cfg = store.cfg
    t0 = time.perf_counter()
    store.mark()
    pairs = lsh_candidate_pairs(sigs, cfg.minhash)
    n_cand = len(pairs)
    if not cfg.verify_all_pairs:
        pairs = pairs[~(labelled[pairs[:, 0]] & labelled[pairs[:, 1]])] if len(pairs) else pairs
    jac = verify_pairs(texts, pairs, cfg.minhash.ngram, cfg.workers)
    keep = jac >= cfg.minhash.threshold
    edges = np.concatenate([pairs[keep].astype(np.float64), jac[keep, None]], axis=1) if len(pairs) else np.zeros((0, 3))
    atomic_parquet(pa.table({"i": edges[:, 0].astype(np.int64), "j": edges[:, 1].astype(np.int64),
                             "jaccard": edges[:, 2]}), path)
    store.finish("near", len(texts), time.perf_counter() - t0, candidate_pairs=n_cand, verified_pairs=len(pairs),
                 edges=int(keep.sum()))
    return edges


# ============================================================================ stages: embed + semantic

def embed_stage(store: TraceStore, texts: list[str], encoder) -> np.ndarray:
    from .semantic import cached_embed

    t0 = time.perf_counter()
    store.mark()
    n_cached = len(list((store.out / "emb").glob("part-*.npy")))
    emb = cached_embed(store.out / "emb", texts, encoder, store.cfg.chunk_records, desc="trace: embed")
    if not store.done("embed"):
        store.finish("embed", len(texts), time.perf_counter() - t0, encoder=encoder.describe(),
                     chunks_reused=n_cached)
    return emb


def semantic_stage(store: TraceStore, emb: np.ndarray, queries: np.ndarray) -> dict[int, list[tuple[int, float]]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from .semantic import NeighbourIndex

    cfg = store.cfg
    path = store.out / "semantic_edges.parquet"
    if not store.done("semantic"):
        t0 = time.perf_counter()
        store.mark()
        index = NeighbourIndex(emb, kind=cfg.index, threads=cfg.workers)
        k = min(cfg.top_k + 1, len(emb))
        q_all, j_all, c_all, r_all = [], [], [], []
        bar = _progress(len(queries), f"trace: semantic ({index.kind})")
        for lo in range(0, len(queries), 4096):
            q = queries[lo:lo + 4096]
            sims, ids = index.search(emb[q], k)
            for qi, srow, irow in zip(q, sims, ids):
                nb = [(int(j), float(s)) for j, s in zip(irow, srow) if j >= 0 and j != qi][: cfg.top_k]
                for r, (j, s) in enumerate(nb):
                    q_all.append(int(qi)), j_all.append(j), c_all.append(s), r_all.append(r)
            bar.update(len(q))
        bar.close()
        atomic_parquet(pa.table({"i": np.array(q_all, np.int64), "j": np.array(j_all, np.int64),
                                 "cosine": np.array(c_all, np.float32), "rank": np.array(r_all, np.int16)}), path)
        store.finish("semantic", len(queries), time.perf_counter() - t0, index=index.kind, pool=len(emb))
    t = pq.read_table(path).to_pandas()
    out: dict[int, list[tuple[int, float]]] = {}
    for i, j, c in zip(t["i"].to_numpy(), t["j"].to_numpy(), t["cosine"].to_numpy()):
        out.setdefault(int(i), []).append((int(j), float(c)))
    return out


# ============================================================================ stage: resolve + reports

def _adjacency(edges: np.ndarray) -> dict[int, list[tuple[int, float]]]:
    near: dict[int, list[tuple[int, float]]] = {}
    for i, j, s in edges:
        near.setdefault(int(i), []).append((int(j), float(s)))
        near.setdefault(int(j), []).append((int(i), float(s)))
    return near


def resolve_and_report(store: TraceStore, rec, near: dict, sem: dict, edges: np.ndarray) -> list[Attribution]:
    import pandas as pd
    import pyarrow as pa

    cfg = store.cfg
    t0 = time.perf_counter()
    store.mark()
    att = resolve_lineage(list(rec["own_source"]), rec["date"].to_numpy(), rec["first_dataset"].to_numpy(),
                          near=near, semantic=sem, cos_threshold=cfg.cos_threshold,
                          jaccard_threshold=cfg.minhash.threshold, top_k=cfg.top_k)
    uf = UnionFind(len(rec))
    for i, j, _ in edges:
        uf.union(int(i), int(j))
    keys = rec["key"].to_numpy()
    rec = rec.assign(
        atomic_source=[a.source for a in att], evidence=[a.evidence for a in att],
        via_key=[keys[a.via] if a.via >= 0 else None for a in att],
        similarity=[a.similarity for a in att], near_cluster=uf.labels())
    atomic_parquet(pa.Table.from_pandas(rec.drop(columns=["canon"]), preserve_index=False),
                   store.out / "records_attributed.parquet")

    rows = read_rows(store.out, ["dataset", "row_idx", "row_id", "key", "label", "date"]).to_pandas()
    rmap = pd.Series(np.arange(len(rec)), index=rec["key"])
    ri = rmap.loc[rows["key"]].to_numpy()
    src = rec["atomic_source"].to_numpy()[ri]
    ev = rec["evidence"].to_numpy()[ri].astype(object)
    via = rec["via_key"].to_numpy()[ri].astype(object)
    sim = rec["similarity"].to_numpy()[ri].astype(np.float64)
    # a row inherits its record's label through the exact key when it did not carry that label itself
    inherited = (ev == "label") & (rows["label"].to_numpy(dtype=object) != src)
    ev[inherited], via[inherited], sim[inherited] = "exact", rec["key"].to_numpy()[ri][inherited], 1.0
    names = np.array([d.name for d in store.datasets], dtype=object)
    lin = pd.DataFrame({"dataset": names[rows["dataset"].to_numpy()], "row_idx": rows["row_idx"], "row_id": rows["row_id"],
                        "key": rows["key"], "atomic_source": src, "evidence": ev, "via_key": via, "similarity": sim,
                        "date": [format_date(d) for d in rows["date"].to_numpy()]})
    atomic_parquet(pa.Table.from_pandas(lin, preserve_index=False), store.out / "lineage.parquet")
    write_composition(store.out, lin, [d.name for d in store.datasets])
    store.finish("resolve", len(rec), time.perf_counter() - t0,
                 evidence={k: int(v) for k, v in lin["evidence"].value_counts().items()})
    return att


def write_composition(out: Path, lin, dataset_order: list[str]) -> dict:
    """dataset x atomic-source counts and fractions: composition.json / .md / .png."""
    import pandas as pd

    src = lin["atomic_source"].fillna(UNATTRIBUTED)
    tab = pd.crosstab(lin["dataset"], src).reindex(dataset_order).fillna(0).astype(int)
    total = tab.sum(axis=0).sort_values(ascending=False)
    tab = tab[total.index]
    comp = {"datasets": {d: {s: int(c) for s, c in tab.loc[d].items() if c} for d in tab.index},
            "totals": {s: int(c) for s, c in total.items()},
            "attributed_fraction": float(1 - total.get(UNATTRIBUTED, 0) / max(total.sum(), 1))}
    atomic_write_text(out / "composition.json", json.dumps(comp, indent=1))
    frac = tab.div(tab.sum(axis=1).clip(lower=1), axis=0)
    lines = ["# Dataset composition by atomic source", "",
             f"Rows: {int(total.sum())}; attributed: {100 * comp['attributed_fraction']:.2f} %.", "",
             "| dataset | rows | " + " | ".join(tab.columns) + " |", "|---|---:|" + "---:|" * len(tab.columns)]
    for d in tab.index:
        lines.append(f"| {d} | {int(tab.loc[d].sum())} | " +
                     " | ".join(f"{100 * frac.loc[d, s]:.1f} %" for s in tab.columns) + " |")
    atomic_write_text(out / "composition.md", "\n".join(lines) + "\n")
    _plot_composition(out / "composition.png", frac)
    return comp


def _plot_composition(path: Path, frac) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 0.5 * len(frac) + 1.8))
    left = np.zeros(len(frac))
    cmap = plt.get_cmap("tab20")
    for k, s in enumerate(frac.columns):
        v = frac[s].to_numpy()
        ax.barh(frac.index, v, left=left, label=s, color="lightgrey" if s == UNATTRIBUTED else cmap(k % 20))
        left += v
    ax.set_xlabel("fraction of rows")
    ax.set_xlim(0, 1)
    ax.invert_yaxis()
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.25), ncol=4, fontsize=7, frameon=False)
    ax.set_title("Atomic-source composition")
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)


# ============================================================================ driver

def trace(datasets: list[DatasetSpec], out: str | Path, cfg: TraceConfig = TraceConfig(), encoder=None) -> dict:
    """Run (or resume) every stage; returns the timings dict. `encoder` overrides `cfg.encoder` (tests)."""
    if not datasets:
        raise ValueError("trace: no datasets given")
    names = [d.name for d in datasets]
    if len(set(names)) != len(names):
        raise ValueError(f"trace: dataset names must be unique, got {names} (use NAME=PATH)")
    store = TraceStore(out, cfg, datasets)
    if not store.done("wrappers"):
        wrappers_stage(store)
    if not store.done("ingest"):
        ingest(store)
    if not store.done("records"):
        build_records(store)
    rec = load_records(store.out)
    texts = rec["canon"].tolist()
    own = rec["own_source"].tolist()
    labelled = np.array([s is not None and s not in canon_mod.KNOWN_SOURCE_PREFIXED for s in own], dtype=bool)
    sigs = minhash_stage(store, texts)
    edges = near_stage(store, texts, sigs, labelled)
    del sigs
    near = _adjacency(edges)
    # pass 1: exact + near only; what stays unresolved (or is a numina_* label) goes to the encoder
    att1 = resolve_lineage(own, rec["date"].to_numpy(), rec["first_dataset"].to_numpy(), near=near,
                           jaccard_threshold=cfg.minhash.threshold, top_k=cfg.top_k)
    queries = np.array([i for i, a in enumerate(att1) if a.evidence == "unattributed"
                        or (own[i] in canon_mod.KNOWN_SOURCE_PREFIXED and a.evidence == "label")], dtype=np.int64)
    sem: dict = {}
    if len(queries) and (encoder is not None or cfg.encoder != "none") and len(texts) > 1:
        if encoder is None:
            from .semantic import build_encoder

            encoder = build_encoder(cfg.encoder, model_path=cfg.model_path, threads=cfg.workers, dim=cfg.encoder_dim)
        emb = embed_stage(store, texts, encoder)
        sem = semantic_stage(store, emb, queries)
        del emb
    store.state["unresolved_after_near"] = int(len(queries))
    if not store.done("resolve"):
        resolve_and_report(store, rec, near, sem, edges)
    return store.state["timings"]
