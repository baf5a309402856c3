"""ADWIN in real `mentor train` runs on tiny models: prefix rollouts never pass H, probes and delayed audits,
costs by role, the baselines' horizon schedules, config errors, and resume reproducing the H and ā sequence."""

import shutil

import pytest

from mentor.config import ConfigError, load_config
from mentor.controllers import CONTROLLERS
from mentor.controllers.adwin import AdwinController, progressive_horizon
from mentor.runs import read_jsonl
from mentor.train import train

assert CONTROLLERS["adwin"] is AdwinController

ADWIN = ["algo=opd", "model.path=tiny:100k", "data.task=chain", "data.task_args={steps: 4, labels: true}",
         "data.num_train=256", "data.num_eval=8", "optim.lr=1e-3", "optim.schedule=constant", "optim.batch_size=8",
         "optim.micro_batch_size=4", "sampling.max_new_tokens=40", "eval.every=0", "run.progress=false",
         "run.keep_checkpoints=0", "run.save_every=2", "run.threads=1", "controllers=[adwin]"]
ARGS = "controller_args={adwin: {h0: 8, h_min: 4, probe_every: 2, probe_frac: 0.5, sketch: exact, audit_candidates: true}}"


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory, teacher_dir):
    out = tmp_path_factory.mktemp("adwin") / "ref"
    train(load_config(None, ADWIN + [ARGS, f"distill.teacher={teacher_dir}", f"run.out_dir={out}", "run.steps=8"]))
    return out


