"""The producers' batch messages (producer/batching.py): a symbol's trades of one linger window in one
message, in order, within the count and size limits, each trade's tag kept; and the job reads
every batch back as the trades that went in (flink_jobs/trades.py parse_message)."""
import json

import pytest

from flink_jobs.trades import MAX_BATCH_MESSAGE_CHARS, Trade, encode_message, parse_message, parse_trade
from producer.batching import MessageBatcher, may_share
from producer.replay import replay
from producer.sources import Record

T0 = 1_700_000_000_000


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def trade(symbol: str, trade_id: int) -> Trade:
    return Trade(symbol, trade_id, 100.0 + trade_id, 0.5, T0 + trade_id, T0 + trade_id, trade_id % 2 == 0)


def read(batch) -> list[Trade]:
    return parse_message(batch.value, lambda s: True, now_ms=T0)


def test_a_symbol_s_trades_wait_for_the_linger_and_leave_together_in_order():
    clock = Clock()
    batcher = MessageBatcher(max_trades=200, linger_s=0.010, clock=clock)
    assert batcher.add("BTCUSDT", encode_message(trade("BTCUSDT", 1)), "b1") == []
    clock.now += 0.004
    assert batcher.add("ETHUSDT", encode_message(trade("ETHUSDT", 1)), "e1") == []
    assert batcher.add("BTCUSDT", encode_message(trade("BTCUSDT", 2)), "b2") == []
    assert batcher.due() == [] and batcher.next_due_in() == pytest.approx(0.006)
    clock.now += 0.006
    [btc] = batcher.due()     # ETH's first trade came 4 ms later: not due yet
    assert (btc.symbol, btc.tags, read(btc)) == ("BTCUSDT", ["b1", "b2"], [trade("BTCUSDT", 1), trade("BTCUSDT", 2)])
    assert btc.value[:1] == b"[" and batcher.held == 1
    clock.now += 0.004
    [eth] = batcher.due()
    assert eth.value == encode_message(trade("ETHUSDT", 1))   # alone: the plain websocket object
    assert batcher.next_due_in() is None and batcher.held == 0


def test_a_full_batch_leaves_at_once_and_a_large_one_before_it_passes_the_size_limit():
    batcher = MessageBatcher(max_trades=3, linger_s=60, clock=Clock())
    ready = [b for i in range(7) for b in batcher.add("SOLUSDT", encode_message(trade("SOLUSDT", i)), i)]
    assert [b.tags for b in ready] == [[0, 1, 2], [3, 4, 5]]
    assert [b.tags for b in batcher.drain()] == [[6]]

    big = MessageBatcher(max_trades=10_000, linger_s=60, clock=Clock())
    messages = [encode_message(trade("XRPUSDT", i)) for i in range(1500)]
    ready = [b for i, m in enumerate(messages) for b in big.add("XRPUSDT", m, i)] + big.drain()
    assert all(len(b.value) <= MAX_BATCH_MESSAGE_CHARS for b in ready) and len(ready) > 2
    assert [t for b in ready for t in read(b)] == [trade("XRPUSDT", i) for i in range(1500)]
    assert [tag for b in ready for tag in b.tags] == list(range(1500))


@pytest.mark.parametrize("max_trades, linger_s", [(1, 0.01), (200, 0.0)])
def test_without_batching_every_trade_leaves_alone_at_once(max_trades, linger_s):
    batcher = MessageBatcher(max_trades, linger_s, clock=Clock())
    message = encode_message(trade("BNBUSDT", 1))
    assert [(b.value, b.tags) for b in batcher.add("BNBUSDT", message, "x")] == [(message, ["x"])]
    assert batcher.drain() == [] and batcher.next_due_in() is None


class RecordingPublisher:
    def __init__(self):
        self.sent, self.messages, self.acked = [], 0, 0

    def send(self, symbol, message, trades=1):
        self.sent.append((symbol, message, trades))


def test_replay_batches_each_symbol_and_sends_every_trade_once():
    trades = [trade(symbol, i) for i in range(50) for symbol in ("BTCUSDT", "ETHUSDT")]
    records = [Record(t.trade_time_ms, t.symbol, encode_message(t).decode()) for t in trades]
    publisher = RecordingPublisher()

    count = replay(records, publisher, speed=None, batcher=MessageBatcher(20, 60.0))

    assert count == 100
    assert [n for _, _, n in publisher.sent] == [20, 20, 20, 20, 10, 10]
    for symbol in ("BTCUSDT", "ETHUSDT"):
        sent = [t for s, m, _ in publisher.sent if s == symbol for t in parse_message(m, lambda s: True, T0)]
        assert sent == [t for t in trades if t.symbol == symbol]


