"""A misbehaving local Binance for tests: a combined-stream websocket server and a REST server on loopback.

The websocket side is a minimal RFC 6455 server (handshake, text/ping/pong/close frames) built on
socket and threading, because Binance itself cannot be reached here. Each accepted connection plays
the script `plan(index, path)` returns, a list of steps:

    ("frames", [text, ...])   send these text frames
    ("ping", b"payload")      send a ping; the client's pong is recorded in `pongs`
    ("wait_pong", seconds)    wait until a pong came back (or the time is up)
    ("drop",)                 cut the TCP connection, no close frame (a network failure)
    ("silence",)              stop sending and stop answering pings, keep the socket open
    ("stay",)                 keep the connection open, answering pings, until the client leaves
    ("wait_event", event)     pause until the test sets this threading.Event
    ("raw", b"bytes")         send these bytes as they are (hand-made frame headers, fragments)

After the last step the connection stays as the last step left it.
"""
from __future__ import annotations

import base64
import hashlib
import json
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from tests.conftest import PROJECT_DIR, read_sample_trades
import os

FIXTURES = os.path.join(PROJECT_DIR, "tests", "fixtures")
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


# Data ------------------------------------------------------------------------------------------
def eth_trades() -> list[dict]:
    """The 1,000 real ETHUSDT trades as REST historicalTrades rows."""
    return [{"id": int(r[0]), "price": r[1], "qty": r[2], "quoteQty": r[3], "time": int(r[4]),
             "isBuyerMaker": r[5] == "true", "isBestMatch": r[6] == "true"}
            for r in read_sample_trades("ETHUSDT-trades-2023-02-02.csv")]


def trade_frame(symbol: str, row: dict) -> str:
    """A combined-stream trade frame, as Binance sends it, of a REST-shaped trade row."""
    data = {"e": "trade", "E": row["time"] + 3, "s": symbol, "t": row["id"], "p": row["price"], "q": row["qty"],
            "T": row["time"], "m": row["isBuyerMaker"], "M": row["isBestMatch"]}
    return json.dumps({"stream": f"{symbol.lower()}@trade", "data": data}, separators=(",", ":"))


def recorded_frames() -> list[str]:
    """The real recorded combined-stream frames (depth, bookTicker, kline, aggTrade), verbatim."""
    with open(os.path.join(FIXTURES, "binance-ws-combined-stream.txt"), encoding="utf-8") as handle:
        lines = handle.read().splitlines()[1:]
    return [line.partition(": ")[2] for line in lines if line]


def recorded_trade_frames() -> list[str]:
    """Recorded aggTrade frames of exactly one trade, re-labelled as that trade's event."""
    frames = []
    for raw in recorded_frames():
        frame = json.loads(raw)
        data = frame["data"]
        if data.get("e") == "aggTrade" and data["f"] == data["l"]:
            trade = {"e": "trade", "E": data["E"], "s": data["s"], "t": data["f"], "p": data["p"], "q": data["q"],
                     "T": data["T"], "m": data["m"], "M": data["M"]}
            frames.append(json.dumps({"stream": f"{data['s'].lower()}@trade", "data": trade}, separators=(",", ":")))
    return frames


def exchange_info() -> dict:
    with open(os.path.join(FIXTURES, "binance-exchangeinfo.json"), encoding="utf-8") as handle:
        return json.load(handle)


# WebSocket server ------------------------------------------------------------------------------
def _frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    header = bytes([(0x80 if fin else 0) | opcode])
    n = len(payload)
    if n < 126:
        header += bytes([n])
    elif n < 65536:
        header += bytes([126]) + struct.pack(">H", n)
    else:
        header += bytes([127]) + struct.pack(">Q", n)
    return header + payload


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def _read_frame(sock: socket.socket) -> tuple[int, bytes]:
    b1, b2 = _recv_exact(sock, 2)
    n = b2 & 0x7F
    if n == 126:
        n = struct.unpack(">H", _recv_exact(sock, 2))[0]
    elif n == 127:
        n = struct.unpack(">Q", _recv_exact(sock, 8))[0]
    mask = _recv_exact(sock, 4) if b2 & 0x80 else b"\0\0\0\0"
    payload = bytes(b ^ mask[i % 4] for i, b in enumerate(_recv_exact(sock, n)))
    return b1 & 0x0F, payload


