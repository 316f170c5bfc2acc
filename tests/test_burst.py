"""bench/burst.py: the rate step it measures does make nearly every trade a candidate, and its
decision path lets through what the job's reference (offline.detect) lets through."""
import config
from bench import burst
from flink_jobs.detectors.offline import detect


def zscore_only():
    return config.load({}, detection={"methods": ("zscore",), "cooldown_seconds": 1.0}).detection


def test_a_step_in_the_rate_makes_nearly_every_trade_a_candidate():
    detection = zscore_only()
    steady = burst.scored_batches(burst.market_trades(5, [(200, 60)]), detection, None)
    stepped = burst.scored_batches(burst.market_trades(5, [(200, 60), (800, 5)]), detection, None)
    steady_candidates, _ = burst.decide(steady, detection)
    stepped_candidates, _ = burst.decide(stepped, detection)
    assert steady_candidates < 0.01 * 200 * 60
    assert stepped_candidates - steady_candidates > 0.8 * 800 * 5


def test_the_benchmark_s_decisions_are_the_job_s():
    detection = zscore_only()
    trades = burst.market_trades(5, [(200, 60), (800, 5)])
    _, let_through = burst.decide(burst.scored_batches(trades, detection, None), detection)
    _, reference = detect(trades, detection, batch_size=burst.BATCH)
    assert let_through == len(reference) > 0
