"""One Binance combined-stream websocket connection, kept open against the real world.

Binance's rules (https://developers.binance.com/docs/binance-spot-api-docs/web-socket-streams):
a connection carries at most 1024 streams and is cut after 24 hours; the server pings every 20 s
and drops a client that has not answered within a minute. So a BinanceConnection:

- asks for its streams in the URL (<base>/stream?streams=a@trade/b@trade), so no subscribe
  messages and no 5-messages-per-second limit to respect;
- answers pings (websocket-client sends the pong itself) and pings on its own, dropping a
  connection whose pong does not come within the ping timeout (a silent, half-open socket);
- reopens on its own schedule before the 24-hour cut (WS_MAX_CONNECTION_AGE_S), at once;
- after any other close, reconnects after an exponential backoff with jitter, and records every
  delay it chose (`delays`) so tests and metrics can see the schedule.

Frames go to on_frame(connection name, text) in the connection's own thread; the caller must not
block there for long.

websocket-client reads whatever length a frame header announces (up to 2**63 bytes) and joins
continuation frames without limit, so each connection bounds both (`bound_message_size`): a
message over WS_MAX_MESSAGE_BYTES closes the connection as soon as its header says so, before its
payload is read, and reports an "oversize_message" event; the reconnect and the gap backfill
follow as after any other close.
"""
from __future__ import annotations

import logging
import random
import threading
import time
from typing import Callable

import websocket
from websocket import WebSocketPayloadException

log = logging.getLogger(__name__)


def stream_urls(base_url: str, symbols: list[str], max_streams: int) -> list[str]:
    """Combined-stream URLs for the symbols' trade streams, at most max_streams per connection."""
    streams = [f"{s.lower()}@trade" for s in symbols]
    return [f"{base_url}/stream?streams=" + "/".join(streams[i:i + max_streams])
            for i in range(0, len(streams), max_streams)]


class Backoff:
    """Exponential backoff with 'equal jitter': the n-th delay is uniform in [d/2, d] for
    d = min(maximum, initial * 2**n), so many clients cut at once do not come back in lockstep,
    and no delay is ever near zero."""

    def __init__(self, initial_s: float, maximum_s: float, rand: Callable[[], float] = random.random):
        self.initial_s = initial_s
        self.maximum_s = maximum_s
        self.rand = rand
        self.attempt = 0

    def next_delay(self) -> float:
        ceiling = min(self.maximum_s, self.initial_s * (2 ** min(self.attempt, 60)))
        self.attempt += 1
        return ceiling / 2 + self.rand() * ceiling / 2

    def reset(self) -> None:
        self.attempt = 0


class MessageTooLarge(WebSocketPayloadException):
    pass


def bound_message_size(sock: websocket.WebSocket, max_bytes: int, on_oversize: Callable[[int], None]) -> None:
    """Makes an open websocket-client socket refuse a frame, or fragments joined, of more than
    max_bytes: the announced length is checked before the payload is read. websocket-client has
    no such option, so its frame reader and fragment joiner are wrapped (version pinned, tested)."""
    frames, fragments = sock.frame_buffer, sock.cont_frame
    read_length, join = frames.recv_length, fragments.add

    def refuse(size: int) -> None:
        on_oversize(size)
        raise MessageTooLarge(f"message of {size} bytes is over the limit of {max_bytes}")

    def checked_length() -> None:
        read_length()
        if frames.length > max_bytes:
            refuse(frames.length)

    def checked_join(frame) -> None:
        join(frame)
        joined = fragments.cont_data[1] if fragments.cont_data else b""
        if len(joined) > max_bytes:
            fragments.cont_data = None
            refuse(len(joined))

    frames.recv_length = checked_length
    fragments.add = checked_join


class BinanceConnection(threading.Thread):
    def __init__(self, name: str, url: str, on_frame: Callable[[str, str], None], *,
                 ping_interval_s: float, ping_timeout_s: float, max_age_s: float, backoff: Backoff,
                 on_event: Callable[[str, str, dict], None] = lambda name, event, info: None,
                 max_message_bytes: int = 1024 * 1024):
        super().__init__(name=f"ws-{name}", daemon=True)
        self.conn_name = name
        self.url = url
        self.on_frame = on_frame
        self.on_event = on_event        # (connection, "open"|"close"|"reconnect_wait"|"age_out", details)
        self.ping_interval_s = ping_interval_s
        self.ping_timeout_s = ping_timeout_s
        self.max_age_s = max_age_s
        self.max_message_bytes = max_message_bytes
        self.backoff = backoff
        self.delays: list[float] = []   # every reconnect delay chosen, in order
        self.connects = 0
        self.is_open = threading.Event()
        self._stopping = threading.Event()
        self._app: websocket.WebSocketApp | None = None
        self._aged_out = False
        self._frames_this_connection = 0

    # Lifecycle ---------------------------------------------------------------------------------
    def run(self) -> None:
        while not self._stopping.is_set():
            self._connect_once()
            if self._stopping.is_set():
                break
            if self._aged_out:
                delay = 0.0             # our own planned reconnect: come back at once
            else:
                if self._frames_this_connection:
                    self.backoff.reset()    # the last connection worked: start the schedule afresh
                delay = self.backoff.next_delay()
            self.delays.append(delay)
            self.on_event(self.conn_name, "reconnect_wait", {"delay_s": round(delay, 3), "aged_out": self._aged_out})
            if self._stopping.wait(delay):
                break

    def _connect_once(self) -> None:
        self._aged_out = False
        self._frames_this_connection = 0
        self._app = websocket.WebSocketApp(self.url, on_open=self._on_open, on_message=self._on_message,
                                           on_close=self._on_close, on_error=self._on_error)
        age_timer = threading.Timer(self.max_age_s, self._age_out)
        age_timer.daemon = True
        age_timer.start()
        try:
            self._app.run_forever(ping_interval=self.ping_interval_s, ping_timeout=self.ping_timeout_s,
                                  skip_utf8_validation=False)
        except Exception as error:      # run_forever reports through on_error; this is the last guard
            log.warning("connection=%s run_forever raised: %r", self.conn_name, error)
        finally:
            age_timer.cancel()
            self.is_open.clear()

    def stop(self) -> None:
        self._stopping.set()
        app = self._app
        if app is not None:
            app.close()

    # Callbacks (run in this connection's thread) -----------------------------------------------
    def _on_open(self, app) -> None:
        # Before the first frame is read: on_open runs right after the handshake, in this thread.
        bound_message_size(app.sock, self.max_message_bytes, self._on_oversize)
        self.connects += 1
        self.is_open.set()
        self.on_event(self.conn_name, "open", {"url": self.url, "connects": self.connects})

    def _on_message(self, _app, text: str) -> None:
        self._frames_this_connection += 1
        self.on_frame(self.conn_name, text)

    def _on_oversize(self, size: int) -> None:
        self.on_event(self.conn_name, "oversize_message", {"bytes": size, "limit": self.max_message_bytes})

    def _on_error(self, _app, error) -> None:
        self.on_event(self.conn_name, "error", {"error": repr(error)[:300]})

    def _on_close(self, _app, code, reason) -> None:
        self.is_open.clear()
        self.on_event(self.conn_name, "close", {"code": code, "reason": reason,
                                                "frames": self._frames_this_connection})

    def _age_out(self) -> None:
        """Closes the connection before the exchange's 24-hour cut; run() reopens it at once."""
        self._aged_out = True
        self.on_event(self.conn_name, "age_out", {"max_age_s": self.max_age_s})
        app = self._app
        if app is not None:
            app.close()
