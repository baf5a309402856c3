"""`mentor data trace|decontaminate|score|curate` end to end on the synthetic lineage benchmark (spec atlas.md §4.2).

The hashed featuriser stands in for MiniLM in all but one test (fast, no model); the MiniLM test embeds < 40 texts.
"""

import json
from collections import defaultdict

import numpy as np
import pandas as pd
import pytest

from mentor.lineage import synth
from mentor.lineage import trace as trace_mod
from mentor.lineage.cli import main
from mentor.lineage.io import DatasetSpec


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    m = synth.build(root / "data", total_rows=1500, n_sources=5, n_derived=3, bench_items=50, seed=0)
    return root, m


def test_trace_attributes_synthetic_lineage(bench, capsys):
    root, m = bench
    out = root / "store"
    assert main(["trace", *synth.dataset_args(m), "--out", str(out), "--encoder", "hashed", "--workers", "1"]) == 0
    lin = pd.read_parquet(out / "lineage.parquet")
    acc = synth.attribution_accuracy(root / "data" / "truth.jsonl", lin)
    # every cheap-stage kind is exact; the hashed featuriser (not MiniLM) costs paraphrases / novel rows a few errors
    # (measured 0.994 on this seed: 9 errors of 1520 rows, all semantic-stage)
    assert acc["rows"] == 1520 and acc["accuracy"] >= 0.99
    for kind in ("source", "dapo_wrap", "latex", "leak:latex"):
        assert acc["per_kind"][kind] == 1.0, kind
    assert set(lin["evidence"]) >= {"label", "exact", "near", "semantic", "unattributed"}
    comp = json.loads((out / "composition.json").read_text())
    assert sum(comp["totals"].values()) == 1520
    assert comp["datasets"]["olympiads"] == {"olympiads": 150}  # an atomic source is 100 % itself
    assert (out / "composition.png").stat().st_size > 1000 and "| derived0 |" in (out / "composition.md").read_text()
    state = json.loads((out / "state.json").read_text())
    assert len(state["wrappers"]) == 4  # DAPO prefix+suffix and the synthetic unknown template, discovered
    assert "attributed" in capsys.readouterr().out


class Killed(Exception):
    pass


def test_killed_trace_resumes_to_the_same_result(bench, tmp_path, monkeypatch):
    root, m = bench
    specs = [DatasetSpec.parse(a) for a in synth.dataset_args(m)]
    cfg = trace_mod.TraceConfig(encoder="hashed", workers=1, part_rows=200, chunk_records=300)
    ref = trace_mod.trace(specs, tmp_path / "ref", cfg)

    calls = {"keys": 0, "sig": 0}
    real_keys, real_sig = trace_mod.canon_mod.keys, trace_mod.signatures

    def dying_keys(*a, **k):
        calls["keys"] += 1
        if calls["keys"] == 960:  # 5 source datasets of 150 rows done, derived0 (~260 rows) has 1 part of 200
            raise Killed
        return real_keys(*a, **k)

    def dying_sig(*a, **k):
        calls["sig"] += 1
        if calls["sig"] == 2:
            raise Killed
        return real_sig(*a, **k)

    out = tmp_path / "resumed"
    monkeypatch.setattr(trace_mod.canon_mod, "keys", dying_keys)
    with pytest.raises(Killed):
        trace_mod.trace(specs, out, cfg)
    state = json.loads((out / "state.json").read_text())
    assert state["ingest"]["datasets_done"] == [0, 1, 2, 3, 4] and state["done"] == ["wrappers"]
    assert len(list((out / "rows").glob("part-*.parquet"))) == 6
    monkeypatch.setattr(trace_mod.canon_mod, "keys", real_keys)
    monkeypatch.setattr(trace_mod, "signatures", dying_sig)
    with pytest.raises(Killed):
        trace_mod.trace(specs, out, cfg)
    assert len(list((out / "minhash").glob("part-*.npy"))) == 1  # the first chunk of 300 records survived
    monkeypatch.setattr(trace_mod, "signatures", real_sig)
    timings = trace_mod.trace(specs, out, cfg)
    a, b = pd.read_parquet(tmp_path / "ref" / "lineage.parquet"), pd.read_parquet(out / "lineage.parquet")
    pd.testing.assert_frame_equal(a, b)
    assert timings["records"]["records"] == ref["records"]["records"]
    with pytest.raises(ValueError, match="different config"):
        trace_mod.trace(specs, out, trace_mod.TraceConfig(encoder="hashed", workers=1))


