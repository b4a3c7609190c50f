"""A checkpoint that cannot be written fails the training with the file and the cause named."""

from __future__ import annotations

from pathlib import Path

import pytest

from marginscope.engine.config import TrainConfig
from marginscope.engine.loop import train


def test_an_unwritable_checkpoint_names_the_file_and_the_cause(tmp_path: Path) -> None:
    """The out_dir's parent is a regular file (refused to root as well as to a user)."""
    (tmp_path / "file").write_text("not a folder")
    out_dir = tmp_path / "file" / "run"
    config = TrainConfig(dataset="digits", candidates=32, batch_size=8, steps=2, eval_every=2,
                         out_dir=str(out_dir))
    with pytest.raises(OSError, match="^cannot write checkpoint .*: not a directory$") as caught:
        train(config)
    assert str(caught.value) == f"cannot write checkpoint {out_dir / 'checkpoint.pt'}: not a directory"
