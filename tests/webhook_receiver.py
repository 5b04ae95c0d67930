"""A real webhook receiver for the tests: ``ThreadingHTTPServer`` on 127.0.0.1, in its own process.

Usage: ``python tests/webhook_receiver.py PORT LOG [--answers 400,503:1] [--delay S]``

The HMAC key comes from ``PDM_WEBHOOK_SECRET``. Every POST is checked with
:func:`pdm.actions.webhook.verify` and appended to ``LOG`` as one JSON line
(``id``, ``valid``, ``status``, ``body``, ``headers``, ``t``) *before* it is
answered, flushed at once, so a test reads what arrived even after killing
this process. ``--answers`` lists the statuses of the first requests, in order
(``STATUS`` or ``STATUS:RETRY_AFTER_SECONDS``); later requests get 200.
``--delay`` holds every answer that long (a slow receiver). The test stops it
with SIGTERM and may start it again on the same port.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from pdm.actions.webhook import HEADER_EVENT_ID, verify


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("port", type=int)
    ap.add_argument("log", type=Path)
    ap.add_argument("--answers", default="")
    ap.add_argument("--delay", type=float, default=0.0)
    args = ap.parse_args()
    secret = os.environ["PDM_WEBHOOK_SECRET"].encode()
    answers = [a.split(":") for a in args.answers.split(",") if a]
    lock = threading.Lock()
    out = args.log.open("a", encoding="utf-8")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            headers = dict(self.headers.items())
            with lock:
                status, retry_after = (int(answers[0][0]), answers[0][1:]) if answers else (200, [])
                if answers:
                    answers.pop(0)
                rec: dict[str, Any] = {
                    "id": headers.get(HEADER_EVENT_ID),
                    "valid": verify(secret, headers, body),
                    "status": status,
                    "body": body.decode("utf-8", "replace"),
                    "headers": headers,
                    "t": time.time(),
                }
                out.write(json.dumps(rec) + "\n")
                out.flush()
            time.sleep(args.delay)
            reply = b"ok" if status < 300 else f"test refusal {status}".encode()
            self.send_response(status)
            if retry_after:
                self.send_header("Retry-After", retry_after[0])
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    class Server(ThreadingHTTPServer):
        daemon_threads = True

        def handle_error(self, request: Any, client_address: Any) -> None:
            pass  # a client killed mid-request (the kill -9 test): nothing to report

    with Server(("127.0.0.1", args.port), Handler) as server:
        server.serve_forever()


if __name__ == "__main__":
    main()
