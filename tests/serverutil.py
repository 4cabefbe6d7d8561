"""Run a real `server.app.LineageServer` on 127.0.0.1 port 0 in a background event loop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from concurrent.futures import Future
from typing import Any, Self

from server.app import LineageServer, ServerConfig


class BackgroundServer:
    """A started server; `port` is the bound port. Call stop() (or use `with`)."""

    def __init__(self, engine: Any, **config: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        config.setdefault("drain_delay", 0.0)
        self.server = LineageServer(engine, ServerConfig(address="127.0.0.1:0", **config))
        self.port = self.run(self.server.start())
        self.address = f"127.0.0.1:{self.port}"

    def submit(self, coro: Coroutine[Any, Any, Any]) -> Future[Any]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine[Any, Any, Any], timeout: float = 60.0) -> Any:
        return self.submit(coro).result(timeout)

    def stop(self, grace: float = 5.0) -> None:
        if self.loop.is_running():
            self.run(self.server.stop(grace))
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()
