"""Security checks over the repository and the start-up paths: no secrets in tracked files (except
documented placeholders), no SQL built by formatting values into text, and no secret from the
configuration in any log line."""
from __future__ import annotations

import ast
import dataclasses
import hashlib
import json
import logging
import os
import re
import subprocess

import pytest

import config
from tests.conftest import PROJECT_DIR


def tracked_files() -> list[str]:
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=PROJECT_DIR, capture_output=True, check=True).stdout
    return [name for name in listed.decode().split("\0") if name]


def text_of(name: str) -> str | None:
    try:
        with open(os.path.join(PROJECT_DIR, name), encoding="utf-8") as handle:
            return handle.read()
    except (UnicodeDecodeError, FileNotFoundError):
        return None


# Secrets in code -----------------------------------------------------------------------------------
# Shapes real credentials have. Test values are chosen not to have them (e.g. "123456789:AAH-very-
# secret-token" is too short for a Telegram token), and the placeholders below never do.
SECRET_SHAPES = {
    "private key": r"-----BEGIN (?:RSA |EC |DSA |OPENSSH |ENCRYPTED |PGP )?PRIVATE KEY( BLOCK)?-----",
    "AWS access key": r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b",
    "GitHub token": r"\b(?:gh[pousr]_[A-Za-z0-9]{36}|github_pat_[A-Za-z0-9_]{60,})\b",
    "Slack token": r"\bxox[abposr]-[0-9A-Za-z-]{10,}",
    "Slack webhook": r"hooks\.slack\.com/services/T[A-Z0-9]{6,}/B[A-Z0-9]{6,}/[A-Za-z0-9]{20,}",
    "Telegram bot token": r"\b\d{8,10}:[A-Za-z0-9_-]{35}\b",
    "Google API key": r"\bAIza[0-9A-Za-z_-]{35}\b",
    "Grafana token": r"\bglsa_[A-Za-z0-9]{32}_[0-9a-f]{8}\b",
    "JWT": r"\beyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}",
    "password in a URL": r"\b[a-z][a-z0-9+.-]*://[^/\s:@'\"<>]+:(?![\\*]+@)[^/\s:@'\"<>$]{3,}@[\w.-]+",
}
# Secret-named settings outside Python: each value must be one of these documented placeholders.
SECRET_KEY = re.compile(r"(?i)^\s*-?\s*([\w.]*(?:password|secret|token|api_?key|webhook)[\w.]*)\s*[:=]\s*(.*?)\s*$")
PLACEHOLDER = re.compile(r"^(?:|REPLACE_ME|\"\"|''|\$\{[A-Z_]+(?::?[-?][^}]*)?\}|<[^>]+>|\*\*\*)$")
# Fake credentials the tests use on purpose, in URLs (the shape check above would flag them).
TEST_URL_CREDENTIALS = ("reader:s3cret@", "admin:s3cret@", "user:pw@", "ch:pw-in-url-Secret-4242@")


def secrets_in(name: str, text: str) -> list[str]:
    found = [f"{name}: {kind}" for kind, pattern in SECRET_SHAPES.items() for match in re.finditer(pattern, text)
             if not (name.startswith("tests/") and any(c in match.group() for c in TEST_URL_CREDENTIALS))]
    if not name.endswith(".py") and not name.startswith("tests/") and not name.endswith(".md"):
        for line in text.splitlines():
            match = SECRET_KEY.match(line)
            if match and not line.lstrip().startswith("#"):
                value = match.group(2).strip().strip('"').strip("'")
                if "${" in value or "$$" in value or "{{" in value or value.startswith("secretKeyRef"):
                    continue
                if not PLACEHOLDER.match(value):
                    found.append(f"{name}: {match.group(1)} = {value[:20]!r}")
    return found


