"""A loopback stand-in for Telegram's Bot API and Slack's incoming webhooks (neither is reachable here).

One ThreadingHTTPServer on 127.0.0.1 with an ephemeral port. Each POST takes the next step of
`script` (then `default`), and every request is recorded with its path, JSON body and what the
server did:

    ("status", code, headers, body)   answer with this status, headers and body (bytes or JSON-able)
    ("drop",)                         read the request, close the connection without an answer
    ("hang", threading.Event)         hold the request until the test sets the event, then answer 200
    ("ok",)                           answer the way the service does on success

`flavour` ("telegram" or "slack") decides what success looks like.
"""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TELEGRAM_OK = {"ok": True, "result": {"message_id": 1}}


class WebhookServer:
    def __init__(self, flavour: str, script: list | None = None, default: tuple = ("ok",), port: int = 0):
        self.flavour, self.script, self.default = flavour, list(script or []), default
        self.requests: list[dict] = []   # {"path", "body", "step"} in arrival order
        self._lock = threading.Condition()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> "WebhookServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def wait_for_requests(self, count: int, timeout: float = 10.0) -> bool:
        """True once `count` requests have arrived (a condition, not a guess at timing)."""
        with self._lock:
            return self._lock.wait_for(lambda: len(self.requests) >= count, timeout)

    def release_port(self) -> None:
        """For a server never started: free its port, so that connections to it are refused."""
        self._httpd.server_close()

    def delivered(self) -> list[dict]:
        """Bodies of the requests the server answered with success."""
        with self._lock:
            return [r["body"] for r in self.requests if r["step"][0] in ("ok", "hang")]

    def _next_step(self, path: str, body) -> tuple:
        with self._lock:
            step = self.script.pop(0) if self.script else self.default
            self.requests.append({"path": path, "body": body, "step": step})
            self._lock.notify_all()
            return step

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                step = server._next_step(self.path, json.loads(raw))
                if step[0] == "drop":
                    self.close_connection = True
                    self.connection.close()
                    return
                if step[0] == "hang":
                    step[1].wait(30)
                    step = ("ok",)
                if step[0] == "ok":
                    body = TELEGRAM_OK if server.flavour == "telegram" else b"ok"
                    self._answer(200, {}, body)
                else:
                    _, code, headers, body = step
                    self._answer(code, headers, body)

            def _answer(self, code: int, headers: dict, body) -> None:
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(code)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args) -> None:  # keep the test output quiet
                pass

        return Handler


def main() -> None:
    """Serves one stand-in until interrupted, printing each message's headline, or with --full the
    whole request body (docs/alerts.md):

        python -m tests.webhook_server slack 18650 [--full]
    """
    import argparse
    import signal

    parser = argparse.ArgumentParser(prog="python -m tests.webhook_server")
    parser.add_argument("flavour", choices=("telegram", "slack"))
    parser.add_argument("port", type=int, nargs="?", default=0)
    parser.add_argument("--full", action="store_true", help="print each request body as JSON")
    args = parser.parse_args()
    def interrupt(*_):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    with WebhookServer(args.flavour, port=args.port) as server:
        print(f"{args.flavour} stand-in on {server.url}", flush=True)
        try:
            seen = 0
            while True:
                server.wait_for_requests(seen + 1, timeout=3600)
                for request in server.requests[seen:]:
                    body = request["body"]
                    shown = json.dumps(body, ensure_ascii=False) if args.full else (body.get("text") or "").splitlines()[0][:160]
                    print(shown, flush=True)
                seen = len(server.requests)
        except KeyboardInterrupt:
            print(f"{len(server.delivered())} messages received", flush=True)


if __name__ == "__main__":
    main()
