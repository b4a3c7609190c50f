"""`marginscope` on the command line: help, a real run writing its outputs, and bad input that
exits 2 with one line (never a traceback)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from marginscope.engine.cli import app

runner = CliRunner()


def test_help_lists_commands() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("train", "demo"):
        assert command in result.output


def test_train_help_lists_every_config_field() -> None:
    from marginscope.engine.config import TrainConfig

    result = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for name in TrainConfig.model_fields:
        assert f"--{name.replace('_', '-')}" in result.output


def test_train_writes_events_and_summary(tmp_path) -> None:
    out = tmp_path / "run"
    result = runner.invoke(app, [
        "train", "--dataset", "digits", "--selector", "mms", "--candidates", "64", "--batch-size", "16",
        "--steps", "30", "--eval-every", "10", "--lr", "0.01", "--regime", "[[0.5, 0.1]]", "--out", str(out),
    ])
    assert result.exit_code == 0, result.output
    assert "finished: 30 steps" in result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 30 and summary["test_accuracy"] is not None
    kinds = [json.loads(line)["kind"] for line in (out / "events.jsonl").read_text().splitlines()]
    assert kinds[0] == "run_started" and kinds[-1] == "run_finished"
    assert (out / "checkpoint.pt").is_file()


@pytest.mark.parametrize("args, fragment", [
    (["--batch-size", "0"], "batch_size"),
    (["--batch-size", "many"], "batch_size"),
    (["--selector", "nope"], "unknown selector"),
    (["--regime", "sometimes"], "regime"),
    (["--candidates", "8", "--batch-size", "16"], "candidates"),
    (["--selector-options", '{"mix": 2}'], "mix"),
    (["--dataset", "cifar10", "--data-dir", "/nonexistent-marginscope"], "--download"),
    (["--config", "/nonexistent-marginscope.json"], "no such file"),
])
def test_bad_options_exit_2_with_one_line(args: list[str], fragment: str) -> None:
    # a real process, so we see exactly what a user sees on stderr
    proc = subprocess.run([sys.executable, "-m", "marginscope.engine.cli", "train", "--steps", "1", *args],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr
    assert fragment in lines[0]
    assert "Traceback" not in proc.stderr


def test_config_file_with_overrides(tmp_path) -> None:
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("dataset: digits\nselector: uniform\nsteps: 5\nbatch_size: 8\n")
    result = runner.invoke(app, ["train", "--config", str(cfg), "--steps", "7", "--eval-every", "7"])
    assert result.exit_code == 0, result.output
    assert "finished: 7 steps" in result.output
