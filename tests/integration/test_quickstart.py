"""The quickstart's whole pipeline (teacher SFT → teacher GRPO → student SFT → OPD) in its seconds-long smoke form."""

from mentor.cli import main


def test_quickstart_fast_runs_every_stage(tmp_path, capsys):
    out = tmp_path / "qs"
    assert main(["quickstart", "--fast", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    for stage in ("teacher SFT", "teacher GRPO", "student SFT", "student GRPO", "on-policy distillation"):
        assert stage in printed
    assert (out / "summary.md").exists() and (out / "quickstart.png").exists()
    assert (out / "opd" / "final" / "config.json").exists() and (out / "opd" / "report.md").exists()
    # the cached teacher is reused on a second run
    assert main(["quickstart", "--fast", "--out", str(out)]) == 0
    assert "cached at" in capsys.readouterr().out
