"""TLS to a ClickHouse server: the settings reach clickhouse-connect, and a real TLS handshake on
loopback shows what the client does with them (no ClickHouse server runs here; see STACK.md)."""
import base64
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from config import ConfigError, load
from flink_jobs.store import ServerStore, StoreError, client_settings
from tests.conftest import self_signed_certificate


def store_config(**env):
    return load({"CLICKHOUSE_USER": "crypto_job", "CLICKHOUSE_PASSWORD": "s3cret", **env}).store


def test_an_https_url_means_tls_with_verification_and_the_ca_bundle(tmp_path):
    cert, _ = self_signed_certificate(tmp_path)
    settings = client_settings(store_config(CLICKHOUSE_URL="https://ch.example:9443", CLICKHOUSE_CA_CERT=cert))
    assert settings == {"dsn": "https://ch.example:9443", "username": "crypto_job", "password": "s3cret",
                        "interface": "https", "secure": True, "verify": True, "ca_cert": cert}
    settings = client_settings(store_config(CLICKHOUSE_URL="https://ch.example", CLICKHOUSE_VERIFY="false"))
    assert (settings["interface"], settings["secure"], settings["verify"]) == ("https", True, False)
    assert "ca_cert" not in settings


def test_an_http_url_is_plain_and_tls_settings_without_https_are_refused(tmp_path):
    assert client_settings(store_config(CLICKHOUSE_URL="http://127.0.0.1:8123"))["interface"] == "http"
    cert, _ = self_signed_certificate(tmp_path)
    with pytest.raises(ConfigError, match="CLICKHOUSE_CA_CERT: set, but CLICKHOUSE_URL is not https://"):
        store_config(CLICKHOUSE_URL="http://ch.example:8123", CLICKHOUSE_CA_CERT=cert)
    with pytest.raises(ConfigError, match="CLICKHOUSE_CA_CERT='/no/such.pem': no such file"):
        store_config(CLICKHOUSE_URL="https://ch.example", CLICKHOUSE_CA_CERT="/no/such.pem")
    with pytest.raises(ConfigError, match="CLICKHOUSE_URL: must start with http:// or https://"):
        store_config(CLICKHOUSE_URL="ch.example:8443")


class TlsServer:
    """An HTTPS server on loopback with a self-signed certificate; records the requests that got
    through the handshake (with their headers) and the handshakes that failed. Answers 503."""

    def __init__(self, cert: str, key: str):
        self.requests: list[dict] = []
        self.failed_handshakes: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                outer.requests.append({k.lower(): v for k, v in self.headers.items()})
                self.send_error(503)

            do_GET = do_POST

            def log_message(self, *args):
                pass

        class Server(ThreadingHTTPServer):
            def handle_error(self, request, client_address):
                import sys
                outer.failed_handshakes.append(repr(sys.exc_info()[1]))

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self.server = Server(("127.0.0.1", 0), Handler)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True, do_handshake_on_connect=False)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def tls_server(tmp_path):
    cert, key = self_signed_certificate(tmp_path)
    server = TlsServer(cert, key)
    yield server, cert
    server.close()


def test_the_client_verifies_the_server_certificate_and_sends_the_password_only_over_tls(tls_server):
    server, cert = tls_server
    url = f"https://127.0.0.1:{server.port}"     # not 8443: clickhouse-connect alone would pick plain HTTP

    # Unknown CA: the handshake is refused, nothing (no password) is sent.
    with pytest.raises(StoreError, match="cannot reach ClickHouse"):
        ServerStore(store_config(CLICKHOUSE_URL=url))
    assert server.requests == [] and server.failed_handshakes

    # With the CA bundle the handshake verifies and the request, credentials included, goes over TLS.
    with pytest.raises(StoreError, match="cannot reach ClickHouse"):   # the fake answers 503
        ServerStore(store_config(CLICKHOUSE_URL=url, CLICKHOUSE_CA_CERT=cert))
    assert server.requests
    assert base64.b64decode(server.requests[0]["authorization"].split()[1]) == b"crypto_job:s3cret"


@pytest.mark.filterwarnings("ignore:Unverified HTTPS request")
def test_verification_can_be_turned_off_for_a_private_test_server(tls_server):
    server, _ = tls_server
    with pytest.raises(StoreError):
        ServerStore(store_config(CLICKHOUSE_URL=f"https://localhost:{server.port}", CLICKHOUSE_VERIFY="false"))
    assert server.requests