def test_decontaminate_finds_planted_leaks(bench):
    root, m = bench
    planted = defaultdict(set)
    for p in m["planted"]:
        planted[p["dataset"]].add((p["benchmark"], p["id"]))
    tp = fp = fn = 0
    benches = [b["path"] for b in m["benchmarks"]]
    for d in ("derived0", "derived1", "derived2"):
        out = root / f"decon_{d}"
        assert main(["decontaminate", str(root / "data" / f"{d}.jsonl"), "--benchmarks", *benches, "--out", str(out),
                     "--encoder", "hashed", "--theta", "0.9"]) == 0
        rep = json.loads((out / "report.json").read_text())
        flagged = {(b, it["item"]) for b, r in rep["benchmarks"].items() for it in r["flagged_items"]}
        tp, fp, fn = tp + len(flagged & planted[d]), fp + len(flagged - planted[d]), fn + len(planted[d] - flagged)
        cleaned = [json.loads(x) for x in (out / "cleaned.jsonl").read_text().splitlines()]
        leaked_ids = {json.loads(x)["id"] for x in (out / "leaked.jsonl").read_text().splitlines()}
        assert not any(r["id"] in leaked_ids for r in cleaned)
        assert len(cleaned) + len(leaked_ids) == sum(1 for _ in open(root / "data" / f"{d}.jsonl"))
        assert not any("-leak-" in r["id"] for r in cleaned)  # every planted row removed
    # measured on this seed: 20 planted items all found, 3 false alarms from the hashed featuriser
    assert fn == 0 and tp == 20 and fp <= 3


def test_score_cli_sca_and_q(tmp_path):
    # (base, after) = 00, 01, 10, 10, 11 -> p00 .2, p01 .2, p10 .4, p11 .2: the spec's Q case
    base = [("a", [0, 0, 0, 1]), ("b", [0, 0, 0, 0]), ("c", [1, 1, 0, 0]), ("d", [1, 1, 1, 1]), ("e", [1, 0, 1, 1])]
    after = {"a": 0.25, "b": 0.75, "c": 0.0, "d": 0.25, "e": 1.0}
    (tmp_path / "base.jsonl").write_text("".join(json.dumps({"id": i, "correct": [bool(x) for x in c]}) + "\n"
                                                 for i, c in base))
    (tmp_path / "after.jsonl").write_text("".join(json.dumps({"id": i, "pass_rate": p}) + "\n" for i, p in after.items()))
    rc = main(["score", "--base", str(tmp_path / "base.jsonl"), "--after", str(tmp_path / "after.jsonl"),
               "--out", str(tmp_path / "s"), "--model-size", "1.7", "--r-con", "0.9", "--r-mcq", "0.1",
               "--avg-occ", "2", "--leak-frac", "0.01", "--d-mean4", "2", "--d-pass4", "3"])
    assert rc == 0
    res = json.loads((tmp_path / "s" / "scores.json").read_text())
    e = res["datasets"]["all"]
    assert (e["p00"], e["p01"], e["p10"], e["p11"]) == (0.2, 0.2, 0.4, 0.2)
    assert res["preset"] == "atlas_le3b" and res["sca_digits"] == "base,after" and "5-6 datasets" in res["preset_note"]
    assert e["Q"]["Q"] == pytest.approx(0.531475, abs=1e-6)
    items = [json.loads(x) for x in (tmp_path / "s" / "sca_items.jsonl").read_text().splitlines()]
    assert [r["sca"] for r in items] == ["00", "01", "10", "10", "11"]
    # without the Q inputs only the fractions are reported, with what is missing
    assert main(["score", "--base", str(tmp_path / "base.jsonl"), "--after", str(tmp_path / "after.jsonl"),
                 "--out", str(tmp_path / "s2")]) == 0
    e2 = json.loads((tmp_path / "s2" / "scores.json").read_text())["datasets"]["all"]
    assert "Q" not in e2 and e2["Q_missing"][0] == "--model-size"


