"""The remote client's own parts, without a dashboard: the spool file, and a reporter whose
dashboard cannot be reached (training goes on; every event waits in the spool)."""

from __future__ import annotations

import json
import socket
from pathlib import Path

from marginscope.engine.events import LogMessage
from marginscope.engine.remote import HttpReporter, Spool


def nowhere() -> str:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def test_the_spool_reads_back_what_was_appended_and_skips_a_torn_line(tmp_path: Path) -> None:
    spool = Spool.create(tmp_path, {"server": "http://x", "run_id": None})
    for seq in range(5):
        spool.append(seq, json.dumps(LogMessage(step=seq, level="info", message=f"m{seq}").to_dict()))
    spool.close()
    with (spool.path / "events.jsonl").open("a") as fh:
        fh.write('{"seq": 5, "event": {"kind": "lo')  # a crash in the middle of a line
    assert [seq for seq, _ in spool.read()] == [0, 1, 2, 3, 4]
    assert [json.loads(text)["message"] for _, text in spool.read(3)] == ["m3", "m4"]
    assert spool.acked() is None
    spool.write_acked(4)
    assert spool.acked() == 4 and spool.meta() == {"server": "http://x", "run_id": None}


def test_an_unreachable_dashboard_never_blocks_training(tmp_path: Path) -> None:
    reporter = HttpReporter(nowhere(), config={"dataset": "digits"}, spool_dir=tmp_path, flush_interval=0.05,
                            max_backoff=0.1)
    for step in range(2000):  # each call only writes the spool: nothing waits on the network
        reporter(LogMessage(step=step, level="info", message="x"))
    assert reporter.pending == 2000 and not reporter.should_stop() and reporter.failed is None
    assert reporter.close(timeout=0.5) is False  # gives up after the timeout, keeps everything
    assert [seq for seq, _ in reporter.spool.read()] == list(range(2000))
    meta = reporter.spool.meta()
    assert meta["run_id"] is None and meta["create"]["config"] == {"dataset": "digits"}
    assert meta["create"]["host"] == socket.gethostname()
