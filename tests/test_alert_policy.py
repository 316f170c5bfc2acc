"""Which anomalies become alerts: method and severity filter, per-symbol event-time cooldown, and the
global rate limit in processing time, with an injected clock."""
from config import load
from flink_jobs.alerts.message import Alert, Suppressed
from flink_jobs.alerts.policy import COOLDOWN, METHOD, RATE_LIMITED, SEND, SEVERITY, AlertPolicy

T0 = 1_678_485_477_945


def alert(symbol="ETHUSDT", seconds=0.0, method="combined", severity="high", trade_id=1) -> Alert:
    return Alert(symbol, trade_id, T0 + int(seconds * 1000), method, severity, 1432.17, -0.1, -5.0, -0.1, "v1",
                 "a reason")


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def run(policy: AlertPolicy, alerts, clock: Clock | None = None, step_s: float = 0.0) -> list:
    """Decides a sequence the way the sink does (cooldown state per symbol); returns the outcomes."""
    last: dict = {}
    outcomes = []
    for a in alerts:
        decision = policy.decide(a, last.get(a.symbol))
        if decision.send:
            last[a.symbol] = a.trade_time_ms
        outcomes.append(decision.outcome)
        if clock:
            clock.now += step_s
    return outcomes


def test_defaults_alert_only_combined_anomalies_of_medium_severity_and_up():
    policy = AlertPolicy.from_config(load({}).alerts)
    outcomes = [policy.decide(alert(method=m, severity=s), None).outcome for m, s in (
        ("zscore", "high"), ("iforest", "high"), ("combined", "low"), ("combined", "medium"), ("combined", "high"))]
    assert outcomes == [METHOD, METHOD, SEVERITY, SEND, SEND]


def test_cooldown_is_per_symbol_and_in_trade_time_whatever_the_method():
    policy = AlertPolicy("low", ("zscore", "combined"), 300, 1000, Clock())
    outcomes = run(policy, [alert(seconds=0), alert(seconds=10, method="zscore"), alert("BTCUSDT", seconds=10),
                            alert(seconds=299.999), alert(seconds=300), alert("BTCUSDT", seconds=305)])
    assert outcomes == [SEND, COOLDOWN, SEND, COOLDOWN, SEND, COOLDOWN]


def test_rate_limit_lets_a_burst_through_then_one_per_refill_and_reports_what_it_held_back():
    clock = Clock()
    policy = AlertPolicy("low", ("combined",), 0, 3, clock)  # 3 a minute: one token every 20 s
    burst = [alert(symbol, trade_id=i) for i, symbol in enumerate(["A1", "B1", "C1", "D1", "E1", "D1"])]
    assert run(policy, burst) == [SEND, SEND, SEND, RATE_LIMITED, RATE_LIMITED, RATE_LIMITED]
    assert policy.pending_suppressed == 3

    clock.now += 19.9
    assert policy.decide(alert("F1"), None).outcome == RATE_LIMITED
    clock.now += 0.1  # 20 s after the burst: one token
    decision = policy.decide(alert("G1"), None)
    assert decision.outcome == SEND
    assert decision.suppressed == Suppressed(4, (("D1", 2), ("E1", 1), ("F1", 1)))
    assert policy.pending_suppressed == 0
    assert policy.decide(alert("H1"), None).outcome == RATE_LIMITED


def test_a_rate_limited_alert_does_not_start_its_symbols_cooldown():
    clock = Clock()
    policy = AlertPolicy("low", ("combined",), 300, 1, clock)
    assert run(policy, [alert("A1"), alert("B1", seconds=1)]) == [SEND, RATE_LIMITED]
    clock.now += 60
    assert policy.decide(alert("B1", seconds=2), None).outcome == SEND


def test_suppressed_alerts_get_a_summary_of_their_own_when_a_token_is_free_or_at_the_end():
    clock = Clock()
    policy = AlertPolicy("low", ("combined",), 0, 2, clock)
    run(policy, [alert("A1"), alert("A1"), alert("B1"), alert("C1")])
    assert policy.take_summary() is None                 # no token yet: keep counting
    clock.now += 30
    assert policy.take_summary() == Suppressed(2, (("B1", 1), ("C1", 1)))
    assert policy.take_summary() is None                 # nothing left to report
    run(policy, [alert("D1")])
    assert policy.take_summary() is None
    assert policy.take_summary(force=True) == Suppressed(1, (("D1", 1),))
