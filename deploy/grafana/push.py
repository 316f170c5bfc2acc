"""Pushes the dashboards of deploy/grafana/dashboards/ (and, with --datasource, the ClickHouse data
source) to a running Grafana over its HTTP API, with grafana-client.

    python -m deploy.grafana.push [--datasource] [--folder NAME] [--no-overwrite]

For a Grafana you do not provision from files (Grafana Cloud, a shared server). Authenticates with
GRAFANA_TOKEN (a service-account token, Editor or Admin), else GRAFANA_USER and GRAFANA_PASSWORD;
neither is ever logged. Exit code 2 with a plain message when Grafana refuses or fails.
"""
from __future__ import annotations

import argparse
import logging
import re
import sys

import niquests
from grafana_client import GrafanaApi
from grafana_client.client import GrafanaClientError, GrafanaException, GrafanaServerError, GrafanaUnauthorizedError

import config as app_config
from config import ConfigError, GrafanaConfig
from deploy.grafana import dashboards as dashboard_files
from flink_jobs.store import redacted

log = logging.getLogger("deploy.grafana.push")

DATASOURCE_UID = "crypto-clickhouse"  # the uid the provisioning file gives and the dashboards default to
DATASOURCE_NAME = "ClickHouse (crypto)"


class PushError(RuntimeError):
    """Grafana refused or failed; the message says what to check, without secrets."""


def folder_uid(title: str) -> str:
    """A stable uid for the folder title, so pushing again finds the same folder."""
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:40] or "crypto"


def connect(cfg: GrafanaConfig) -> GrafanaApi:
    credential = cfg.token or ((cfg.user, cfg.password) if cfg.user else None)
    if credential is None:
        raise PushError("no credentials: set GRAFANA_TOKEN (a service-account token), or GRAFANA_USER and "
                        "GRAFANA_PASSWORD")
    return GrafanaApi.from_url(cfg.url, credential=credential, timeout=cfg.timeout_s)


def datasource_payload(grafana: GrafanaConfig, database: str) -> dict:
    """What the provisioning file describes, with this configuration's values."""
    return {
        "uid": DATASOURCE_UID, "name": DATASOURCE_NAME, "type": dashboard_files.PLUGIN, "access": "proxy",
        "jsonData": {"host": grafana.clickhouse_host, "port": grafana.clickhouse_port,
                     "protocol": grafana.clickhouse_protocol, "secure": grafana.clickhouse_secure,
                     "username": grafana.clickhouse_user, "defaultDatabase": database},
        "secureJsonData": {"password": grafana.clickhouse_password},
    }


def push_datasource(api: GrafanaApi, payload: dict) -> str:
    try:
        api.datasource.get_datasource_by_uid(payload["uid"])
    except GrafanaClientError as error:
        if error.status_code != 404:
            raise
        api.datasource.create_datasource(payload)
        return "created"
    api.datasource.update_datasource_by_uid(payload["uid"], payload)
    return "updated"


def ensure_folder(api: GrafanaApi, title: str) -> str:
    """The uid of the folder with this title, created when missing."""
    for folder in api.folder.get_all_folders():
        if folder.get("title") == title:
            return folder["uid"]
    return api.folder.create_folder(title, uid=folder_uid(title))["uid"]


def push_dashboard(api: GrafanaApi, dashboard: dict, folder: str, overwrite: bool) -> dict:
    # id None: Grafana matches on uid, so the same file updates the same dashboard on any server.
    return api.dashboard.update_dashboard({"dashboard": {**dashboard, "id": None}, "folderUid": folder,
                                           "overwrite": overwrite, "message": "python -m deploy.grafana.push"})


def push(cfg, with_datasource: bool, folder_title: str, overwrite: bool) -> list[str]:
    """Pushes everything; returns one line per thing pushed."""
    api = connect(cfg.grafana)
    done = []
    if with_datasource:
        state = push_datasource(api, datasource_payload(cfg.grafana, cfg.store.database))
        done.append(f"data source {DATASOURCE_UID} {state}")
    folder = ensure_folder(api, folder_title)
    for path in dashboard_files.dashboard_files():
        dashboard = dashboard_files.load(path)
        answer = push_dashboard(api, dashboard, folder, overwrite)
        done.append(f"dashboard {dashboard['title']!r} -> {redacted(cfg.grafana.url)}"
                    f"{answer.get('url', '/d/' + dashboard['uid'])}")
        log.info("pushed %s", done[-1])
    return done


def explain(error: Exception, url: str) -> str:
    """A message for a failed push; Grafana's own answer is shown, credentials never are."""
    url = redacted(url)
    detail = getattr(error, "response", None)
    detail = detail.get("message", error) if isinstance(detail, dict) else getattr(error, "message", error)
    if isinstance(error, GrafanaUnauthorizedError):
        return (f"Grafana at {url} answered 401 Unauthorized: GRAFANA_TOKEN (or GRAFANA_USER/GRAFANA_PASSWORD) "
                f"is wrong, expired or not accepted")
    if isinstance(error, GrafanaServerError):
        return f"Grafana at {url} failed with {error.status_code}: {detail}; try again or see its log"
    if isinstance(error, GrafanaClientError):
        hint = " (dashboard changed on the server: push without --no-overwrite)" if error.status_code == 412 else ""
        return f"Grafana at {url} refused the request with {error.status_code}: {detail}{hint}"
    if isinstance(error, niquests.exceptions.ConnectionError):
        return f"cannot reach Grafana at {url}: is it running, and is GRAFANA_URL right?"
    return f"Grafana at {url}: {error}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.grafana.push", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasource", action="store_true", help="also create or update the ClickHouse data source")
    parser.add_argument("--folder", help="Grafana folder (default GRAFANA_FOLDER)")
    parser.add_argument("--no-overwrite", action="store_true",
                        help="refuse to replace a dashboard that was changed on the server")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        cfg = app_config.load()
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        for line in push(cfg, args.datasource, args.folder or cfg.grafana.folder, not args.no_overwrite):
            print(line)
    except PushError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except (GrafanaException, niquests.exceptions.RequestException) as error:
        print(f"error: {explain(error, cfg.grafana.url)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
