"""How the three methods decide on one scored trade, and the combined method's confirmation rule."""
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from config import load
from flink_jobs.detectors.iforest import beyond_training
from flink_jobs.detectors.methods import ScoredBatch, candidate_rows, candidates, explain
from flink_jobs.detectors.zscore import ZScoreDetector
from flink_jobs.features.symbol_state import SymbolState, TradeFeatures, observe
from flink_jobs.trades import Trade

RANGES = {"z_return": [-8.0, 9.0], "volume_z": [-12.0, 3.9], "rate_z": [-0.5, 7.0]}


def features_of(last_qty: float):
    """A steady market of 300 trades with sizes 1-3, then one trade of `last_qty` at the market price."""
    state = SymbolState(1000)
    for i in range(300):
        observe(state, Trade("BTCUSDT", i, 100.0 + (i % 3) * 0.01, 1.0 + (i % 5) / 2, 1_000 * i, 1_000 * i, i % 2 == 0))
    last = Trade("BTCUSDT", 300, 100.01, last_qty, 300_000, 300_000, False)
    return last, observe(state, last)


def fired(features, trade, if_score, ranges):
    config = load({"DETECTION_METHODS": "zscore,iforest,combined"}).detection
    batch = ScoredBatch([if_score], [1 if if_score >= 0 else -1], "v1", -0.05,
                        lambda f: beyond_training(ranges, f))
    zscore = ZScoreDetector(config)
    return {c.method: explain(c, zscore)
            for c in candidates(config, zscore, trade, features, if_score, batch.labels[0], batch)}


def test_beyond_training_names_the_signal_and_respects_its_side():
    _, whale = features_of(300.0)
    assert whale.volume_z > 3.9
    assert beyond_training(RANGES, whale).startswith(f"volume z-score {whale.volume_z:+.1f} beyond the +3.9")
    assert beyond_training({}, whale) is None                    # a model without recorded ranges
    _, tiny = features_of(0.001)
    assert tiny.volume_z < -12 and beyond_training(RANGES, tiny) is None  # small sizes are one-sided


def test_combined_confirms_a_zscore_alert_beyond_the_forests_training_range():
    trade, whale = features_of(300.0)
    methods = fired(whale, trade, if_score=0.02, ranges=RANGES)  # the forest calls it ordinary
    assert set(methods) == {"zscore", "combined"}
    assert "beyond the +3.9 the forest was trained on" in methods["combined"].reason
    assert methods["combined"].model_version == "v1"


def test_combined_stays_quiet_when_the_forest_has_seen_such_trades_and_calls_them_ordinary():
    trade, whale = features_of(300.0)
    wide = dict(RANGES, volume_z=[-12.0, 50.0])
    assert set(fired(whale, trade, if_score=0.02, ranges=wide)) == {"zscore"}
    # ...and confirms when the forest's score is below its combined threshold.
    assert set(fired(whale, trade, if_score=-0.08, ranges=wide)) == {"zscore", "iforest", "combined"}


def test_a_forest_that_confirms_by_its_score_is_named_as_the_reason_even_beyond_its_range():
    trade, whale = features_of(300.0)
    reason = fired(whale, trade, if_score=-0.08, ranges=RANGES)["combined"].reason
    assert "Isolation Forest score -0.080" in reason and "beyond" not in reason


def test_without_a_zscore_alert_nothing_is_combined():
    trade, ordinary = features_of(2.0)
    assert abs(ordinary.volume_z) < 3.5 and not math.isnan(ordinary.z_return)
    assert set(fired(ordinary, trade, if_score=-0.2, ranges=RANGES)) == {"iforest"}


@pytest.mark.parametrize("value,expected", [(9.5, True), (-8.5, True), (0.0, False)])
def test_returns_are_novel_on_either_side(value, expected):
    _, f = features_of(2.0)
    assert (beyond_training(RANGES, f._replace(z_return=value)) is not None) is expected


Z_VALUES = st.one_of(st.sampled_from([math.nan, math.inf, -math.inf, 0.0, 4.0, -4.0, 3.999999, 0.5, -0.5, 2.5]),
                     st.floats(-50, 50))


@settings(max_examples=300, deadline=None)
@given(rows=st.lists(st.tuples(Z_VALUES, Z_VALUES, Z_VALUES, st.integers(0, 120), st.sampled_from([-1, 1]),
                               st.floats(-0.3, 0.3)), min_size=1, max_size=40),
       threshold=st.sampled_from([4.0, 0.5, 2.5]))
def test_the_rows_a_method_may_fire_for_include_every_row_it_fires_for(rows, threshold):
    """The scoring flush asks `candidates()` only for candidate_rows: for rows at the threshold
    exactly, NaN and infinite z-scores, short history and both labels, none may be left out."""
    import numpy as np

    config = load({"DETECTION_METHODS": "zscore,iforest,combined", "ZSCORE_THRESHOLDS": f"BTCUSDT={threshold}",
                   "MIN_HISTORY": "50"}).detection
    zscore = ZScoreDetector(config)
    trade = Trade("BTCUSDT", 1, 100.0, 1.0, 0, 0, False)
    names = TradeFeatures._fields
    matrix, labels, scores = [], [], []
    for z_return, volume_z, rate_z, history, label, score in rows:
        values = dict.fromkeys(names, 0.0)
        values.update(z_return=z_return, volume_z=volume_z, rate_z=rate_z, history=history)
        matrix.append([values[name] for name in names])
        labels.append(label)
        scores.append(score)
    batch = ScoredBatch(scores, labels, "v1", -0.05, lambda f: None)
    fires = [i for i, row in enumerate(matrix)
             if candidates(config, zscore, trade, TradeFeatures._make(row[:-1] + [int(row[-1])]), scores[i],
                           labels[i], batch)]
    assert zscore.threshold("BTCUSDT") == threshold
    chosen = candidate_rows(config, np.array(matrix), np.full(len(matrix), threshold), np.array(labels)).tolist()
    assert set(fires) <= set(chosen)
