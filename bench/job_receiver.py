"""A real webhook receiver on loopback (http.server in a thread) for the job tests and benchmark: answers the
scripted statuses in turn (then 200), records every call, and counts each job's events by webhook-id."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Receiver:
    def __init__(self, statuses: list[int] | None = None) -> None:
        self.statuses = list(statuses or [])
        self.calls: list[tuple[dict[str, str], bytes, int]] = []  # (headers, body, status answered)
        self.lock = threading.Lock()
        self.url = ""

    def events(self, job_id: str, status: str = "completed") -> set[str]:
        """The distinct webhook-ids of `job_id`'s events with that status that were accepted (2xx)."""
        with self.lock:
            accepted = [(sent["webhook-id"], json.loads(body)["data"]) for sent, body, answered in self.calls
                        if answered < 300]
        return {message_id for message_id, data in accepted if (data["id"], data["status"]) == (job_id, status)}

    @contextlib.contextmanager
    def serving(self) -> Iterator[Receiver]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                with receiver.lock:
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                    receiver.calls.append(({k.lower(): v for k, v in self.headers.items()}, body, status))
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                return None

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        self.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/asr"
        try:
            yield self
        finally:
            server.shutdown()
            server.server_close()
