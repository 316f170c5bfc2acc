"""The hostile corpus (tests/hostile.py) against the parser: every message gets the outcome and the
reason kind the corpus says, and the mix into real traffic says exactly what the job must store."""
import collections

import pytest

from flink_jobs.features.symbol_state import Repeated, SymbolState, observe_all
from flink_jobs.trades import (MAX_DEAD_LETTER_CHARS, InvalidTrade, dead_letter_raw, parse_message,
                               reason_kind)
from tests import hostile

ACCEPTS = {"ETHUSDT", "XRPETH"}.__contains__
# The classes of hostile input issue 8 names, as the corpus calls them.
REQUIRED_KINDS = {"invalid JSON", "wrong type", "missing fields", "NaN or Infinity (JSON token)",
                  "NaN or Infinity (string)", "negative or zero price or size", "absurd timestamp",
                  "megabyte message", "unknown symbol", "not UTF-8", "deeply nested JSON"}
STREAM_KINDS = {"duplicate trade", "out-of-order trade", "late trade", "valid trade in hostile dress"}


@pytest.fixture(scope="module")
def corpus():
    return hostile.corpus()


@pytest.fixture(scope="module")
def mix(corpus):
    return hostile.mixed(hostile.real_traffic(), corpus)


def test_the_corpus_is_large_deterministic_unique_and_covers_every_class(corpus):
    assert len(corpus) >= 1000
    assert [h.raw for h in hostile.corpus()] == [h.raw for h in corpus]
    assert [h.raw for h in hostile.corpus(seed=9)] != [h.raw for h in corpus]
    assert REQUIRED_KINDS <= {h.kind for h in corpus}
    # Dead letters are keyed by (stage, reason, hash of the raw text kept): every one must differ there.
    kept = [dead_letter_raw(h.raw, "")[0] for h in corpus]
    assert len(set(kept)) == len(corpus)
    assert sum(len(h.raw) >= 900_000 for h in corpus) >= 5 and max(len(h.raw) for h in corpus) < 1024 * 1024


def test_every_corpus_message_is_rejected_with_the_reason_kind_it_expects(corpus):
    wrong = []
    for item in corpus:
        try:
            trade = parse_message(item.raw, ACCEPTS)
        except InvalidTrade as error:
            if reason_kind(str(error)) != item.reason:
                wrong.append((item.kind, item.raw[:80], str(error)[:120], item.reason))
        else:
            wrong.append((item.kind, item.raw[:80], trade, item.reason))
    assert not wrong, f"{len(wrong)} messages: {wrong[:5]}"


def test_reason_kinds_are_few_whatever_the_values(corpus):
    """A dashboard groups dead letters by kind: the values go after the colon."""
    kinds = set()
    for item in corpus:
        with pytest.raises(InvalidTrade) as error:
            parse_message(item.raw, ACCEPTS)
        kinds.add(reason_kind(str(error.value)))
    assert len(kinds) <= 40 and not any("h1" in kind or "ETHUSDT" in kind for kind in kinds)


def test_megabyte_messages_are_kept_cut_with_the_cut_in_the_reason(corpus):
    big = [h for h in corpus if len(h.raw) > MAX_DEAD_LETTER_CHARS]
    for item in big:
        with pytest.raises(InvalidTrade) as error:
            parse_message(item.raw, ACCEPTS)
        raw, reason = dead_letter_raw(item.raw, str(error.value))
        assert len(raw) == MAX_DEAD_LETTER_CHARS
        assert reason.startswith("message too large: ") and f"to {MAX_DEAD_LETTER_CHARS} characters]" in reason


def test_the_mix_says_exactly_what_the_job_stores_as_the_job_decides_it(mix, corpus):
    """Plain Python over each partition in order: the parser, then the job's repeat rule per symbol."""
    stored, dead = {}, collections.Counter()
    states: dict = {}
    for partition in mix.partitions:
        for _, raw in partition:
            try:
                trade, = parse_message(raw, ACCEPTS)   # the mix holds no batch message of trades
            except InvalidTrade as error:
                dead[("parse", reason_kind(str(error)), dead_letter_raw(raw, "")[0])] += 1
                continue
            state = states.get(trade.symbol) or states.setdefault(trade.symbol, SymbolState(10))
            if type(observe_all(state, [trade])[0]) is Repeated:
                dead[("detect", hostile.REPEATED, (trade.symbol, trade.trade_id))] += 1
                continue
            stored[(trade.symbol, trade.trade_id)] = (trade.price, trade.qty, trade.trade_time_ms)
    assert stored == mix.trades
    expected = collections.Counter(
        (h.stage, h.reason, dead_letter_raw(h.raw, "")[0] if h.stage == "parse" else (h.symbol, h.trade_id))
        for h in mix.dead_letters if h.stage != "bars")
    assert dead == expected
    late = [h for h in mix.dead_letters if h.stage == "bars"]
    assert len(late) == 20 and all((h.symbol, h.trade_id) in stored for h in late)


def test_the_mix_holds_the_corpus_and_every_stream_hostility(mix, corpus):
    kinds = collections.Counter(h.kind for h in mix.messages)
    assert STREAM_KINDS <= set(kinds) and kinds["duplicate trade"] >= 20 and kinds["out-of-order trade"] == 30
    sent = collections.Counter(raw for partition in mix.partitions for _, raw in partition)
    assert all(sent[h.raw] >= 1 for h in corpus)
    # stream hostilities in place of a real trade: dress, late time, swapped order; the rest are additions
    assert sum(len(p) for p in mix.partitions) == 6000 + len(mix.messages) - kinds["valid trade in hostile dress"] \
        - kinds["late trade"] - kinds["out-of-order trade"]