def test_the_scanner_finds_each_kind_of_secret():
    planted = {  # built from parts, so that this file itself holds none of them
        "private key": "-----BEGIN " + "RSA PRIVATE KEY-----",
        "AWS access key": "AKIA" + "ABCDEFGHIJKLMNOP",
        "GitHub token": "ghp_" + "a" * 36,
        "Slack token": "xoxb-" + "1234567890-abc",
        "Slack webhook": "https://hooks.slack.com/services/" + "T0123ABCD/B0123ABCD/" + "a" * 24,
        "Telegram bot token": "123456789:" + "A" * 35,
        "Google API key": "AIza" + "b" * 35,
        "Grafana token": "glsa_" + "c" * 32 + "_0123abcd",
        "JWT": "eyJ" + "h" * 12 + ".eyJ" + "p" * 12 + "." + "s" * 12,
        "password in a URL": "https://" + "admin:hunter2@" + "ch.example",
    }
    assert set(planted) == set(SECRET_SHAPES)
    for kind, text in planted.items():
        assert secrets_in("flink_jobs/x.py", f"value = {text!r}") == [f"flink_jobs/x.py: {kind}"]
    assert secrets_in("deploy/k8s/x.yaml", "  KAFKA_SASL_PASSWORD: hunter2") == [
        "deploy/k8s/x.yaml: KAFKA_SASL_PASSWORD = 'hunter2'"]
    assert secrets_in("deploy/x.env", "GRAFANA_TOKEN=abc123") == ["deploy/x.env: GRAFANA_TOKEN = 'abc123'"]
    for placeholder in ("REPLACE_ME", "", "${CLICKHOUSE_PASSWORD:?set it}", "<api secret>"):
        assert secrets_in("deploy/x.yaml", f"password: {placeholder}") == []


def test_no_tracked_file_holds_a_secret_outside_documented_placeholders():
    found, scanned = [], 0
    for name in tracked_files():
        text = text_of(name)
        if text is not None:
            scanned += 1
            found += secrets_in(name, text)
    assert scanned > 150 and not found, found


def test_secret_settings_default_to_empty_and_stay_out_of_reprs():
    secret_fields = [f for cls in config.SECTIONS.values() for f in dataclasses.fields(cls) if f.metadata["secret"]]
    assert len(secret_fields) >= 8
    for f in secret_fields:
        assert f.default == "" and f.repr is False, f.metadata["env"]


def test_images_get_no_secrets_or_env_files():
    dockerfile = text_of("deploy/docker/Dockerfile")
    copied = re.findall(r"^(?:COPY|ADD)\s+(?:--\S+\s+)*(.+)$", dockerfile, re.M)
    assert copied and not any(re.search(r"\.env\b|\.pem|\.key\b|secret|\.run", c) for c in copied), copied
    assert not re.search(r"^(?:ENV|ARG)\s+\S*(?:PASSWORD|TOKEN|SECRET|WEBHOOK)", dockerfile, re.M | re.I)
    ignored = subprocess.run(["git", "check-ignore", "deploy/docker/.env"], cwd=PROJECT_DIR, capture_output=True)
    assert ignored.returncode == 0, "deploy/docker/.env must be git-ignored"


# SQL built from values ----------------------------------------------------------------------------
SQL_WORDS = re.compile(r"\b(SELECT|INSERT|ALTER|CREATE|DROP|GRANT|REVOKE|DELETE|UPDATE|OPTIMIZE|TRUNCATE|RENAME|"
                       r"USE|SYSTEM|SET|SHOW|DESCRIBE|EXCHANGE|ATTACH|DETACH|KILL)\b")
# Every place that formats text into SQL, and why what it formats in is not a value from outside.
# A new one fails the test until it is listed here with its reason (or, better, uses parameters).
# Not found by this scan, and checked below instead: migrate.render_users fills the {{placeholders}}
# of sql/users/ with a checked identifier and SHA-256 hex digests (DDL takes no parameters).
ALLOWED_INTERPOLATIONS = {
    ("flink_jobs/store.py", "self.database"): "identifier, checked_identifier() at construction, backquoted",
    ("flink_jobs/store.py", "table"): "a key of TABLE_COLUMNS (insert() looks it up there first), backquoted",
    ("flink_jobs/store.py", "names"): "column names of the Arrow table built from TABLE_COLUMNS",
    ("flink_jobs/migrate.py", "store.database"): "identifier, checked_identifier() when the Store was built",
    ("flink_jobs/migrate.py", "table"): "a key of desired_ttls(): 'trades' or 'bars'",
    ("flink_jobs/migrate.py", "wanted"): "a TTL expression desired_ttls() builds from int() of validated days",
    ("flink_jobs/summary.py", "cfg.store.database"): "printed for a person to copy (how_to_query), not run",
    ("flink_jobs/summary.py", "where"): "printed for a person to copy: the chdb.connect() call, not SQL",
}
SQL_TREES = ("flink_jobs", "deploy", "producer", "models")


def python_files(trees=SQL_TREES) -> list[str]:
    return sorted(n for n in tracked_files() if n.endswith(".py") and n.split("/")[0] in trees)


def _literal_text(node) -> str:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value for v in node.values if isinstance(v, ast.Constant))
    return ""


