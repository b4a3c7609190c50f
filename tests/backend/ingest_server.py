"""A real dashboard for the ingest tests: uvicorn on 127.0.0.1 in a thread, on a real database.

`with ThreadServer(settings) as server: server.url`. The app is the production one (`create_app`),
its launcher supervising (stale remote runs are crashed by it) unless `supervise=False` (then
nothing starts a queued run but a claim). A dashboard to kill and restart is a subprocess:
`servers.DashboardProcess`.
"""

from __future__ import annotations

import threading

import uvicorn
from servers import HOST, STOP_TIMEOUT, answers, free_port, wait_for

from marginscope.backend.main import create_app
from marginscope.backend.settings import Settings


class ThreadServer:
    def __init__(self, settings: Settings, *, supervise: bool = True) -> None:
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        config = uvicorn.Config(create_app(settings, supervise=supervise), host=HOST, port=self.port,
                                log_level="warning", lifespan="on")
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

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(STOP_TIMEOUT)
