"""The push command against a loopback HTTP server standing in for Grafana's HTTP API (no Grafana
runs here): the endpoints and payloads it sends, its authentication, and its errors."""
import base64
import json
import logging
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from deploy.grafana import dashboards as grafana
from deploy.grafana.push import DATASOURCE_UID, main

TOKEN = "glsa_s3cretT0ken"


class FakeGrafana:
    """Records every request; answers like Grafana 11, or with `fail_with` for every request."""

    def __init__(self, fail_with: int | None = None, datasource_exists: bool = False):
        self.requests, self.fail_with, self.datasource_exists = [], fail_with, datasource_exists
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                fake.requests.append((self.command, self.path, dict(self.headers), body))
                status, answer = fake.route(self.command, self.path, body)
                payload = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = _answer

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)  # ephemeral port
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def route(self, method, path, body):
        if self.fail_with == 401:
            return 401, {"message": "invalid API key"}
        if self.fail_with:
            return self.fail_with, {"message": "database is locked"}
        if (method, path) == ("GET", "/api/folders"):
            return 200, [{"uid": "other", "title": "Other"}]
        if (method, path) == ("POST", "/api/folders"):
            return 200, {"uid": body["uid"], "title": body["title"]}
        if (method, path) == ("POST", "/api/dashboards/db"):
            uid = body["dashboard"]["uid"]
            return 200, {"status": "success", "uid": uid, "url": f"/d/{uid}/x", "version": 1}
        if path == f"/api/datasources/uid/{DATASOURCE_UID}":
            if method == "GET":
                return (200, {"uid": DATASOURCE_UID}) if self.datasource_exists else (404, {"message": "not found"})
            return 200, {"message": "Datasource updated"}
        if (method, path) == ("POST", "/api/datasources"):
            return 200, {"message": "Datasource added", "datasource": body}
        return 404, {"message": "not found"}

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def env(monkeypatch):
    def configure(url, **extra):
        monkeypatch.setenv("GRAFANA_URL", url)
        for name, value in extra.items():
            monkeypatch.setenv(name, value)
    for name in ("GRAFANA_TOKEN", "GRAFANA_USER", "GRAFANA_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    return configure


def test_push_puts_every_dashboard_into_the_folder_with_the_token_and_never_logs_it(env, capsys, caplog):
    caplog.set_level(logging.DEBUG)
    with FakeGrafana() as fake:
        env(fake.url, GRAFANA_TOKEN=TOKEN, GRAFANA_FOLDER="Crypto anomalies")
        assert main([]) == 0
    calls = [(m, p) for m, p, _, _ in fake.requests]
    assert calls[:2] == [("GET", "/api/folders"), ("POST", "/api/folders")]
    folder = fake.requests[1][3]
    assert folder == {"title": "Crypto anomalies", "uid": "crypto-anomalies"}
    pushed = [body for m, p, _, body in fake.requests if (m, p) == ("POST", "/api/dashboards/db")]
    expected = {grafana.load(path)["uid"] for path in grafana.dashboard_files()}
    assert {b["dashboard"]["uid"] for b in pushed} == expected and len(pushed) == len(expected)
    for body in pushed:
        assert body["folderUid"] == "crypto-anomalies" and body["overwrite"] is True
        assert body["dashboard"]["id"] is None and body["dashboard"]["panels"]
    assert all(headers["Authorization"] == f"Bearer {TOKEN}" for _, _, headers, _ in fake.requests)
    out = capsys.readouterr()
    assert out.out.count("dashboard ") == len(expected)
    assert TOKEN not in out.out + out.err + caplog.text


def test_push_with_datasource_creates_it_from_the_configuration_then_updates_it(env):
    settings = dict(GRAFANA_USER="admin", GRAFANA_PASSWORD="adminpw", GRAFANA_CLICKHOUSE_HOST="ch.internal",
                    GRAFANA_CLICKHOUSE_PORT="9440", GRAFANA_CLICKHOUSE_SECURE="true",
                    GRAFANA_CLICKHOUSE_USER="grafana_ro", GRAFANA_CLICKHOUSE_PASSWORD="chpw",
                    CLICKHOUSE_DATABASE="crypto")
    with FakeGrafana() as fake:
        env(fake.url, **settings)
        assert main(["--datasource", "--folder", "Markets"]) == 0
    created = next(body for m, p, _, body in fake.requests if (m, p) == ("POST", "/api/datasources"))
    assert created["type"] == "grafana-clickhouse-datasource" and created["uid"] == DATASOURCE_UID
    assert created["jsonData"] == {"host": "ch.internal", "port": 9440, "protocol": "native", "secure": True,
                                   "username": "grafana_ro", "defaultDatabase": "crypto"}
    assert created["secureJsonData"] == {"password": "chpw"}
    basic = "Basic " + base64.b64encode(b"admin:adminpw").decode()
    assert all(headers["Authorization"] == basic for _, _, headers, _ in fake.requests)
    assert ("POST", "/api/folders") in [(m, p) for m, p, _, _ in fake.requests]

    with FakeGrafana(datasource_exists=True) as fake:
        env(fake.url, **settings)
        assert main(["--datasource"]) == 0
    assert ("PUT", f"/api/datasources/uid/{DATASOURCE_UID}") in [(m, p) for m, p, _, _ in fake.requests]


@pytest.mark.parametrize("status, message", [
    (401, r"answered 401 Unauthorized: GRAFANA_TOKEN .* is wrong"),
    (500, r"failed with 500: database is locked"),
    (503, r"failed with 503"),
])
def test_a_refusing_or_failing_grafana_is_a_clear_error_without_the_token(env, capsys, status, message):
    with FakeGrafana(fail_with=status) as fake:
        env(fake.url, GRAFANA_TOKEN=TOKEN)
        assert main([]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: Grafana at {fake.url}")
    assert re.search(message, err), err
    assert TOKEN not in err


def test_no_credentials_and_no_grafana_are_clear_errors(env, capsys):
    env("http://127.0.0.1:1")
    assert main([]) == 2
    assert "set GRAFANA_TOKEN" in capsys.readouterr().err
    env("http://127.0.0.1:1", GRAFANA_TOKEN=TOKEN)  # port 1: nothing listens
    assert main([]) == 2
    assert "cannot reach Grafana at http://127.0.0.1:1" in capsys.readouterr().err
