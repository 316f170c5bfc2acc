"""Per-symbol sequencing of live trades: duplicates, gaps with their id ranges, order kept through backfill."""
from producer.gaps import Out, Sequencer


def ids(outs):
    return [o.trade_id for o in outs]


def feed(seq, symbol, trade_ids):
    return [seq.on_trade(symbol, i, f"m{i}", "c0") for i in trade_ids]


def test_repeated_and_overlapping_ids_are_dropped_as_duplicates():
    seq = Sequencer(backfill=False, backfill_max_trades=100, hold_max=100)
    decisions = feed(seq, "ETHUSDT", [10, 11, 12, 11, 12, 13, 10])
    assert [d.duplicate for d in decisions] == [False, False, False, True, True, False, True]
    assert [i for d in decisions for i in ids(d.publish)] == [10, 11, 12, 13]


def test_a_skip_in_trade_ids_is_a_gap_with_the_missing_range_per_symbol():
    seq = Sequencer(backfill=False, backfill_max_trades=100, hold_max=100)
    decisions = feed(seq, "ETHUSDT", [1, 2, 6, 7, 20]) + feed(seq, "BTCUSDT", [1, 3])
    gaps = [(d.gap.symbol, d.gap.first_id, d.gap.last_id, d.gap.missing) for d in decisions if d.gap]
    assert gaps == [("ETHUSDT", 3, 5, 3), ("ETHUSDT", 8, 19, 12), ("BTCUSDT", 2, 2, 1)]
    # without backfill nothing is held: every trade goes out at once
    assert sum(len(d.publish) for d in decisions) == 7 and not any(d.backfill for d in decisions)


def test_live_trades_are_held_while_a_gap_is_backfilled_then_published_in_id_order():
    seq = Sequencer(backfill=True, backfill_max_trades=100, hold_max=100)
    first = feed(seq, "ETHUSDT", [1, 2])
    gap_decision = seq.on_trade("ETHUSDT", 6, "m6", "c0")
    held = feed(seq, "ETHUSDT", [7, 8, 7])
    assert gap_decision.backfill and gap_decision.publish == [] and [d.publish for d in held] == [[], [], []]
    assert held[-1].duplicate and seq.held_count() == 3
    # the backfill brings 3..5 plus ids outside the gap, which must not slip in
    publish, filled = seq.on_backfill(gap_decision.gap, [Out("ETHUSDT", i, f"b{i}") for i in (2, 3, 4, 5, 6)])
    assert filled == 3
    assert ids(publish) == [3, 4, 5, 6, 7, 8]
    assert [o.message for o in publish][:3] == ["b3", "b4", "b5"] and publish[3].message == "m6"
    assert ids(first[0].publish + first[1].publish) == [1, 2] and seq.held_count() == 0


def test_a_partial_backfill_releases_what_it_has_and_says_how_many():
    seq = Sequencer(backfill=True, backfill_max_trades=100, hold_max=100)
    feed(seq, "ETHUSDT", [1])
    gap = seq.on_trade("ETHUSDT", 5, "m5").gap
    publish, filled = seq.on_backfill(gap, [Out("ETHUSDT", 3, "b3")])
    assert (ids(publish), filled) == ([3, 5], 1)


def test_a_hold_beyond_its_limit_abandons_the_gap_and_a_late_backfill_is_not_published():
    seq = Sequencer(backfill=True, backfill_max_trades=100, hold_max=3)
    feed(seq, "ETHUSDT", [1])
    gap = seq.on_trade("ETHUSDT", 10, "m10").gap
    decisions = feed(seq, "ETHUSDT", [11, 12, 13])
    assert [d.abandoned for d in decisions][-1] == [gap]
    assert ids(decisions[-1].publish) == [10, 11, 12, 13]
    assert seq.on_backfill(gap, [Out("ETHUSDT", 5, "b5")]) is None


def test_gaps_larger_than_the_backfill_limit_are_recorded_not_held():
    seq = Sequencer(backfill=True, backfill_max_trades=10, hold_max=100)
    feed(seq, "ETHUSDT", [1])
    decision = seq.on_trade("ETHUSDT", 100, "m100")
    assert decision.gap.missing == 98 and not decision.backfill and ids(decision.publish) == [100]


def test_shutdown_releases_held_trades_and_names_the_open_gaps():
    seq = Sequencer(backfill=True, backfill_max_trades=100, hold_max=100)
    feed(seq, "ETHUSDT", [1, 4, 5])
    held, abandoned = seq.release_all()
    assert ids(held) == [4, 5] and [(g.first_id, g.last_id) for g in abandoned] == [(2, 3)]
