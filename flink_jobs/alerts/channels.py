"""The two channels' HTTP clients and delivery with retries, in plain Python (stdlib only).

- Telegram Bot API: POST {TELEGRAM_API_URL}/bot<token>/sendMessage, JSON {chat_id, text,
  parse_mode: HTML, disable_web_page_preview}. Answers {"ok": true, ...}; a 429 says how long to
  wait in parameters.retry_after (and in a Retry-After header).
- Slack incoming webhook: POST SLACK_WEBHOOK_URL, JSON {text, blocks}. Answers 200 "ok"; 429 with
  Retry-After; 400/403/404/410 with a word saying why (invalid_payload, no_service, ...).

deliver() retries 5xx, 429 and connection errors with exponential backoff (a server's own
Retry-After wins), never other 4xx (the request itself is wrong: retrying cannot help), and gives
up when the next wait would pass the alert's time budget. The token and the webhook URL are
secrets: they are in no log line, no error detail, no repr (redact()).
"""
from __future__ import annotations

import email.utils
import http.client
import json
import time
import urllib.error
import urllib.request
from typing import Callable, NamedTuple

from flink_jobs.alerts.message import (Alert, Suppressed, slack_payload, slack_summary, telegram_summary,
                                       telegram_text)

OK, RETRY, PERMANENT = "ok", "retry", "permanent"
# A body is read for its error description only; a huge one is cut.
MAX_BODY_BYTES = 64 * 1024


class Response(NamedTuple):
    status: int
    headers: dict     # lower-cased names
    body: bytes


class Outcome(NamedTuple):
    kind: str                  # OK, RETRY or PERMANENT
    detail: str                # for logs: status and the server's description, secrets removed
    retry_after: float | None  # seconds the server asked us to wait


class RetryPolicy(NamedTuple):
    max_attempts: int
    initial_s: float
    max_s: float
    budget_s: float        # longest one message may spend on one channel, waits and requests included
    http_timeout_s: float

    @classmethod
    def from_config(cls, alerts) -> "RetryPolicy":
        return cls(alerts.max_attempts, alerts.retry_initial_s, alerts.retry_max_s, alerts.delivery_timeout_s,
                   alerts.http_timeout_s)

    def backoff(self, attempt: int) -> float:
        """Wait after failed attempt number `attempt` (1-based): initial, 2x, 4x, ... capped.
        No jitter: one sender thread per job talks to each endpoint, there is no herd to spread."""
        return min(self.max_s, self.initial_s * 2 ** (attempt - 1))


class Delivery(NamedTuple):
    delivered: bool
    attempts: int
    detail: str
    waits: tuple       # seconds waited between attempts, in order


