import dataclasses
import os

import pytest

import config
from config import ConfigError, load

from tests.conftest import PROJECT_DIR


def test_defaults_match_the_documented_starting_points():
    cfg = load({})
    assert cfg.detection.symbols == ("BTCUSDT", "ETHUSDT", "BNBUSDT", "SOLUSDT", "XRPUSDT")
    assert [cfg.detection.threshold_for(s) for s in cfg.detection.symbols] == [3.5, 3.5, 4.0, 3.0, 3.5]
    assert (cfg.detection.window_size, cfg.detection.min_history, cfg.detection.cooldown_seconds) == (1000, 50, 60)
    assert cfg.store.backend == "chdb"


def test_environment_overrides_defaults_and_arguments_override_environment():
    env = {"KAFKA_TOPIC": "t1", "ROLLING_WINDOW": "200", "JOB_BOUNDED": "true", "SYMBOLS": "btcusdt, ethusdt"}
    cfg = load(env)
    assert (cfg.kafka.topic, cfg.detection.window_size, cfg.job.bounded) == ("t1", 200, True)
    assert cfg.detection.symbols == ("BTCUSDT", "ETHUSDT")
    assert load(env, kafka={"topic": "t2"}).kafka.topic == "t2"


def test_clickhouse_url_selects_the_server_backend():
    assert load({"CLICKHOUSE_URL": "https://ch.example:8443"}).store.backend == "clickhouse"


def test_unlisted_symbols_use_the_default_threshold_and_star_accepts_any_symbol():
    cfg = load({"SYMBOLS": "*", "ZSCORE_DEFAULT_THRESHOLD": "5"})
    assert cfg.detection.accepts("DOGEUSDT")
    assert cfg.detection.threshold_for("DOGEUSDT") == 5.0
    assert cfg.detection.threshold_for("BNBUSDT") == 4.0
    assert not load({}).detection.accepts("DOGEUSDT")


@pytest.mark.parametrize("env, variable", [
    ({"ROLLING_WINDOW": "1"}, "ROLLING_WINDOW"),
    ({"ROLLING_WINDOW": "many"}, "ROLLING_WINDOW"),
    ({"MIN_HISTORY": "2000"}, "MIN_HISTORY"),
    ({"COOLDOWN_SECONDS": "-1"}, "COOLDOWN_SECONDS"),
    ({"KAFKA_STARTING_OFFSETS": "middle"}, "KAFKA_STARTING_OFFSETS"),
    ({"JOB_BOUNDED": "perhaps"}, "JOB_BOUNDED"),
    ({"ZSCORE_THRESHOLDS": "BTCUSDT=abc"}, "ZSCORE_THRESHOLDS"),
    ({"ZSCORE_THRESHOLDS": "BTCUSDT"}, "ZSCORE_THRESHOLDS"),
    ({"SYMBOLS": "BTC-USDT"}, "SYMBOLS"),
    ({"SYMBOLS": ","}, "SYMBOLS"),
    ({"CHECKPOINT_INTERVAL_MS": "0"}, "CHECKPOINT_INTERVAL_MS"),
    ({"RESTART_STRATEGY": "always"}, "RESTART_STRATEGY"),
    ({"RESTART_ATTEMPTS": "0"}, "RESTART_ATTEMPTS"),
    ({"CHECKPOINT_RETENTION": "KEEP"}, "CHECKPOINT_RETENTION"),
])
def test_invalid_settings_fail_with_the_variable_named(env, variable):
    with pytest.raises(ConfigError, match=variable):
        load(env)


def test_secrets_stay_out_of_the_printed_configuration():
    cfg = load({"CLICKHOUSE_PASSWORD": "hunter2"})
    assert cfg.store.password == "hunter2"
    assert "hunter2" not in repr(cfg)


def test_every_environment_variable_is_documented_in_the_readme():
    with open(os.path.join(PROJECT_DIR, "README.md"), encoding="utf-8") as handle:
        readme = handle.read()
    variables = [f.metadata["env"] for cls in config.SECTIONS.values() for f in dataclasses.fields(cls)]
    missing = [v for v in variables if f"`{v}`" not in readme]
    assert not missing, f"README lacks {missing}; paste `python config.py` output into it"


@pytest.mark.parametrize("env, variable", [
    ({"TELEGRAM_BOT_TOKEN": "123:abc"}, "TELEGRAM_CHAT_ID"),
    ({"TELEGRAM_CHAT_ID": "42"}, "TELEGRAM_BOT_TOKEN"),
    ({"ALERT_METHODS": "combined,votes"}, "ALERT_METHODS"),
    ({"ALERT_MIN_SEVERITY": "critical"}, "ALERT_MIN_SEVERITY"),
    ({"ALERT_MAX_PER_MINUTE": "0"}, "ALERT_MAX_PER_MINUTE"),
    ({"ALERT_DASHBOARD_URL": "https://g/d?var-symbol={sym}"}, "ALERT_DASHBOARD_URL"),
    ({"ALERT_RETRY_INITIAL_S": "10", "ALERT_RETRY_MAX_S": "5"}, "ALERT_RETRY_MAX_S"),
    ({"TELEGRAM_API_URL": "api.telegram.org"}, "TELEGRAM_API_URL"),
])
def test_invalid_alert_settings_fail_with_the_variable_named(env, variable):
    with pytest.raises(ConfigError, match=variable):
        load(env)


def test_alerts_are_off_until_a_channel_is_configured_and_webhook_secrets_are_never_echoed():
    assert not load({}).alerts.enabled
    cfg = load({"SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T0/B0/sekrit",
                "TELEGRAM_BOT_TOKEN": "123:tok-sekrit", "TELEGRAM_CHAT_ID": "42"}).alerts
    assert cfg.slack_enabled and cfg.telegram_enabled
    assert "sekrit" not in repr(cfg)
    with pytest.raises(ConfigError) as error:
        load({"SLACK_WEBHOOK_URL": "hooks.slack.com/services/T0/B0/sekrit"})
    assert "SLACK_WEBHOOK_URL" in str(error.value) and "sekrit" not in str(error.value)


def test_recovery_settings_keep_the_last_checkpoint_and_leave_unset_ones_to_the_cluster():
    from flink_jobs.anomaly_job import recovery_settings

    assert recovery_settings(load({}).job) == {
        "execution.checkpointing.externalized-checkpoint-retention": "RETAIN_ON_CANCELLATION"}
    fixed = recovery_settings(load({"CHECKPOINT_DIR": "file:///tmp/ck", "RESTART_STRATEGY": "fixed-delay",
                                    "RESTART_ATTEMPTS": "5", "RESTART_DELAY_MS": "500"}).job)
    assert fixed == {"execution.checkpointing.externalized-checkpoint-retention": "RETAIN_ON_CANCELLATION",
                     "execution.checkpointing.storage": "filesystem", "execution.checkpointing.dir": "file:///tmp/ck",
                     "restart-strategy.type": "fixed-delay", "restart-strategy.fixed-delay.attempts": "5",
                     "restart-strategy.fixed-delay.delay": "500 ms"}
    exponential = recovery_settings(load({"RESTART_STRATEGY": "exponential-delay", "RESTART_ATTEMPTS": "7"}).job)
    assert exponential["restart-strategy.exponential-delay.initial-backoff"] == "2000 ms"
    assert exponential["restart-strategy.exponential-delay.attempts-before-reset-backoff"] == "7"
    assert recovery_settings(load({"RESTART_STRATEGY": "none"}).job)["restart-strategy.type"] == "none"
