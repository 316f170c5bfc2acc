"""Parsing in batches: what leaves each row of a batch (flink_jobs/parse_batches.py)."""
import json
import pickle

from flink_jobs.parse_batches import BLOCK_MIN_TRADES, DEAD_LETTER_KEY, NO_EVENT_TIME, group_batch
from flink_jobs.trade_block import unpack
from flink_jobs.trades import Trade, parse_trade

T0 = 1_700_000_000_000


def message(symbol: str, trade_id: int, time_ms: int, price: str = "100.5") -> bytes:
    return json.dumps({"e": "trade", "E": time_ms, "s": symbol, "t": trade_id, "p": price, "q": "0.25",
                       "T": time_ms, "m": False}).encode()


def accepts(symbol: str) -> bool:
    return symbol != "DOGEUSDT"


def dead_letter(reason: str, raw) -> tuple:
    return "dead_letters", [(reason, raw)]


def run(raws, rejected=None):
    return group_batch(raws, accepts, dead_letter, None if rejected is None else
                       lambda error, raw: rejected.append((str(error), raw)))


def trades_at(out, row: int) -> list[Trade]:
    """The trades of a row's group, as the scoring operator reads them (its key is their symbol)."""
    group = pickle.loads(out.payloads[row])
    return [Trade._make(t) for t in (unpack(group).tuples(out.keys[row]) if type(group) is bytes else group)]


def test_each_symbol_leaves_once_at_its_last_message_with_its_trades_in_order():
    raws = [message("BTCUSDT", 1, T0 + 5), message("ETHUSDT", 7, T0 + 1), message("BTCUSDT", 2, T0 + 3),
            message("BTCUSDT", 3, T0 + 9), message("ETHUSDT", 8, T0 + 2)]
    out = run(raws)

    assert out.keys == [None, None, None, "BTCUSDT", "ETHUSDT"]
    assert out.payloads[:3] == [None, None, None]
    btc, eth = trades_at(out, 3), trades_at(out, 4)
    assert [t.trade_id for t in btc] == [1, 2, 3]  # arrival order, not trade time
    assert [t.trade_id for t in eth] == [7, 8]
    # The same trades as parsed one by one, field for field and type for type
    assert [repr(t) for t in btc] == [repr(parse_trade(raws[row], accepts)) for row in (0, 2, 3)]
    assert (out.parsed, out.rejected) == (5, 0)


def test_groups_carry_the_batch_s_earliest_trade_time_so_no_later_group_is_late():
    # ETH's group leaves first but is stamped with BTC's earlier trade time: a watermark taken
    # after it must not pass BTC's first trade, which leaves in the next group.
    raws = [message("BTCUSDT", 1, T0), message("ETHUSDT", 7, T0 + 60_000), message("BTCUSDT", 2, T0 + 61_000)]
    out = run(raws)

    assert out.keys == [None, "ETHUSDT", "BTCUSDT"]
    assert out.event_times == [NO_EVENT_TIME, T0, T0]


def test_invalid_messages_become_dead_letters_in_place_and_move_no_event_time():
    rejected = []
    raws = [b"{not json", message("BTCUSDT", 1, T0), message("DOGEUSDT", 1, T0), b"\xff\xfe", None]
    out = run(raws, rejected)

    assert out.keys == [DEAD_LETTER_KEY, "BTCUSDT", DEAD_LETTER_KEY, DEAD_LETTER_KEY, DEAD_LETTER_KEY]
    assert out.event_times == [NO_EVENT_TIME, T0, NO_EVENT_TIME, NO_EVENT_TIME, NO_EVENT_TIME]
    letters = [pickle.loads(out.payloads[i]) for i in (0, 2, 3, 4)]
    reasons = [rows[0][0] for _, rows in letters]
    assert reasons[0].startswith("malformed JSON")
    assert reasons[1] == "unknown symbol: DOGEUSDT"
    assert reasons[2].startswith("not UTF-8")
    assert reasons[3] == "empty message: the record has no value"
    # The raw message is kept as it came (the store turns bytes into text), a tombstone as ""
    assert [rows[0][1] for _, rows in letters] == [b"{not json", raws[2], b"\xff\xfe", ""]
    assert [reason for reason, _ in rejected] == reasons
    assert (out.parsed, out.rejected) == (1, 4)