def _looks_like_sql(text: str) -> bool:
    return bool(SQL_WORDS.search(text)) and bool(re.search(r"\b(FROM|INTO|TABLE|DATABASE|USER|ROLE|TTL|TO|BY)\b|^USE\b",
                                                           text.strip()))


def sql_interpolations(name: str, source: str) -> list[tuple[str, str]]:
    """(file, expression) for every value formatted into SQL-looking text: f-strings, %, .format()
    and + concatenation."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.JoinedStr) and _looks_like_sql(_literal_text(node)):
            found += [(name, ast.unparse(v.value)) for v in node.values if isinstance(v, ast.FormattedValue)]
        elif isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Mod, ast.Add)):
            if _looks_like_sql(_literal_text(node.left)) or _looks_like_sql(_literal_text(node.right)):
                found.append((name, ast.unparse(node)))
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format"
              and _looks_like_sql(_literal_text(node.func.value))):
            found.append((name, ast.unparse(node)))
    return found


def test_the_sql_check_catches_values_formatted_into_sql():
    source = '''
def bad(store, symbol, day):
    store.query(f"SELECT * FROM trades WHERE symbol = '{symbol}'")
    store.query("SELECT * FROM trades WHERE day = '%s'" % day)
    store.query("DELETE FROM trades WHERE symbol = '{}'".format(symbol))
    store.query("SELECT count() FROM trades WHERE symbol = '" + symbol + "'")
    store.query("SELECT count() FROM trades WHERE symbol = {symbol:String}", {"symbol": symbol})
'''
    assert [expr for _, expr in sql_interpolations("x.py", source)] == [
        "symbol", """"SELECT * FROM trades WHERE day = '%s'" % day""",
        """"DELETE FROM trades WHERE symbol = '{}'".format(symbol)""",
        """"SELECT count() FROM trades WHERE symbol = '" + symbol"""]


def test_sql_takes_values_as_parameters_and_formats_in_only_checked_identifiers_and_ints():
    found = set()
    for name in python_files():
        found |= set(sql_interpolations(name, text_of(name)))
    unexplained = sorted(found - set(ALLOWED_INTERPOLATIONS))
    assert not unexplained, f"values formatted into SQL (use {{name:Type}} parameters): {unexplained}"
    assert found >= set(ALLOWED_INTERPOLATIONS), f"stale entries: {set(ALLOWED_INTERPOLATIONS) - found}"


def test_the_identifiers_formatted_into_sql_are_refused_when_they_are_not_plain():
    from flink_jobs.migrate import render_users
    from flink_jobs.store import StoreError, checked_identifier

    for bad in ("crypto`; DROP DATABASE x; --", "a b", "", "x" * 65, "1abc", "crypto\n"):
        with pytest.raises(StoreError):
            checked_identifier(bad)
        with pytest.raises(StoreError):
            render_users(bad, "job-pw", "grafana-pw")
    with pytest.raises(config.ConfigError, match="TRADES_TTL_DAYS"):
        config.load({"TRADES_TTL_DAYS": "1; DROP TABLE trades"})


def test_sql_queries_in_files_take_values_only_as_typed_parameters():
    folder = os.path.join(PROJECT_DIR, "sql", "queries")
    for name in sorted(os.listdir(folder)):
        text = text_of(os.path.join("sql", "queries", name))
        assert not re.search(r"%\(|%s|\{\}|\{[a-z_]+\}(?!:)|\$\{", text), name
        for placeholder in re.findall(r"\{(\w+):(\w+(?:\([^)]*\))?)\}", text):
            assert placeholder[1] in ("String", "UInt32", "UInt64", "Int64", "Float64", "DateTime64(3)", "DateTime",
                                      "Date", "Array(String)"), (name, placeholder)


def test_dashboard_sql_escapes_every_variable_it_puts_into_a_query():
    """Grafana dashboards cannot use query parameters: variables go in with Grafana's singlequote
    format (escaped), or as $__conditionalAll's test of the variable, never raw."""
    folder = os.path.join(PROJECT_DIR, "deploy", "grafana", "dashboards")
    raw_uses = []
    for name in sorted(os.listdir(folder)):
        with open(os.path.join(folder, name), encoding="utf-8") as handle:
            dashboard = json.load(handle)
        queries = re.findall(r'"rawSql": "((?:[^"\\]|\\.)*)"', json.dumps(dashboard))
        assert queries, name
        for sql in queries:
            for variable in ("symbol", "method", "severity", "model_version"):
                uses = re.findall(rf"\$\{{{variable}(:\w+)?\}}|\${variable}\b|\[\[{variable}\]\]", sql)
                conditional_tests = len(re.findall(rf"\${variable}\)", sql))
                raw = [u for u in uses if u != ":singlequote"]
                if len(raw) > conditional_tests:
                    raw_uses.append((name, variable, sql[:120]))
    assert not raw_uses, raw_uses


