"""`mentor eval` and `mentor report` through the real CLI on a tiny saved model."""

import json

import pytest

from mentor.cli import main
from mentor.models import build_tiny_model, build_tokenizer, save_model
from mentor.tasks.data import gsm8k_fixture_path


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    tok = build_tokenizer()
    return str(save_model(build_tiny_model(tok, "100k", seed=3), tok, tmp_path_factory.mktemp("m") / "model"))


def test_eval_task_sampled_writes_items_and_pass_at_k(model_dir, tmp_path, capsys):
    out = tmp_path / "ev"
    assert main(["eval", model_dir, "--task", "add", "--task-args", "digits=2", "--n", "6", "--k", "4",
                 "--max-new-tokens", "12", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    items = [json.loads(line) for line in (out / "items.jsonl").read_text().splitlines()]
    assert summary["n"] == 6 and summary["k"] == 4 and {"pass@1", "pass@2", "pass@4", "length/p90"} <= set(summary)
    assert len(items) == 6 and all(len(it["correct"]) == 4 and len(it["completions"]) == 4 for it in items)
    assert summary["pass@1"] == pytest.approx(summary["accuracy"])  # pass@1 equals mean@k
    assert summary["pass@1"] <= summary["pass@2"] <= summary["pass@4"]
    assert '"pass@4"' in capsys.readouterr().out


def test_eval_dataset_with_math_verifier_greedy(model_dir, tmp_path):
    out = tmp_path / "ev"
    assert main(["eval", model_dir, "--data", str(gsm8k_fixture_path()), "--split", "train", "--fields", "prompt=question", "--verifier", "math",
                 "--greedy", "--n", "5", "--max-new-tokens", "8", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n"] == 5 and summary["k"] == 1 and summary["accuracy"] == 0.0  # a random model solves nothing


def test_eval_needs_exactly_one_source(model_dir):
    with pytest.raises(SystemExit, match="exactly one of --task or --data"):
        main(["eval", model_dir])


def test_report_on_missing_run_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="metrics.jsonl"):
        main(["report", str(tmp_path)])


def test_tensorboard_logging(tmp_path):
    from mentor.config import load_config
    from mentor.train import train

    out = tmp_path / "tb"
    train(load_config(None, ["model.path=tiny:100k", "data.task=add", "data.task_args={digits: 1}", "data.num_train=64",
                             "optim.batch_size=8", "run.steps=2", "eval.every=0", "run.progress=false",
                             "run.tensorboard=true", f"run.out_dir={out}"]))
    assert any(p.name.startswith("events.out.tfevents") for p in (out / "tb").iterdir())


@pytest.mark.parametrize("area,usage", [("data", "mentor data"), ("control", "mentor control"), ("analyze", "mentor analyze")])
def test_area_subcommands_have_their_own_help(area, usage, capsys):
    with pytest.raises(SystemExit) as e:
        main([area, "--help"])
    assert e.value.code == 0 and f"usage: {usage}" in capsys.readouterr().out
