"""EffOPD in real `mentor train` runs on tiny models: searches at steps 1, 2, 4 with validation cost logged,
bit-for-bit resume across a search (same anchor, same decisions), GRPO with the verifier score, and
`mentor analyze updates` on the run's checkpoints."""

import csv

import pytest
import torch

from mentor.analysis import main as analyze_main
from mentor.config import load_config
from mentor.controllers import CONTROLLERS
from mentor.controllers.effopd import EffOPDController
from mentor.runs import load_trainer_state, read_jsonl
from mentor.train import train

assert CONTROLLERS["effopd"] is EffOPDController

OPD = ["algo=opd", "model.path=tiny:100k", "data.task=add", "data.task_args={digits: 1}", "data.num_train=256",
       "data.num_eval=8", "optim.lr=1e-3", "optim.schedule=constant", "optim.batch_size=8", "optim.micro_batch_size=16",
       "sampling.max_new_tokens=12", "eval.every=0", "run.progress=false", "run.keep_checkpoints=0", "run.save_every=2",
       "controllers=[effopd]", "controller_args={effopd: {val_size: 8, val_score: teacher_agreement}}"]


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory, teacher_dir):
    out = tmp_path_factory.mktemp("effopd") / "ref"
    train(load_config(None, OPD + [f"distill.teacher={teacher_dir}", f"run.out_dir={out}", "run.steps=4"]))
    return out


def test_searches_at_powers_of_two_with_cost_accounting(reference_run):
    records = read_jsonl(reference_run / "metrics.jsonl")
    searched = [r for r in records if r.get("effopd/search")]
    assert [r["step"] for r in searched] == [1, 2, 4]
    assert [r["effopd/t"] for r in searched] == [1, 2, 4]
    for r in searched:
        k, n = r["effopd/accepted_k"], r["effopd/candidates_evaluated"]
        assert 0 <= k <= n <= 5 and (k == n == 5 or n == k + 1)  # stops at the first failure
        assert r["effopd/v_acc"] >= r["effopd/v0"] and 0.0 <= r["effopd/v_acc"] <= 1.0
        # 8 prompts x 1 sample x (V(W_t) + n candidates), each completion 1..12 tokens
        assert 8 * (n + 1) <= r["effopd/val_tokens"] <= 12 * 8 * (n + 1)
    assert searched[-1]["effopd/val_tokens_total"] == sum(r["effopd/val_tokens"] for r in searched)
    assert any(r["effopd/accepted_k"] >= 1 for r in searched)  # this seed extrapolates at least once
    assert (reference_run / "effopd_val.jsonl").read_text().count("\n") == 8
    state = load_trainer_state(reference_run / "ckpt" / "step_4")["controllers"]["effopd"]
    assert [h["t"] for h in state["history"]] == [1, 2, 4]
    assert all("embed" not in n and "lm_head" not in n for n in state["anchor"])
    from safetensors.torch import load_file

    final = load_file(str(reference_run / "ckpt" / "step_4" / "model" / "model.safetensors"))
    for n, a in state["anchor"].items():  # the anchor after the step-4 search is the final weights
        assert torch.equal(a, final[n])


def test_resume_after_a_search_restores_anchor_and_decisions(tmp_path, teacher_dir, reference_run, stable):
    # stop right after the search at step 2; the search at step 4 then depends on the restored anchor
    out = tmp_path / "resumed"
    train(load_config(None, OPD + [f"distill.teacher={teacher_dir}", f"run.out_dir={out}", "run.steps=2"]))
    train(load_config(out / "config.yaml", ["run.steps=4"]), resume=True)
    timing = ["effopd/time", "eval/"]  # eval.every=0 evaluates at the end of each invocation: step 2 here, not there
    assert stable(read_jsonl(out / "metrics.jsonl"), timing) == stable(read_jsonl(reference_run / "metrics.jsonl"), timing)
    for step in (2, 4):
        a = load_trainer_state(out / "ckpt" / f"step_{step}")["controllers"]["effopd"]
        b = load_trainer_state(reference_run / "ckpt" / f"step_{step}")["controllers"]["effopd"]
        assert all(torch.equal(a["anchor"][n], b["anchor"][n]) for n in b["anchor"])
        assert torch.equal(a["generator"], b["generator"])


def test_grpo_with_verifier_score(tmp_path):
    out = tmp_path / "grpo"
    train(load_config(None, ["algo=grpo", "model.path=tiny:100k", "data.task=add", "data.task_args={digits: 1}",
                             "data.num_train=64", "optim.batch_size=2", "rl.group_size=4", "sampling.max_new_tokens=8",
                             "eval.every=0", "run.progress=false", f"run.out_dir={out}", "run.steps=1",
                             "controllers=[effopd]", "controller_args={effopd: {val_size: 4, param_filter: linear_only}}"]))
    searched = [r for r in read_jsonl(out / "metrics.jsonl") if r.get("effopd/search")]
    assert [r["step"] for r in searched] == [1]
    assert all(r["effopd/v0"] == 0.0 for r in searched)  # an untrained model solves nothing: strict ">" rejects ties
    assert all(r["effopd/accepted_k"] == 0 and r["effopd/candidates_evaluated"] == 1 for r in searched)
    anchor = load_trainer_state(out / "ckpt" / "step_1")["controllers"]["effopd"]["anchor"]
    assert anchor and not any("norm" in n for n in anchor)


def test_analyze_updates_on_the_run(reference_run, tmp_path):
    from safetensors.torch import load_file

    from mentor.analysis import read_weights
    from mentor.models import build_tiny_model, build_tokenizer

    out = tmp_path / "a"
    assert analyze_main(["updates", str(reference_run), "--out", str(out), "--rank", "2", "--early", "2",
                         "--rescale-out", str(tmp_path / "m")]) == 0
    for f in ("summary.md", "updates.csv", "rel_norm.png", "mass_share.png", "lowrank.png", "alignment.png"):
        assert (out / f).stat().st_size > 0
    rows = list(csv.DictReader(open(out / "updates.csv")))
    assert sorted({int(r["step"]) for r in rows}) == [2, 4]
    final_q = [r for r in rows if r["step"] == "4" and r["name"] == "model.layers.0.self_attn.q_proj.weight"][0]
    assert float(final_q["S_left"]) == pytest.approx(1.0, abs=1e-9)  # the final update aligns with itself
    emb = [r for r in rows if r["name"] == "model.embed_tokens.weight"]
    assert all(float(r["rel_norm"]) > 0 for r in emb)  # trained by OPD (not by the extrapolation)

    # the norm-rescaled early model: per tensor, the step-2 direction at the step-4 norm
    w0 = build_tiny_model(build_tokenizer(), "100k", seed=0).state_dict()  # run.seed 0 rebuilds the start
    early = read_weights(reference_run / "ckpt" / "step_2" / "model")
    final = read_weights(reference_run / "ckpt" / "step_4" / "model")
    got = load_file(str(tmp_path / "m" / "model.safetensors"))
    for n in ("model.layers.1.mlp.down_proj.weight", "model.embed_tokens.weight"):
        d_e, d_f, d = (x.double() - w0[n].double() for x in (early[n], final[n], got[n]))
        assert float(d.norm()) == pytest.approx(float(d_f.norm()), rel=1e-5)
        assert float(d.flatten() @ d_e.flatten()) / float(d.norm() * d_e.norm()) == pytest.approx(1.0, abs=1e-5)

    assert analyze_main(["updates", str(tmp_path / "nothing")]) == 2
    assert analyze_main(["updates", str(reference_run), "--rescale-out", str(tmp_path / "x")]) == 2  # needs --early