# Secrets in logs ----------------------------------------------------------------------------------
KNOWN_SECRETS = {
    "KAFKA_SASL_PASSWORD": "kafka-Secret-4242", "CLICKHOUSE_PASSWORD": "clickhouse-Secret-4242",
    "CLICKHOUSE_JOB_PASSWORD": "job-Secret-4242", "CLICKHOUSE_GRAFANA_PASSWORD": "grafana-Secret-4242",
    "TELEGRAM_BOT_TOKEN": "4242:telegram-Secret-4242", "TELEGRAM_CHAT_ID": "42",
    "SLACK_WEBHOOK_URL": "https://hooks.example/services/slack-Secret-4242",
    "GRAFANA_TOKEN": "grafana-token-Secret-4242", "GRAFANA_PASSWORD": "grafana-user-Secret-4242",
    "GRAFANA_USER": "admin", "GRAFANA_CLICKHOUSE_PASSWORD": "grafana-ch-Secret-4242",
}


def secret_values() -> list[str]:
    values = [v for k, v in KNOWN_SECRETS.items() if k not in ("TELEGRAM_CHAT_ID", "GRAFANA_USER")]
    return values + [hashlib.sha256(v.encode()).hexdigest() for v in values] + ["Secret-4242"]


def test_every_secret_setting_is_in_the_known_secrets_of_this_test():
    secret_envs = {f.metadata["env"] for cls in config.SECTIONS.values() for f in dataclasses.fields(cls)
                   if f.metadata["secret"]}
    assert secret_envs <= set(KNOWN_SECRETS), secret_envs - set(KNOWN_SECRETS)


def test_no_secret_reaches_the_logs_on_the_start_up_paths(caplog, tmp_path, monkeypatch):
    """Loads the configuration with every secret set, and runs what the job, the producer, the
    store and the alerts log at start-up, everything at DEBUG, including the libraries' loggers."""
    from kafka import KafkaProducer

    from flink_jobs.alerts.channels import channels_from_config
    from flink_jobs.alerts.sink import describe_alerting
    from flink_jobs.anomaly_job import configure_logging
    from flink_jobs.store import StoreError, client_settings, open_store
    from producer.kafka_settings import job_consumer_properties, producer_settings, redacted

    env = {**KNOWN_SECRETS, "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "KAFKA_SASL_USERNAME": "job",
           "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9", "CLICKHOUSE_URL": "http://ch:pw-in-url-Secret-4242@127.0.0.1:9",
           "GRAFANA_USER": "admin"}
    caplog.set_level(logging.DEBUG)
    monkeypatch.setattr(logging.getLogger("flink_jobs"), "propagate", True)
    configure_logging("DEBUG")
    logging.getLogger("flink_jobs").propagate = True   # configure_logging turns it off; caplog needs it
    log = logging.getLogger("flink_jobs.test")

    cfg = config.load(env)
    log.info("configuration: %r", cfg)                                  # what a careless log line would print
    log.info("kafka producer: %s", redacted(producer_settings(cfg.kafka)))
    log.info("kafka source: %s", redacted(job_consumer_properties(cfg.kafka)))
    log.info("%s", describe_alerting(cfg.alerts))
    channels = channels_from_config(cfg.alerts)
    log.info("alert channels: %r", channels)
    producer = KafkaProducer(**producer_settings(cfg.kafka), api_version=(3, 7))
    producer.close(timeout=1)
    with pytest.raises(StoreError) as refused:
        open_store(cfg.store)
    log.error("store: %s", refused.value)
    assert client_settings(cfg.store)["password"] == KNOWN_SECRETS["CLICKHOUSE_PASSWORD"]   # it does travel there
    for bad in ({"SLACK_WEBHOOK_URL": "ftp://x/slack-Secret-4242"}, {"TELEGRAM_BOT_TOKEN": "4242/Secret-4242"}):
        with pytest.raises(config.ConfigError) as error:
            config.load({**env, **bad})
        log.error("configuration error: %s", error.value)

    logged = caplog.text + "\n".join(str(r.args) for r in caplog.records)
    assert len(caplog.records) >= 8
    leaked = [s for s in secret_values() + ["pw-in-url"] if s in logged]
    assert not leaked, leaked