def redact(text: str, secrets) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def parse_retry_after(value: str | None, now: Callable[[], float] = time.time) -> float | None:
    """Retry-After in seconds or as an HTTP date -> seconds to wait (never negative)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now())


def post_json(url: str, payload: dict, timeout: float) -> Response:
    """One POST; an HTTP error status is a Response, a connection failure raises OSError or
    http.client.HTTPException."""
    request = urllib.request.Request(url, data=json.dumps(payload).encode("utf-8"), method="POST",
                                     headers={"Content-Type": "application/json; charset=utf-8"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            return Response(reply.status, {k.lower(): v for k, v in reply.headers.items()},
                            reply.read(MAX_BODY_BYTES))
    except urllib.error.HTTPError as error:
        with error:
            return Response(error.code, {k.lower(): v for k, v in (error.headers or {}).items()},
                            error.read(MAX_BODY_BYTES))


def _status_kind(status: int) -> str:
    if 200 <= status < 300:
        return OK
    return RETRY if status == 429 or status >= 500 else PERMANENT


class TelegramChannel:
    name = "telegram"

    def __init__(self, api_url: str, token: str, chat_id: str, dashboard_url: str = ""):
        self._url = f"{api_url.rstrip('/')}/bot{token}/sendMessage"
        self.safe_url = f"{api_url.rstrip('/')}/bot***/sendMessage"
        self.secrets = (token,)
        self.chat_id, self.dashboard_url = chat_id, dashboard_url

    @property
    def url(self) -> str:
        return self._url

    def __repr__(self) -> str:
        return f"TelegramChannel({self.safe_url}, chat {self.chat_id})"

    def render(self, alert: Alert, suppressed: Suppressed | None = None) -> dict:
        return self._message(telegram_text(alert, self.dashboard_url, suppressed))

    def render_summary(self, suppressed: Suppressed) -> dict:
        return self._message(telegram_summary(suppressed))

    def _message(self, text: str) -> dict:
        return {"chat_id": self.chat_id, "text": text, "parse_mode": "HTML", "disable_web_page_preview": True}

    def classify(self, response: Response) -> Outcome:
        try:
            answer = json.loads(response.body.decode("utf-8", errors="replace"))
        except ValueError:
            answer = {}
        answer = answer if isinstance(answer, dict) else {}
        kind = _status_kind(response.status)
        if kind == OK and answer.get("ok") is not True:
            kind = PERMANENT  # a 200 that is not Telegram's answer: retrying will not make it one
        parameters = answer.get("parameters") if isinstance(answer.get("parameters"), dict) else {}
        retry_after = parameters.get("retry_after")
        if not isinstance(retry_after, (int, float)) or isinstance(retry_after, bool):
            retry_after = parse_retry_after(response.headers.get("retry-after"))
        description = str(answer.get("description") or response.body[:200].decode("utf-8", errors="replace"))
        detail = redact(f"HTTP {response.status}: {description}", self.secrets)
        return Outcome(kind, detail, float(retry_after) if retry_after is not None else None)


class SlackChannel:
    name = "slack"

    def __init__(self, webhook_url: str, dashboard_url: str = ""):
        self._url = webhook_url
        scheme, _, rest = webhook_url.partition("://")
        self.safe_url = f"{scheme}://{rest.split('/', 1)[0]}/***"
        # The whole URL is the secret; its path alone (services/T/B/key) is too.
        self.secrets = (webhook_url, "/" + rest.split("/", 1)[1] if "/" in rest else "")
        self.dashboard_url = dashboard_url

    @property
    def url(self) -> str:
        return self._url

    def __repr__(self) -> str:
        return f"SlackChannel({self.safe_url})"

    def render(self, alert: Alert, suppressed: Suppressed | None = None) -> dict:
        return slack_payload(alert, self.dashboard_url, suppressed)

    def render_summary(self, suppressed: Suppressed) -> dict:
        return slack_summary(suppressed)

    def classify(self, response: Response) -> Outcome:
        text = response.body[:200].decode("utf-8", errors="replace").strip()
        detail = redact(f"HTTP {response.status}: {text or '(no body)'}", self.secrets)
        return Outcome(_status_kind(response.status), detail,
                       parse_retry_after(response.headers.get("retry-after")))


def channels_from_config(alerts) -> list:
    """The channels that are configured: Telegram with a token and a chat, Slack with a webhook."""
    channels = []
    if alerts.telegram_enabled:
        channels.append(TelegramChannel(alerts.telegram_api_url, alerts.telegram_bot_token, alerts.telegram_chat_id,
                                        alerts.dashboard_url))
    if alerts.slack_enabled:
        channels.append(SlackChannel(alerts.slack_webhook_url, alerts.dashboard_url))
    return channels


def _attempt(channel, payload: dict, timeout: float) -> Outcome:
    try:
        return channel.classify(post_json(channel.url, payload, timeout))
    except (ValueError, http.client.InvalidURL) as error:
        # A URL urllib cannot use (a space, a control character): retrying cannot fix it, and the
        # error's text quotes the URL, secret and all.
        return Outcome(PERMANENT, redact(f"unusable URL {channel.safe_url}: {type(error).__name__}: {error}",
                                         channel.secrets), None)
    except (OSError, http.client.HTTPException) as error:
        # OSError covers refused and reset connections, timeouts and urllib's URLError. Their text
        # names no URL, but it goes through redact() like everything else.
        reason = getattr(error, "reason", None) or error
        return Outcome(RETRY, redact(f"connection error: {type(error).__name__}: {reason}", channel.secrets), None)


def deliver(channel, payload: dict, retry: RetryPolicy, *, clock: Callable[[], float] = time.monotonic,
            sleep: Callable[[float], None] = time.sleep,
            give_up_at: Callable[[], float] = lambda: float("inf")) -> Delivery:
    """Sends `payload` to `channel`, retrying what can succeed later, within retry.budget_s and
    before give_up_at() (the sender's shutdown deadline, which may move closer while we wait)."""
    started = clock()
    budget_end = started + retry.budget_s
    waits = []
    outcome = Outcome(RETRY, "not attempted", None)
    for attempt in range(1, retry.max_attempts + 1):
        remaining = min(budget_end, give_up_at()) - clock()
        if remaining <= 0:
            return Delivery(False, attempt - 1, f"{outcome.detail}; out of time", tuple(waits))
        outcome = _attempt(channel, payload, min(retry.http_timeout_s, remaining))
        if outcome.kind == OK:
            return Delivery(True, attempt, outcome.detail, tuple(waits))
        if outcome.kind == PERMANENT:
            return Delivery(False, attempt, f"{outcome.detail} (not retried)", tuple(waits))
        if attempt == retry.max_attempts:
            break
        wait = outcome.retry_after if outcome.retry_after is not None else retry.backoff(attempt)
        target = clock() + wait
        if target > min(budget_end, give_up_at()):
            return Delivery(False, attempt, f"{outcome.detail}; the next try in {wait:g} s would pass the "
                                            f"delivery deadline", tuple(waits))
        waits.append(wait)
        while (left := target - clock()) > 0:
            sleep(left)
            if target > give_up_at():  # the job started stopping while we waited
                return Delivery(False, attempt, f"{outcome.detail}; stopped waiting: the job is stopping",
                                tuple(waits))
    return Delivery(False, retry.max_attempts, f"{outcome.detail} after {retry.max_attempts} attempts",
                    tuple(waits))
