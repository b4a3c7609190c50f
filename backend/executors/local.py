"""The local executor: one worker process per run on this machine, and what it takes to watch one.

Each worker is `python -m marginscope.backend.worker <run-id> [--resume]` in its own session
(`start_new_session=True`): Ctrl-C or a restart of the dashboard does not reach it, and its process
group id equals its pid, so signals go to the whole group. Output goes to
`<data_dir>/runs/<id>/worker.log`. Its environment names the dashboard's loopback URL and the
run's credential, and no database: it reports over the ingest API like any trainer
(backend/worker.py), and the dashboard's token is not passed on. The launcher supervises the process it gets back (exit code,
SIGTERM/SIGKILL, a frozen heartbeat); the helpers for that live here too.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from marginscope.backend.executors import ExecutorError
from marginscope.backend.settings import Settings
from marginscope.backend.store import Run

log = logging.getLogger(__name__)

WORKER_LOG = "worker.log"

WorkerCommand = Callable[[int, bool], Sequence[str]]


def worker_command(run_id: int, resume: bool) -> list[str]:
    """The command line of a run's worker process."""
    return [sys.executable, "-m", "marginscope.backend.worker", str(run_id), *(["--resume"] if resume else [])]


def worker_marker(run_id: int) -> str:
    """Text in the command line of run `run_id`'s worker (/proc cmdline, NULs read as spaces):
    `... marginscope.backend.worker <id> ...`, with the space after the id so run 5 does not match run 55."""
    return f"marginscope.backend.worker {run_id} "


def pid_alive(pid: int, *, expect: str | None = None) -> bool:
    """True if a live (non-zombie) process has this pid; with `expect`, its command line must contain
    it too (a recycled pid then reads as dead). /proc is used where it exists (Linux)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    proc = Path(f"/proc/{pid}")
    if proc.exists():
        try:
            stat = (proc / "stat").read_text()
            if stat[stat.rindex(")") + 2:].startswith("Z"):
                return False
            if expect is not None:
                return expect in (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError):
            return False
    return True


def signal_group(pid: int, sig: signal.Signals) -> bool:
    """Send `sig` to the worker's process group (its pid, since it leads its own session)."""
    try:
        os.killpg(pid, sig)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        log.warning("no permission to signal process group %d", pid)
        return False


def reason(exc: OSError) -> str:
    """The cause of an OSError in words ("permission denied"), without errno and path."""
    return (exc.strerror or str(exc)).lower()


def tail(path: Path, limit: int = 4000) -> str | None:
    """The end of a worker's log: the traceback of a crash is there."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - limit))
            return fh.read().decode(errors="replace") or None
    except OSError:
        return None


class LocalExecutor:
    """Starts a worker process per run; the launcher supervises the process it returns."""

    kind = "local"

    def __init__(self, settings: Settings, command: WorkerCommand = worker_command) -> None:
        self.settings = settings
        self.command = command
        # where workers reach this dashboard; the app corrects it from the address it really
        # serves on (`uvicorn --factory ... --port 9000` without MARGINSCOPE_PORT: main.ServedAddress)
        self.server_url = settings.local_url

    def start(self, run: Run, run_dir: Path, *, resume: bool, credential: str) -> subprocess.Popen[bytes]:
        cmd = list(self.command(run.id, resume))
        nproc = int(run.config.get("nproc", 1))
        if nproc > 1:  # the worker becomes torchrun before it has claimed the run (and its config)
            cmd += ["--nproc", str(nproc), "--device", str(run.config.get("device", "auto"))]
        env = {k: v for k, v in os.environ.items() if not k.startswith("MARGINSCOPE_")}
        env.update({
            "MARGINSCOPE_SERVER_URL": self.server_url,
            "MARGINSCOPE_RUN_CREDENTIAL": credential,
            "MARGINSCOPE_DATA_DIR": str(self.settings.data_dir),
            "MARGINSCOPE_HEARTBEAT_INTERVAL": str(self.settings.heartbeat_interval),
            "PYTHONUNBUFFERED": "1",
        })
        try:
            out = (run_dir / WORKER_LOG).open("ab")
        except OSError as exc:
            raise ExecutorError(f"cannot write {run_dir / WORKER_LOG}: {reason(exc)}") from exc
        try:
            with out:
                return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                        start_new_session=True, env=env, cwd=str(run_dir))
        except OSError as exc:
            raise ExecutorError(f"cannot start worker: {exc}") from exc

    def ended(self) -> list[tuple[int, str | None]]:
        return []  # the launcher reaps its worker processes itself

    def started(self) -> set[int]:
        return set()

    def cancel(self, run_id: int) -> None:
        pass  # the launcher signals the worker's process group

    def close(self) -> None:
        pass
