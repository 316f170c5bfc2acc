"""Delivery to Telegram and Slack stand-ins on loopback: retries with backoff (5xx, 429 with
Retry-After or Telegram's retry_after, a dropped connection), no retry for other 4xx, a server that
never recovers, a full queue, shutdown, and secrets kept out of every log line.

Waits go through an injected clock and sleep: the tests assert the recorded schedule, and take
no real time waiting."""
import logging
import threading

import pytest

from config import load
from flink_jobs.alerts.channels import RetryPolicy, SlackChannel, TelegramChannel, channels_from_config, deliver
from flink_jobs.alerts.message import Alert
from flink_jobs.alerts.sender import AlertSender
from flink_jobs.alerts.sink import describe_alerting

from tests.webhook_server import WebhookServer

TOKEN = "123456789:AAH-very-secret-token"
SLACK_PATH = "/services/T0001/B0002/slack-secret-key"
RETRY = RetryPolicy(max_attempts=6, initial_s=1.0, max_s=30.0, budget_s=60.0, http_timeout_s=5.0)


class FakeTime:
    """A clock the sleeps advance; thread-safe, since the sender thread sleeps and the test reads."""

    def __init__(self):
        self.now = 0.0
        self.sleeps: list[tuple[float, float]] = []   # (started at, seconds)
        self._lock = threading.Lock()

    def clock(self) -> float:
        with self._lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append((self.now, seconds))
            self.now += seconds


def alert(trade_id: int, symbol: str = "ETHUSDT") -> Alert:
    return Alert(symbol, trade_id, 1678485477945 + trade_id, "combined", "high", 1432.17, -0.084, -3.7, -0.045,
                 "v1", f"{symbol} moved -0.084% in one trade")


def telegram(server: WebhookServer) -> TelegramChannel:
    return TelegramChannel(server.url, TOKEN, "-100200300")


def slack(server: WebhookServer) -> SlackChannel:
    return SlackChannel(server.url + SLACK_PATH)


def status(code: int, body=b"", **headers) -> tuple:
    return ("status", code, {k.replace("_", "-"): v for k, v in headers.items()}, body)


def test_telegram_request_is_a_send_message_call_with_html_and_no_preview():
    with WebhookServer("telegram") as server:
        result = deliver(telegram(server), telegram(server).render(alert(1)), RETRY)
    assert result.delivered and result.attempts == 1
    [request] = server.requests
    assert request["path"] == f"/bot{TOKEN}/sendMessage"
    assert request["body"]["chat_id"] == "-100200300"
    assert request["body"]["parse_mode"] == "HTML" and request["body"]["disable_web_page_preview"] is True
    assert "<b>ETHUSDT high anomaly (combined)</b>" in request["body"]["text"]


def test_retries_500s_a_429_and_a_dropped_connection_with_backoff_and_retry_after_then_delivers_once():
    fake = FakeTime()
    script = [status(500), status(502), status(429, b"", Retry_After="7"), ("drop",)]
    with WebhookServer("slack", script) as server:
        channel = slack(server)
        result = deliver(channel, channel.render(alert(1)), RETRY, clock=fake.clock, sleep=fake.sleep)
    assert result.delivered and result.attempts == 5
    # Backoff 1 s, 2 s, then the server's Retry-After of 7 s, then backoff again for attempt 4: 8 s.
    assert result.waits == (1.0, 2.0, 7.0, 8.0)
    assert [s for _, s in fake.sleeps] == [1.0, 2.0, 7.0, 8.0]
    assert len(server.requests) == 5 and len(server.delivered()) == 1
    assert server.requests[0]["path"] == SLACK_PATH


def test_telegram_429_waits_the_retry_after_of_its_json_parameters():
    fake = FakeTime()
    too_many = {"ok": False, "error_code": 429, "description": "Too Many Requests: retry after 13",
                "parameters": {"retry_after": 13}}
    with WebhookServer("telegram", [status(429, too_many)]) as server:
        result = deliver(telegram(server), {"chat_id": "1", "text": "x"}, RETRY, clock=fake.clock, sleep=fake.sleep)
    assert result.delivered and result.waits == (13.0,)


@pytest.mark.parametrize("flavour, answer, detail", [
    ("telegram", status(400, {"ok": False, "error_code": 400, "description": "Bad Request: chat not found"}),
     "HTTP 400: Bad Request: chat not found"),
    ("slack", status(404, b"no_service"), "HTTP 404: no_service"),
    ("slack", status(400, b"invalid_payload"), "HTTP 400: invalid_payload"),
])
def test_other_client_errors_are_not_retried(flavour, answer, detail):
    fake = FakeTime()
    with WebhookServer(flavour, [answer]) as server:
        channel = telegram(server) if flavour == "telegram" else slack(server)
        result = deliver(channel, channel.render(alert(1)), RETRY, clock=fake.clock, sleep=fake.sleep)
    assert not result.delivered and result.attempts == 1 and fake.sleeps == []
    assert detail in result.detail and len(server.requests) == 1


def test_a_retry_after_beyond_the_delivery_budget_fails_at_once_instead_of_blocking():
    fake = FakeTime()
    with WebhookServer("slack", [status(429, b"", Retry_After="3600")]) as server:
        result = deliver(slack(server), {"text": "x"}, RETRY, clock=fake.clock, sleep=fake.sleep)
    assert not result.delivered and fake.sleeps == [] and "would pass the delivery deadline" in result.detail


