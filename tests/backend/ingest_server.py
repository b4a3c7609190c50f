"""A real dashboard for the ingest tests: uvicorn on 127.0.0.1 in a thread, on a real database.

`with ThreadServer(settings) as server: server.url`. The app is the production one (`create_app`),
its launcher supervising (it starts queued runs' workers, which report back to this server's port,
and crashes stale runs) unless `supervise=False` (then nothing starts a queued run but a claim);
`server.launcher` is the app's launcher once it serves. A dashboard to kill and restart is a subprocess:
`servers.DashboardProcess`.
"""

from __future__ import annotations

import threading

import uvicorn
from servers import HOST, STOP_TIMEOUT, answers, free_port, wait_for

from marginscope.backend.launcher import Launcher
from marginscope.backend.main import create_app
from marginscope.backend.settings import Settings


class ThreadServer:
    def __init__(self, settings: Settings, *, supervise: bool = True) -> None:
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        # the port it really listens on: the launcher hands its workers this URL
        self.settings = settings.model_copy(update={"host": HOST, "port": self.port})
        self.app = create_app(self.settings, supervise=supervise)
        config = uvicorn.Config(self.app, host=HOST, port=self.port, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ThreadServer:
        self.thread.start()
        try:
            wait_for(lambda: answers(self.url), f"{self.url} to answer", timeout=60, interval=0.1)
        except BaseException:
            self.__exit__()
            raise
        return self

    @property
    def launcher(self) -> Launcher:
        return self.app.state.launcher  # type: ignore[no-any-return]

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(STOP_TIMEOUT)
