"""The job with its bars built by PyFlink's window API instead of BuildBars, for the cost comparison
in docs/storage.md. Same bar arithmetic (flink_jobs/bars.py), same sink; run like the job:

    BARS_ENABLED=true python bench/bars_window_api.py --source files --input trades.jsonl --run-report r.json

key_by(symbol).window(TumblingEventTimeWindows 1 s).aggregate(...) for 1-second bars, and a second
1-minute window over those bars (merging them is exact). Late trades go to a side output and
become dead letters like BuildBars's. Repeated trade ids are not filtered here: a benchmark, not
a second implementation. Defined in __main__ so that the Python workers get these classes by value.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pyflink.common import Time, Types  # noqa: E402
from pyflink.datastream import OutputTag  # noqa: E402
from pyflink.datastream.functions import AggregateFunction, ProcessWindowFunction  # noqa: E402
from pyflink.datastream.window import TumblingEventTimeWindows  # noqa: E402

from flink_jobs import anomaly_job  # noqa: E402

LATE = OutputTag("late-for-bars", Types.PICKLED_BYTE_ARRAY())


class TradesToBar(AggregateFunction):
    def create_accumulator(self):
        return None

    def add(self, trade, bar):
        from flink_jobs.bars import Bar

        if bar is None:
            return Bar(trade)
        bar.add(trade)
        return bar

    def get_result(self, bar):
        return bar

    def merge(self, a, b):
        raise NotImplementedError("tumbling windows do not merge")


class BarsToBar(AggregateFunction):
    """Merges 1-second bar rows into a longer bar (rows in TABLE_COLUMNS['bars'] order)."""

    def create_accumulator(self):
        return None

    def add(self, row, acc):
        _, _, start, o, h, low, c, vol, quote, _, count, buy, sell = row
        if acc is None:
            return [start, o, h, low, start, c, vol, quote, count, buy, sell]
        if start < acc[0]:
            acc[0], acc[1] = start, o
        if start > acc[4]:
            acc[4], acc[5] = start, c
        acc[2], acc[3] = max(acc[2], h), min(acc[3], low)
        for i, value in zip((6, 7, 8, 9, 10), (vol, quote, count, buy, sell)):
            acc[i] += value
        return acc

    def get_result(self, acc):
        return acc

    def merge(self, a, b):
        raise NotImplementedError("tumbling windows do not merge")


class EmitBar(ProcessWindowFunction):
    def __init__(self, interval_s):
        self.interval_s = interval_s

    def process(self, symbol, context, bars):
        for bar in bars:
            yield bar.row(symbol, self.interval_s, context.window().start)


class EmitLongBar(ProcessWindowFunction):
    def __init__(self, interval_s):
        self.interval_s = interval_s

    def process(self, symbol, context, accs):
        for _, o, h, low, _, c, vol, quote, count, buy, sell in accs:
            yield (symbol, self.interval_s, context.window().start, o, h, low, c, vol, quote, quote / vol, count,
                   buy, sell)


def window_api_bars(timed):
    from flink_jobs.operators import dead_letter

    bars_1s = (timed.key_by(lambda trade: trade.symbol)
               .window(TumblingEventTimeWindows.of(Time.seconds(1)))
               .side_output_late_data(LATE)
               .aggregate(TradesToBar(), EmitBar(1), accumulator_type=Types.PICKLED_BYTE_ARRAY(),
                          output_type=Types.PICKLED_BYTE_ARRAY())
               .name("bars-1s-window"))
    bars_1m = (bars_1s.key_by(lambda row: row[0])
               .window(TumblingEventTimeWindows.of(Time.seconds(60)))
               .aggregate(BarsToBar(), EmitLongBar(60), accumulator_type=Types.PICKLED_BYTE_ARRAY(),
                          output_type=Types.PICKLED_BYTE_ARRAY())
               .name("bars-1m-window"))
    late = bars_1s.get_side_output(LATE).map(
        lambda t: dead_letter("bars", "late for bar window", repr(tuple(t)), t.symbol, t.trade_id),
        Types.PICKLED_BYTE_ARRAY())
    return (bars_1s.map(lambda row: ("bars", row), Types.PICKLED_BYTE_ARRAY())
            .union(bars_1m.map(lambda row: ("bars", row), Types.PICKLED_BYTE_ARRAY()), late))


if __name__ == "__main__":
    anomaly_job.bars_stage = window_api_bars
    sys.exit(anomaly_job.main())
