"""Running the API app with uvicorn: in the foreground (`miracle serve`; Ctrl-C lets the running batch finish and
exits), or in a background thread on a free local port (tests, the load benchmark)."""

from __future__ import annotations

import socket
import threading
import time

import uvicorn


def serve(app, host: str = "127.0.0.1", port: int = 8000, graceful_shutdown_s: float = 30.0, log_level: str = "info"):
    """Serve `app` until Ctrl-C / SIGTERM: uvicorn stops accepting, open replies get `graceful_shutdown_s` to
    finish, then the app's engine stops (waiting requests get 503, a batch still running is cancelled)."""
    uvicorn.run(app, host=host, port=port, timeout_graceful_shutdown=graceful_shutdown_s, log_level=log_level)


class BackgroundServer:
    """`with BackgroundServer(app) as server: ... server.url ...`: uvicorn in a thread on 127.0.0.1 and a free port."""

    def __init__(self, app, host: str = "127.0.0.1"):
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind((host, 0))
        self.url = f"http://{host}:{self.socket.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=10))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True)

    def __enter__(self) -> "BackgroundServer":
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("The server did not start.")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(30)
        self.socket.close()


__all__ = ["BackgroundServer", "serve"]