def batch_message(*messages: bytes) -> bytes:
    return b"[" + b",".join(messages) + b"]"


def test_batch_messages_join_their_symbol_s_group_in_order_and_count_as_their_trades():
    canonical = [json.dumps(json.loads(message("BTCUSDT", i, T0 + i)), separators=(",", ":")).encode()
                 for i in (2, 3)]
    raws = [message("BTCUSDT", 1, T0 + 1), batch_message(*canonical),    # the fast path's shape
            message("ETHUSDT", 9, T0 + 4), batch_message(message("BTCUSDT", 4, T0 + 4), message("BTCUSDT", 5, T0))]
    out = run(raws)

    assert out.keys == [None, None, "ETHUSDT", "BTCUSDT"]
    assert [t.trade_id for t in trades_at(out, 3)] == [1, 2, 3, 4, 5]
    assert out.event_times[2:] == [T0, T0]   # the earliest trade of the batch, inside a batch message
    assert (out.parsed, out.rejected) == (6, 0)


def test_a_batch_message_with_one_bad_trade_is_one_dead_letter_holding_all_of_it():
    rejected = []
    bad = batch_message(message("BTCUSDT", 1, T0), message("BTCUSDT", 2, T0, price="0"), message("BTCUSDT", 3, T0))
    out = run([bad, message("BTCUSDT", 4, T0)], rejected)

    assert out.keys == [DEAD_LETTER_KEY, "BTCUSDT"]
    [(reason, raw)] = pickle.loads(out.payloads[0])[1]
    assert reason == "price (p) must be positive: got '0' [trade 2 of 3 in a batch message]" and raw == bad
    assert [t.trade_id for t in trades_at(out, 1)] == [4]
    assert (out.parsed, out.rejected) == (1, 1) and rejected == [(reason, bad)]


def test_a_batch_of_only_invalid_messages_has_no_trade_group():
    out = run([b"[]", b"{}"])

    assert out.keys == [DEAD_LETTER_KEY, DEAD_LETTER_KEY]
    assert out.event_times == [NO_EVENT_TIME, NO_EVENT_TIME]
    assert (out.parsed, out.rejected) == (0, 2)


def test_text_messages_parse_as_bytes_do():
    raw = message("SOLUSDT", 3, T0)
    as_bytes, as_text = run([raw]), run([raw.decode()])

    assert trades_at(as_bytes, 0) == trades_at(as_text, 0) == [parse_trade(raw, accepts)]


def test_a_busy_symbol_s_group_is_a_block_and_a_sparse_one_s_a_list_of_the_same_trades():
    count = BLOCK_MIN_TRADES
    sol = [message("SOLUSDT", 1, T0), message("SOLUSDT", 2, T0)]
    btc = [message("BTCUSDT", i, T0 + i) for i in range(1, count + 1)]
    eth = [message("ETHUSDT", i, T0 + i) for i in range(1, count)]
    raws = sol[:1] + btc + eth + sol[1:]   # small groups on both sides of the block
    out = run(raws)

    rows = {symbol: out.keys.index(symbol) for symbol in ("SOLUSDT", "BTCUSDT", "ETHUSDT")}
    kinds = {symbol: type(pickle.loads(out.payloads[row])) for symbol, row in rows.items()}
    assert kinds == {"SOLUSDT": list, "BTCUSDT": bytes, "ETHUSDT": list}
    for symbol, sent in (("SOLUSDT", sol), ("BTCUSDT", btc), ("ETHUSDT", eth)):
        assert trades_at(out, rows[symbol]) == [parse_trade(raw, accepts) for raw in sent]
