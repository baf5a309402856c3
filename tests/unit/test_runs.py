import json

import pytest

from mentor import runs


def test_atomic_dir_replaces_whole_or_nothing(tmp_path):
    target = tmp_path / "ckpt"
    with runs.atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("one")
    assert (target / "a.txt").read_text() == "one"
    with pytest.raises(RuntimeError):
        with runs.atomic_dir(target) as tmp:
            (tmp / "a.txt").write_text("half")
            raise RuntimeError("killed mid-write")
    assert (target / "a.txt").read_text() == "one"  # the old version survives
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]  # no temp leftovers after an exception


def test_incomplete_checkpoints_are_ignored(tmp_path):
    (tmp_path / "ckpt" / "step_5").mkdir(parents=True)
    (tmp_path / "ckpt" / "step_5" / "trainer.pt").write_bytes(b"x")
    (tmp_path / "ckpt" / "step_10").mkdir()  # no trainer.pt: a write that never finished
    (tmp_path / "ckpt" / ".step_15.tmpabc").mkdir()
    assert runs.latest_checkpoint(tmp_path).name == "step_5"


def test_jsonl_truncate_to_step(tmp_path):
    log = runs.JsonlLog(tmp_path / "m.jsonl")
    for s in range(5):
        log.write({"step": s, "loss": s * 0.5})
    log.truncate_to_step(2)
    assert [json.loads(x)["step"] for x in (tmp_path / "m.jsonl").read_text().splitlines()] == [0, 1, 2]
