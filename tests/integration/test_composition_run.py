"""Composition-RL end to end: a GRPO run with `rl.transform: composition` resumes bit for bit, and `mentor data
compose` writes rows (with provenance and a ledger) for the GSM8K fixture and for a procedural task."""

from __future__ import annotations

import json

from mentor.cli import main
from mentor.config import FieldMap, load_config
from mentor.runs import read_jsonl
from mentor.tasks.composition import read_composed, recompute_procedural_answer, recover_last
from mentor.tasks.data import gsm8k_fixture_path, load_rows
from mentor.train import train

GRPO = ["algo=grpo", "model.path=tiny:100k", "data.task=add", "data.task_args={digits: 1}", "data.num_train=64",
        "data.num_eval=4", "optim.lr=1e-3", "optim.schedule=constant", "optim.batch_size=4", "optim.micro_batch_size=16",
        "sampling.max_new_tokens=8", "rl.group_size=4", "eval.every=0", "run.progress=false", "rl.transform=composition",
        "rl.transform_args={compose: {style: compact}, curriculum: {schedule: [[0, 1], [2, 2], [3, 3]], p_current: 0.5}}"]


def test_grpo_with_composition_resumes_identically(tmp_path, stable):
    ref = tmp_path / "ref"
    train(load_config(None, GRPO + ["run.steps=4", "run.save_every=2", f"run.out_dir={ref}"]))
    records = read_jsonl(ref / "metrics.jsonl")
    by_step = {r["step"]: r for r in records if "composition/max_depth" in r}
    # steps are 1-based; schedule [[0, 1], [2, 2], [3, 3]]: depth 1 at step 1, at most 2 at step 2, 3 from step 3
    assert [by_step[s]["composition/max_depth"] for s in range(1, 5)] == [1.0, 2.0, 3.0, 3.0]
    assert by_step[1]["composition/fraction"] == 0.0 and by_step[1]["composition/depth1"] == 1.0
    assert not any(k.startswith("composition/depth3") for k in by_step[2])
    assert sum(by_step[s].get("composition/depth3", 0.0) for s in (3, 4)) > 0  # 4 prompts x 2 steps, p = 1/2 each

    part = tmp_path / "part"
    train(load_config(None, GRPO + ["run.steps=2", "run.save_every=2", f"run.out_dir={part}"]))
    train(load_config(None, GRPO + ["run.steps=4", "run.save_every=2", f"run.out_dir={part}"]), resume=True)
    # the 2-step invocation also evaluated at its end (eval.every=0): compare the training metrics
    assert stable(read_jsonl(part / "metrics.jsonl"), ["eval/"]) == stable(records, ["eval/"])


def test_data_compose_gsm8k_fixture(tmp_path):
    out = tmp_path / "gsm.jsonl"
    assert main(["data", "compose", "--input", str(gsm8k_fixture_path()), "--prompt-field", "question", "--depth", "2",
                 "--n", "12", "--seed", "3", "--out", str(out)]) == 0
    rows = read_composed(out)
    originals = {p.id: p for p in load_rows(gsm8k_fixture_path(), fields=FieldMap(prompt="question"), verifier="math")}
    assert len(rows) == 12 and len({r.id for r in rows}) == 12
    for r in rows:
        chain = r.meta["composition"]["chain"]
        last = originals[chain[-1]["id"]]
        assert r.answer == last.answer and r.verifier == "math" and recover_last(r) == last.text
        assert r.text.startswith(f"Problem 1: {originals[chain[0]['id']].text}\nLet X be the answer to Problem 1.\n")
    ledger = json.loads((tmp_path / "gsm.jsonl.ledger.json").read_text())
    assert ledger["written"] == 12 and ledger["second_pool"] == 30 and ledger["args"]["depth"] == 2


def test_data_compose_procedural_cross_domain_and_errors(tmp_path, capsys):
    out = tmp_path / "add.jsonl"
    assert main(["data", "compose", "--task", "add", "--task-args", '{"digits": 2}', "--first-task", "mod",
                 "--depth", "3", "--n", "5", "--style", "compact", "--out", str(out)]) == 0
    rows = read_composed(out)
    assert len(rows) == 5
    for r in rows:
        chain = [c["id"] for c in r.meta["composition"]["chain"]]
        assert chain[0].startswith("mod-") and chain[1].startswith("mod-") and chain[2].startswith("add-")
        assert recompute_procedural_answer(r) == r.answer and r.meta["trace"].endswith(":" + r.answer)
    assert main(["data", "compose", "--task", "add", "--input", "x.jsonl", "--out", str(out)]) == 2
    assert "exactly one of --task or --input" in capsys.readouterr().err
    assert main(["data", "compose", "--task", "add", "--task-args", "{digits", "--out", str(out)]) == 2
    assert "--task-args: invalid JSON" in capsys.readouterr().err