class Connection:
    def __init__(self, index: int, sock: socket.socket, path: str):
        self.index, self.sock, self.path = index, sock, path
        self.opened = time.monotonic()
        self.closed_at: float | None = None
        self.silent = False
        self.pongs: list[bytes] = []
        self.client_pings = 0
        self.sent_frames = 0
        self.lock = threading.Lock()

    def send(self, opcode: int, payload: bytes) -> None:
        with self.lock:
            self.sock.sendall(_frame(opcode, payload))

    def read_loop(self) -> None:
        """Answers the client's pings (unless silent) and records its pongs, until it leaves."""
        try:
            while True:
                opcode, payload = _read_frame(self.sock)
                if opcode == 0x9:
                    self.client_pings += 1
                    if not self.silent:
                        self.send(0xA, payload)
                elif opcode == 0xA:
                    self.pongs.append(payload)
                elif opcode == 0x8:
                    if not self.silent:
                        self.send(0x8, payload[:2])
                    break
        except (ConnectionError, OSError):
            pass
        finally:
            self.closed_at = self.closed_at or time.monotonic()
            try:
                self.sock.close()
            except OSError:
                pass


class FakeBinanceWebSocket:
    def __init__(self, plan):
        self.plan = plan
        self.connections: list[Connection] = []
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.url = f"ws://127.0.0.1:{self.port}"
        self._running = True
        threading.Thread(target=self._accept_loop, daemon=True).start()

    def _accept_loop(self) -> None:
        while self._running:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _serve(self, sock: socket.socket) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)   # frames go out as sent, like a real feed
        request = b""
        while b"\r\n\r\n" not in request:
            chunk = sock.recv(4096)
            if not chunk:
                return
            request += chunk
        lines = request.decode("latin-1").split("\r\n")
        path = lines[0].split(" ")[1]
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
        accept = base64.b64encode(hashlib.sha1((headers["sec-websocket-key"] + WS_GUID).encode()).digest()).decode()
        sock.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      f"Sec-WebSocket-Accept: {accept}\r\n\r\n").encode())
        conn = Connection(len(self.connections), sock, path)
        self.connections.append(conn)
        threading.Thread(target=conn.read_loop, daemon=True).start()
        try:
            for step in self.plan(conn.index, path):
                self._play(conn, step)
        except (ConnectionError, OSError):
            pass

    @staticmethod
    def _play(conn: Connection, step: tuple) -> None:
        kind = step[0]
        if kind == "frames":
            for text in step[1]:
                conn.send(0x1, text.encode())
                conn.sent_frames += 1
        elif kind == "ping":
            conn.send(0x9, step[1])
        elif kind == "wait_pong":
            deadline = time.monotonic() + step[1]
            while not conn.pongs and time.monotonic() < deadline:
                time.sleep(0.01)
        elif kind == "drop":
            conn.closed_at = time.monotonic()
            conn.sock.shutdown(socket.SHUT_RDWR)
            conn.sock.close()
        elif kind == "silence":
            conn.silent = True
        elif kind == "stay":
            pass
        elif kind == "wait_event":
            step[1].wait(120)
        elif kind == "raw":
            with conn.lock:
                conn.sock.sendall(step[1])

    def close(self) -> None:
        self._running = False
        self.listener.close()
        for conn in self.connections:
            try:
                conn.sock.close()
            except OSError:
                pass


# REST server -----------------------------------------------------------------------------------
class FakeBinanceRest:
    """exchangeInfo and historicalTrades from real data; `requests` records every call's path."""

    def __init__(self, trades_by_symbol: dict[str, list[dict]]):
        self.trades = trades_by_symbol
        self.requests: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                outer.requests.append(self.path)
                url = urlparse(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                if url.path == "/api/v3/exchangeInfo":
                    body = exchange_info()
                elif url.path == "/api/v3/historicalTrades":
                    rows = outer.trades.get(query["symbol"], [])
                    start = int(query.get("fromId", rows[0]["id"] if rows else 0))
                    body = [r for r in rows if r["id"] >= start][:int(query.get("limit", 500))]
                else:
                    self.send_error(404)
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