def test_curate_cli_on_synthetic_sets(bench, tmp_path):
    root, m = bench
    pool = [json.loads(x) for x in (root / "data" / "amc_aime.jsonl").read_text().splitlines()]
    rng = np.random.default_rng(0)
    (tmp_path / "sca.jsonl").write_text("".join(json.dumps({"id": r["id"], "sca": str(rng.choice(["01", "11", "00"]))})
                                                + "\n" for r in pool))
    base = root / "data" / "derived1.jsonl"
    n_base = sum(1 for _ in open(base))
    rc = main(["curate", str(base), "--refill", str(root / "data" / "amc_aime.jsonl"), "--benchmarks",
               *[b["path"] for b in m["benchmarks"]], "--target", str(n_base), "--sources", "amc_aime",
               "--sca", str(tmp_path / "sca.jsonl"), "--out", str(tmp_path / "c"), "--encoder", "hashed"])
    assert rc == 0
    s = json.loads((tmp_path / "c" / "summary.json").read_text())
    ledger = [json.loads(x) for x in (tmp_path / "c" / "ledger.jsonl").read_text().splitlines()]
    rows = [json.loads(x) for x in (tmp_path / "c" / "dataset.jsonl").read_text().splitlines()]
    assert s["final_rows"] == len(rows) == n_base and s["removed"] >= 5
    assert sum(e["action"] == "remove" for e in ledger) == s["removed"]
    assert sum(e["action"] == "add" for e in ledger) == s["added"] == s["removed"]
    sca = {json.loads(x)["id"]: json.loads(x)["sca"] for x in (tmp_path / "sca.jsonl").read_text().splitlines()}
    assert all(sca[e["id"]] == "01" for e in ledger if e["action"] == "add")
    assert not any("-leak-" in r["id"] for r in rows)


def test_minilm_catches_a_paraphrase(tmp_path):
    train = [f"Training problem {i}: a box holds {i + 3} red marbles and {2 * i + 1} blue marbles; how many in all?"
             for i in range(20)]
    bench = ["A train leaves the station at 9 am travelling at 60 km per hour. When does it cover 150 km?",
             "Find all real numbers x such that x squared minus five x plus six equals zero.",
             "How many ways can seven distinct books be arranged on one shelf?"]
    train.append("Determine every real x for which x squared minus five x plus six is equal to zero.")  # paraphrase
    (tmp_path / "train.jsonl").write_text("".join(json.dumps({"id": f"t{i}", "prompt": p}) + "\n"
                                                  for i, p in enumerate(train)))
    (tmp_path / "b.jsonl").write_text("".join(json.dumps({"id": f"b{i}", "prompt": p}) + "\n" for i, p in enumerate(bench)))
    rc = main(["decontaminate", str(tmp_path / "train.jsonl"), "--benchmarks", str(tmp_path / "b.jsonl"),
               "--out", str(tmp_path / "o"), "--encoder", "minilm", "--theta", "0.9"])
    assert rc == 0
    rep = json.loads((tmp_path / "o" / "report.json").read_text())
    assert rep["encoder"]["matches_pinned_weights"] is True
    items = rep["benchmarks"]["b"]["flagged_items"]
    assert [(i["item"], i["evidence"], i["top1_row"]) for i in items] == [("b1", "semantic", "t20")]
    assert items[0]["top1_cos"] >= 0.9
    assert (tmp_path / "o" / "emb_train_all-MiniLM-L6-v2" / "part-00000.npy").exists()


def test_bad_inputs_give_clear_errors(tmp_path, capsys, monkeypatch):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 1, "prompt": "ok"}\n{"id": 2, "prompt": \n')
    assert main(["trace", str(bad), "--out", str(tmp_path / "o"), "--encoder", "none"]) == 2
    assert f"{bad}:2: invalid JSON" in capsys.readouterr().err
    nop = tmp_path / "noprompt.jsonl"
    nop.write_text('{"id": 1, "text": "x"}\n')
    assert main(["trace", str(nop), "--out", str(tmp_path / "o2"), "--encoder", "none"]) == 2
    assert "row 0: no prompt field (looked for prompt, problem, question" in capsys.readouterr().err
    good = tmp_path / "g.jsonl"
    good.write_text('{"id": 1, "prompt": "a b c d e f"}\n{"id": 2, "prompt": "g h i j k l"}\n')
    assert main(["decontaminate", str(good), "--benchmarks", str(good), "--out", str(tmp_path / "o3"),
                 "--encoder", "minilm", "--model-path", str(tmp_path)]) == 3
    assert "no model.safetensors under" in capsys.readouterr().err
    monkeypatch.setitem(__import__("sys").modules, "sentence_transformers", None)  # the data extra is missing
    assert main(["decontaminate", str(good), "--benchmarks", str(good), "--out", str(tmp_path / "o4"),
                 "--encoder", "minilm"]) == 3
    assert "pip install 'mentor[data]'" in capsys.readouterr().err