def test_after_an_outage_every_alert_reaches_both_channels_exactly_once():
    fake = FakeTime()
    outage = [status(503), ("drop",), status(500), status(429, b"", Retry_After="2")]
    with WebhookServer("telegram", list(outage)) as tg, WebhookServer("slack", list(outage)) as sl:
        sender = AlertSender([telegram(tg), slack(sl)], RETRY, queue_size=100, close_timeout_s=120,
                             clock=fake.clock, sleep=fake.sleep)
        assert all(sender.submit(alert(i)) for i in range(1, 9))
        stats = sender.close()
    assert stats == {"queued": 8, "telegram_sent": 8, "slack_sent": 8}
    telegram_ids = [int(b["text"].split("Trade:</b> ")[1].split(" ")[0]) for b in tg.delivered()]
    slack_ids = [int(b["blocks"][0]["text"]["text"].split("*Trade:* ")[1].split(" ")[0]) for b in sl.delivered()]
    assert sorted(telegram_ids) == sorted(slack_ids) == list(range(1, 9))


def test_a_server_that_never_recovers_costs_each_alert_at_most_its_budget_and_every_one_is_counted(caplog):
    fake = FakeTime()
    retry = RETRY._replace(max_attempts=10, budget_s=20.0)
    with WebhookServer("slack", default=status(500, b"down")) as server, caplog.at_level(logging.INFO):
        sender = AlertSender([slack(server)], retry, queue_size=100, close_timeout_s=600, clock=fake.clock,
                             sleep=fake.sleep)
        for i in range(1, 4):
            sender.submit(alert(i))
        stats = sender.close()
    assert stats == {"queued": 3, "slack_failed": 3}
    # Per alert: tries at 0, 1, 3, 7, 15 s; the next wait (16 s) would end past 20 s, so it stops.
    assert [s for _, s in fake.sleeps] == [1.0, 2.0, 4.0, 8.0] * 3
    assert len(server.requests) == 15
    failures = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(failures) == 3
    assert failures[0].startswith("alert ETHUSDT combined high trade 1 to slack failed: HTTP 500: down")


def test_a_full_queue_drops_and_logs_the_alert_without_blocking_the_caller(caplog):
    release = threading.Event()
    with WebhookServer("slack", [("hang", release)]) as server, caplog.at_level(logging.INFO):
        sender = AlertSender([slack(server)], RETRY, queue_size=2, close_timeout_s=30)
        assert sender.submit(alert(1))
        assert server.wait_for_requests(1)                        # alert 1 is in flight, held by the server
        accepted = [sender.submit(alert(i)) for i in range(2, 5)]  # 2 and 3 wait in the queue, 4 finds no room
        release.set()
        stats = sender.close()
    assert accepted == [True, True, False]
    assert stats == {"queued": 3, "slack_sent": 3, "dropped": 1}
    dropped = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert dropped == ["alert ETHUSDT combined high trade 4 dropped: the alert queue is full (2); "
                       "the channels are too slow or down"]


def test_when_the_job_stops_retries_end_at_the_close_deadline_and_the_rest_is_counted_as_dropped(caplog):
    fake = FakeTime()
    release = threading.Event()
    with WebhookServer("slack", [("hang", release)], default=status(503)) as server, caplog.at_level(logging.INFO):
        sender = AlertSender([slack(server)], RETRY, queue_size=100, close_timeout_s=10, clock=fake.clock,
                             sleep=fake.sleep)
        for i in range(1, 6):
            sender.submit(alert(i))
        closer = threading.Thread(target=sender.close)
        closer.start()
        assert sender.closing.wait(10)       # the deadline (fake time 10 s) is set...
        release.set()                        # ...before the first alert's request is answered
        closer.join(30)
    stats = sender.stats()
    assert stats["slack_sent"] == 1
    assert stats["slack_sent"] + stats["slack_failed"] + stats["dropped"] == 5 and stats["dropped"] >= 1
    assert all(start + seconds <= 10.0 for start, seconds in fake.sleeps)  # no wait runs past the deadline
    assert any("dropped: the job stopped before it could be sent" in r.getMessage() for r in caplog.records)


def test_tokens_and_webhook_urls_never_reach_the_logs(caplog):
    echo = status(400, {"ok": False, "description": f"Bad Request: no bot /bot{TOKEN}/sendMessage"})
    with WebhookServer("telegram", [echo]) as tg, WebhookServer("slack", default=status(403, SLACK_PATH.encode())) as sl:
        cfg = load({"TELEGRAM_API_URL": tg.url, "TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_CHAT_ID": "42",
                    "SLACK_WEBHOOK_URL": sl.url + SLACK_PATH}).alerts
        # A third channel on a port nobody listens on: a connection error with the secret in its URL.
        closed = WebhookServer("slack")  # never started: its port is closed once it is released
        refused = SlackChannel(closed.url + SLACK_PATH)
        closed.release_port()
        fake = FakeTime()
        with caplog.at_level(logging.DEBUG):
            logging.getLogger("test").info("%s; %r; %r", describe_alerting(cfg), cfg, channels_from_config(cfg))
            # And one whose URL urllib refuses outright (a space): its error message quotes the URL.
            spaced = SlackChannel(closed.url + "/services/T0001/B0002/slack-secret key")
            sender = AlertSender([*channels_from_config(cfg), refused, spaced], RETRY._replace(max_attempts=2), 10, 30,
                                 clock=fake.clock, sleep=fake.sleep)
            sender.submit(alert(1))
            stats = sender.close()
    assert stats == {"queued": 1, "telegram_failed": 1, "slack_failed": 3}
    assert "telegram failed: HTTP 400: Bad Request: no bot /bot***/sendMessage" in caplog.text
    assert "connection error" in caplog.text
    assert "unusable URL" in caplog.text
    for secret in (TOKEN, "AAH-very-secret-token", SLACK_PATH, "slack-secret-key", "slack-secret key"):
        assert secret not in caplog.text