def test_replay_publishes_what_is_not_a_valid_trade_alone_as_it_came_after_its_symbol_s_batch():
    good = [Record(T0 + i, "BTCUSDT", encode_message(trade("BTCUSDT", i)).decode()) for i in range(3)]
    bad = Record(T0 + 5, "BTCUSDT", '{"e":"trade","s":"BTCUSDT","t":9}')        # missing fields
    other = Record(T0 + 6, "BTCUSDT", encode_message(trade("ETHUSDT", 7)).decode())   # keyed as another symbol
    keyless = Record(T0 + 7, None, "not json")
    publisher = RecordingPublisher()

    replay(good[:2] + [bad] + good[2:] + [other, keyless], publisher, speed=None, batcher=MessageBatcher(20, 60.0))

    assert [(s, n) for s, _, n in publisher.sent] == [("BTCUSDT", 2), ("BTCUSDT", 1), ("BTCUSDT", 1),
                                                      ("BTCUSDT", 1), (None, 1)]
    assert [m for _, m, _ in publisher.sent[1:]] == [bad.message.encode(), good[2].message.encode(),
                                                     other.message.encode(), b"not json"]


class TimedPublisher(RecordingPublisher):
    def __init__(self, clock: dict):
        super().__init__()
        self.clock = clock

    def send(self, symbol, message, trades=1):
        self.sent.append((symbol, message, trades, round(self.clock["now"], 6)))


def test_a_paced_replay_sends_a_waiting_batch_at_its_linger_not_with_the_next_record(monkeypatch):
    clock = {"now": 100.0}
    monkeypatch.setattr("producer.replay.time.monotonic", lambda: clock["now"])
    monkeypatch.setattr("producer.replay.time.sleep", lambda seconds: clock.__setitem__("now", clock["now"] + seconds))
    records = [Record(T0 + ms, "BTCUSDT", encode_message(trade("BTCUSDT", i)).decode())
               for i, ms in enumerate((0, 5, 100, 105, 300))]
    publisher = TimedPublisher(clock)

    replay(records, publisher, speed=1.0, batcher=MessageBatcher(200, 0.010, clock=lambda: clock["now"]))

    # (trades, when sent): each batch 10 ms after its first trade, the last when the replay ends
    assert [(n, at) for _, _, n, at in publisher.sent] == [(2, 100.01), (2, 100.11), (1, 100.3)]


def test_a_trade_nested_to_the_limit_alone_is_replayed_alone_not_in_a_batch_it_would_break():
    nested = json.dumps({**json.loads(encode_message(trade("BTCUSDT", 2))), "x": [[[[[[[1]]]]]]]})
    assert parse_trade(nested, lambda s: True, T0)     # valid alone: 8 levels
    records = [Record(T0 + i, "BTCUSDT", m) for i, m in
               enumerate([encode_message(trade("BTCUSDT", 1)).decode(), nested, encode_message(trade("BTCUSDT", 3)).decode()])]
    publisher = RecordingPublisher()

    replay(records, publisher, speed=None, batcher=MessageBatcher(20, 60.0))

    assert [(n, m) for _, m, n in publisher.sent][1] == (1, nested.encode())
    assert sum(len(parse_message(m, lambda s: True, T0)) for _, m, _ in publisher.sent) == 3


def test_an_interrupted_replay_still_sends_the_trades_waiting_for_their_batch():
    def records():
        for i in range(3):
            yield Record(T0 + i, "ETHUSDT", encode_message(trade("ETHUSDT", i)).decode())
        raise KeyboardInterrupt
    publisher = RecordingPublisher()

    with pytest.raises(KeyboardInterrupt):
        replay(records(), publisher, speed=None, batcher=MessageBatcher(20, 60.0))

    assert [n for _, _, n in publisher.sent] == [3]


def test_only_a_trade_the_job_accepts_alone_and_inside_a_batch_may_share_one():
    good = encode_message(trade("BTCUSDT", 5)).decode()
    assert may_share(good, "BTCUSDT")
    assert not may_share(good.replace('"p":"105.0"', '"p":"0.00000000"'), "BTCUSDT")   # a bad REST row
    assert not may_share(good, "ETHUSDT")      # not the symbol it is published under
    # Over 16 KiB: a dead letter alone, though it would fit a 64 KiB batch
    assert not may_share(json.dumps({**json.loads(good), "note": "x" * 20_000}), "BTCUSDT")
    assert not may_share("not json", None)