def test_prefixes_probes_audits_and_costs(reference_run):
    records = [r for r in read_jsonl(reference_run / "metrics.jsonl") if r["step"] > 0]
    assert len(records) == 8
    prev = {"cost/tokens_trained": 0, "cost/tokens_audit": 0}
    for r in records:
        H = r["adwin/horizon"]
        assert r["response_length/mean"] <= H  # rollouts stop at H: nothing past H is sampled, scored or trained
        # this step's learner tokens: 8 rows of prompt (≤ 20 characters: "NN;a+N;b*N;c-N;d+N=") + at most H tokens
        assert 0 < r["cost/tokens_trained"] - prev["cost/tokens_trained"] <= 8 * (20 + H)
        assert r["cost/tokens"] == sum(r[f"cost/tokens_{k}"] for k in ("sampled", "teacher", "trained", "audit"))
        assert r["cost/flops"] == pytest.approx(sum(r[f"cost/flops_{k}"] for k in ("sampled", "teacher", "trained", "audit")))
        if "adwin/alignment" in r:  # an audit: its tokens are exactly this step's audit cost
            assert r["cost/tokens_audit"] - prev["cost/tokens_audit"] == r["adwin/audit_tokens"]
            assert -1.0 <= r["adwin/alignment"] <= 1.0 and 0.0 <= r["adwin/mass"] <= 1.0
            assert r["adwin/staleness"] == 1 and r["adwin/audited_horizon"] == H
            assert r[f"adwin/alignment_at_{H}"] == r["adwin/alignment"]
        prev = r
    assert any(r["horizon_cut"] > 0 for r in records)
    assert (reference_run / "plots" / "horizon.png").exists() and (reference_run / "plots" / "accuracy_vs_cost.png").exists()
    # probes at steps 2, 4, 6, 8 (with the weights before that step's update); audits one step later: 3, 5, 7
    assert [r["step"] for r in records if "adwin/probe_tokens" in r] == [2, 4, 6, 8]
    assert [r["step"] for r in records if "adwin/alignment" in r] == [3, 5, 7]
    assert records[-1]["adwin/probes_total"] == 4 and records[-1]["adwin/audits_total"] == 3
    # the horizon only changes right after an audit, by the factor β = 2, inside [h_min, h_max] = [4, 40]
    for a, b in zip(records, records[1:]):
        if a["adwin/horizon"] != b["adwin/horizon"]:
            H = a["adwin/horizon"]
            assert "adwin/alignment" in a and b["adwin/horizon"] in (min(40, H * 2), max(4, H // 2))
        assert 4 <= b["adwin/horizon"] <= 40


def test_resume_after_an_audit_repeats_the_horizon_and_ema_sequence(reference_run, tmp_path, stable):
    """A copy of the run cut back to its step-4 checkpoint (after the step-3 audit, with the step-4 probe still
    queued) resumes to the same metrics, H_k and ā included."""
    from mentor.cli import main

    cut = tmp_path / "cut"
    shutil.copytree(reference_run, cut)
    for name in ("step_6", "step_8"):
        shutil.rmtree(cut / "ckpt" / name)
    shutil.rmtree(cut / "final")
    assert main(["train", "--resume", str(cut)]) == 0
    ours, ref = stable(read_jsonl(cut / "metrics.jsonl")), stable(read_jsonl(reference_run / "metrics.jsonl"))
    assert [r.get("adwin/horizon") for r in ours] == [r.get("adwin/horizon") for r in ref]
    assert [r.get("adwin/ema") for r in ours] == [r.get("adwin/ema") for r in ref]
    assert ours == ref


@pytest.mark.parametrize("mode,expected", [
    ("full", lambda k: 40), ("fixed", lambda k: 6), ("progressive", lambda k: progressive_horizon(k, 6, 40, 2))])
def test_baseline_schedules(tmp_path, teacher_dir, mode, expected):
    out = tmp_path / mode
    train(load_config(None, ADWIN + [f"controller_args={{adwin: {{mode: {mode}, h0: 6}}}}", f"distill.teacher={teacher_dir}",
                                     f"run.out_dir={out}", "run.steps=4"]))
    records = [r for r in read_jsonl(out / "metrics.jsonl") if r["step"] > 0]
    assert [r["adwin/horizon"] for r in records] == [expected(k) for k in range(1, 5)]  # progressive: K = 4 // 2
    assert all(r["response_length/mean"] <= r["adwin/horizon"] for r in records)
    assert all(r["cost/tokens_audit"] == 0 and "adwin/probe_tokens" not in r for r in records)  # no probes


@pytest.mark.parametrize("override,match", [
    (["algo=grpo"], "needs algo opd or g_opd"),
    (["controller_args={adwin: {h0: 64}}"], r"h0: 64 must lie in \[h_min=512|h0: 64 must lie"),
    (["controller_args={adwin: {h0: 8, h_min: 4, h_max: 80}}"], "exceeds sampling.max_new_tokens"),
    (["controller_args={adwin: {h0: 8, h_min: 4, beta: 1.0}}"], r"adwin\.beta"),
    (["controller_args={adwin: {h0: 8, h_min: 4, sketch: 'params:nothing_matches'}}"], "matches no trainable"),
    (["controller_args={adwin: {h0: 8, h_min: 4, horizon: 3}}"], "horizon"),
])
def test_config_errors_name_the_key(tmp_path, teacher_dir, override, match):
    with pytest.raises(ConfigError, match=match):
        train(load_config(None, ADWIN + [f"distill.teacher={teacher_dir}", f"run.out_dir={tmp_path / 'x'}", "run.steps=1",
                                         *override]))


def test_adwin_and_effopd_together_with_every_sampled_token_counted(tmp_path, teacher_dir):
    """EffOPD extrapolates after steps 1, 2, 4 while ADWIN sets the horizon; EffOPD validates on full-length
    completions (never horizon-cut), and the cost meter counts its validation sampling and ADWIN's probes: the
    step's new `cost/tokens_sampled` = training rollouts (prompt + completion, `tokens`) + probe tokens + validation
    tokens (prompt + completion = effopd/val_flops / 2N)."""
    from mentor.cost import flop_params
    from mentor.models import load_model

    out = tmp_path / "both"
    train(load_config(None, ADWIN + [f"distill.teacher={teacher_dir}", f"run.out_dir={out}", "run.steps=4",
                                     "controllers=[adwin, effopd]",
                                     "controller_args={adwin: {h0: 8, h_min: 4, probe_every: 2, probe_frac: 0.5, "
                                     "sketch: exact}, effopd: {val_size: 8}}"]))
    records = [r for r in read_jsonl(out / "metrics.jsonl") if r["step"] > 0]
    assert [r["step"] for r in records if r.get("effopd/search")] == [1, 2, 4]
    assert [r["adwin/horizon"] for r in records][:1] == [8]
    N = flop_params(load_model("tiny:100k", seed=0))
    prev = 0
    for r in records:
        val = r.get("effopd/val_flops", 0.0) / (2 * N)
        assert val == pytest.approx(round(val))
        assert r["cost/tokens_sampled"] - prev == r["tokens"] + r.get("adwin/probe_tokens", 0) + round(val)
        prev = r["cost/tokens_sampled"]
