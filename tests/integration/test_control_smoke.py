"""`mentor control train|eval` end to end on a MuJoCo task (InvertedPendulum-v5, which terminates, so the done
paths run), small networks and batches; checkpoint-resume reproduces the uninterrupted run exactly."""

import json

import pytest
import torch

from mentor.control.cli import main
from mentor.control.loop import TrainConfig, Trainer, read_evals
from mentor.runs import list_checkpoints

ENV = "InvertedPendulum-v5"
# InvertedPendulum's random episodes last ~5-10 steps, so the buffer (which, like MR.Q's, also counts each episode's
# extra next-state slot) reaches RANDOM = 1,100 slots around env step 950: ~50-100 training steps per run.
STEPS, RANDOM, EVAL_EVERY = 1000, 1100, 500
SMALL = ["batch_size=16", "zs_dim=32", "zsa_dim=32", "za_dim=16", "enc_hdim=32", "value_hdim=32", "policy_hdim=32",
         "target_update_freq=50"]
SMALL_TD3 = ["batch_size=16", "hdim=32"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _train_args(algo, out):
    sets = SMALL_TD3 if algo == "td3" else SMALL
    random_steps = 900 if algo == "td3" else RANDOM  # TD3 counts env steps, not buffer slots
    return (["train", "--env", ENV, "--algo", algo, "--steps", str(STEPS), "--random-steps", str(random_steps),
             "--eval-every", str(EVAL_EVERY), "--eval-episodes", "2", "--threads", "1", "--out", str(out)]
            + [a for s in sets for a in ("--set", s)])


@pytest.fixture(scope="module")
def drq_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("control") / "drq"
    assert main(_train_args("drq", out)) == 0
    return out


@pytest.mark.parametrize("algo", ["mrq", "td3"])
def test_train_and_eval_cli(algo, tmp_path, capsys):
    out = tmp_path / algo
    assert main(_train_args(algo, out)) == 0
    _check_run_dir(out, algo)
    capsys.readouterr()
    assert main(["eval", str(out), "--episodes", "2", "--json"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["algo"] == algo and len(res["returns"]) == 2 and res["checkpoint"] == f"step_{STEPS}"


def _check_run_dir(out, algo):
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["train"]["algo"] == algo and cfg["train"]["steps"] == STEPS
    evals = read_evals(out)
    assert [e["step"] for e in evals] == [500, 1000]
    assert all(len(e["returns"]) == 2 and all(r >= 1 for r in e["returns"]) for e in evals)  # reward 1 per step alive
    assert evals[-1]["train_seconds"] > 0 and evals[-1]["steps_per_s"] > 0
    assert 0 < evals[-1]["training_steps"] < 200
    assert (out / "curve.png").stat().st_size > 0
    csv = (out / "evals.csv").read_text().splitlines()
    assert csv[0] == "step,return_mean,ep0,ep1" and len(csv) == 3
    assert [p.name for p in list_checkpoints(out)] == [f"step_{STEPS}"]


def test_drq_run_and_flags(drq_run):
    _check_run_dir(drq_run, "drq")
    hp = json.loads((drq_run / "config.json").read_text())["hyperparameters"]
    assert hp["infonce_weight"] == 0.1 and hp["faded_replay"] and hp["nstep_form"] == "standard" and hp["enc_hdim"] == 32
    last = read_evals(drq_run)[-1]
    assert last["enc/infonce"] > 0 and last["enc/done"] == 0.0  # DR.Q: InfoNCE on, done loss off


def test_resume_reproduces_uninterrupted_run(drq_run, tmp_path):
    """Kill a run after its checkpoint at step ≥ 500 and resume it: same evaluations, same weights."""
    out = tmp_path / "killed"
    cfg = TrainConfig(env=ENV, algo="drq", seed=0, steps=STEPS, eval_every=EVAL_EVERY, eval_episodes=2,
                      random_steps=RANDOM, threads=1, overrides={s.split("=")[0]: int(s.split("=")[1]) for s in SMALL})
    first = Trainer(cfg, out, verbose=False)
    first.run(until=990)  # the checkpoint is written at the first episode end after step 500
    ckpt_step = int(list_checkpoints(out)[-1].name.split("_")[1])
    assert 500 <= ckpt_step < 990
    del first  # "killed": everything after the checkpoint is lost
    assert main(["train", "--resume", str(out)]) == 0
    assert [e["returns"] for e in read_evals(out)] == [e["returns"] for e in read_evals(drq_run)]
    a = torch.load(list_checkpoints(out)[-1] / "trainer.pt", weights_only=False)["agent"]
    b = torch.load(list_checkpoints(drq_run)[-1] / "trainer.pt", weights_only=False)["agent"]
    for k in ("encoder", "value", "policy"):
        assert all(torch.equal(a[k][n], b[k][n]) for n in a[k]), k
    assert torch.equal(a["replay"]["priority"], b["replay"]["priority"])


def test_cli_errors(tmp_path, drq_run, capsys):
    assert main(["train", "--env", "NoSuchEnv-v0", "--algo", "drq", "--steps", "10", "--out", str(tmp_path / "x")]) == 2
    assert "NoSuchEnv-v0" in capsys.readouterr().err
    assert main(["train", "--env", ENV, "--algo", "drq", "--set", "infonce_wieght=1", "--out", str(tmp_path / "y")]) == 2
    assert "infonce_wieght" in capsys.readouterr().err
    assert main(["train", "--env", ENV, "--steps", "10", "--out", str(drq_run)]) == 2  # existing run without --resume
    assert "--resume" in capsys.readouterr().err
    assert main(["train", "--env", "Dmc-cheetah-fly", "--steps", "10", "--out", str(tmp_path / "z")]) == 2
    assert "unknown DMC task cheetah-fly" in capsys.readouterr().err


def test_dmc_task_end_to_end(tmp_path, capsys):
    """DR.Q on proprioceptive DMC cheetah-run (action repeat 2, 500-step episodes that only time out)."""
    out = tmp_path / "dmc"
    args = ["train", "--env", "Dmc-cheetah-run", "--algo", "drq", "--steps", "1000", "--random-steps", "800",
            "--eval-every", "500", "--eval-episodes", "1", "--threads", "1", "--out", str(out)]
    assert main(args + [a for s in SMALL for a in ("--set", s)]) == 0
    evals = read_evals(out)
    assert [e["step"] for e in evals] == [500, 1000]
    assert all(0.0 <= e["returns"][0] <= 1000.0 for e in evals)  # per-step rewards in [0, 1], 2 frames per step
    assert 195 <= evals[-1]["training_steps"] <= 205  # one per env step after the 800-slot random warm-up
    capsys.readouterr()
    assert main(["eval", str(out), "--episodes", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["checkpoint"] == "step_1000"
