"""Run the gateway's ASGI app with uvicorn in a background thread (demo, tests, benchmarks)."""

from __future__ import annotations

import threading
import time
from types import TracebackType

import uvicorn
from fastapi import FastAPI

from gateway.settings import Settings


class BackgroundServer:
    """`with BackgroundServer(app) as url:` serves `app` on loopback until the block ends.

    With ``settings``, it is served as ``insitu serve`` serves it (``gateway.serving``:
    header and body timeouts, connection limits per client address).
    """

    def __init__(
        self,
        app: FastAPI,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        settings: Settings | None = None,
    ) -> None:
        if settings is None:
            config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on")
        else:
            from gateway import serving  # noqa: PLC0415 - h11 and the guard only when asked

            config = serving.config(app, settings, host=host, port=port, lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="insitu-server", daemon=True)
        self.url = ""

    def start(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the gateway did not start")
            time.sleep(0.01)
        host, port = self.server.servers[0].sockets[0].getsockname()[:2]
        self.url = f"http://{host}:{port}"
        return self.url

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=60)

    def __enter__(self) -> str:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
