"""The ingest API's HTTP calls (httpx), with its answers sorted into what a caller does next.

- `Unavailable`: the dashboard cannot be reached, answered 5xx, or took too long: retry later;
- `SeqGap`: the server expects the events from `expected` on: resend from there;
- `Refused`: any other 4xx (a bad token, an unknown run, a run that ended): retrying the same
  request cannot help (`status` says which).
"""

from __future__ import annotations

import os
import socket
from typing import Any

import httpx


class IngestError(Exception):
    pass


class Unavailable(IngestError):
    """Down, unreachable, overloaded or restarting: try again later."""


class Refused(IngestError):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"{status}: {detail}")
        self.status, self.detail = status, detail


class SeqGap(IngestError):
    def __init__(self, expected: int, detail: str) -> None:
        super().__init__(detail)
        self.expected = expected


def trainer(pid: int | None = None) -> dict[str, Any]:
    """This process (or `pid`, the one that stands for the training), as the dashboard shows
    where a run trains."""
    return {"host": socket.gethostname(), "pid": os.getpid() if pid is None else pid}


class IngestClient:
    """One dashboard's ingest API. Thread-safe (httpx.Client is)."""

    def __init__(self, server: str, *, token: str | None = None, timeout: float = 10.0) -> None:
        self.server = server.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=self.server, headers=headers, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def _post(self, path: str, *, json: Any = None, content: str | None = None) -> dict[str, Any]:
        try:
            if content is not None:
                response = self._http.post(path, content=content.encode(),
                                           headers={"Content-Type": "application/json"})
            else:
                response = self._http.post(path, json=json)
        except httpx.HTTPError as exc:  # connect, read, timeouts, a server gone mid-answer
            raise Unavailable(f"{self.server}: {type(exc).__name__}: {exc}") from exc
        if response.status_code >= 500:
            raise Unavailable(f"{self.server}: {response.status_code} {response.text[:200]}")
        try:
            body = response.json()
        except ValueError:
            body = {"detail": response.text[:200]}
        if response.status_code == 409 and isinstance(body.get("expected_seq"), int):
            raise SeqGap(body["expected_seq"], str(body.get("detail")))
        if response.status_code >= 400:
            detail = body.get("detail") if isinstance(body, dict) else body
            raise Refused(response.status_code, str(detail)[:1000])
        return body  # type: ignore[no-any-return]

    def create_run(self, body: dict[str, Any]) -> dict[str, Any]:
        """{run, next_seq} of a new remote run (body: config, name, tags, notes, host, pid)."""
        return self._post("/api/ingest/runs", json=body)

    def claim(self, run_id: int, pid: int | None = None) -> dict[str, Any]:
        """{run, config, next_seq}: the queued run `run_id` trains here from now on."""
        return self._post(f"/api/ingest/runs/{run_id}/claim", json=trainer(pid))

    def post_events(self, run_id: int, seq: int, events_json: list[str]) -> dict[str, Any]:
        """{next_seq, stop}. `events_json`: each event already as JSON text (built once)."""
        content = '{"seq": %d, "events": [%s]}' % (seq, ",".join(events_json))
        return self._post(f"/api/ingest/runs/{run_id}/events", content=content)

    def heartbeat(self, run_id: int) -> dict[str, Any]:
        """{stop, status}."""
        return self._post(f"/api/ingest/runs/{run_id}/heartbeat", json={})
