"""The per-trade feature recurrences, compiled: one call per symbol and batch of trades.

`symbol_state.observe_all` is the only caller. The state of a symbol is two flat arrays (floats
and integers, laid out by `Layout`) and a ring of recent trade times, so that the compiled loop
reads and writes it in place and one call covers all of a symbol's trades of a batch.

Every value is the operation the interpreted definition did, in the same order, so features are
equal bit for bit (tests/test_features.py holds them against digests recorded before): numba
compiles without fast-math (no reassociation, no fused multiply-add), and math.log, exp, expm1
call the same libm as CPython. Two steps stay in Python because their result depends on how the
sum is rounded: the exact recomputation of a rolling mean and variance with math.fsum, every
`window` updates; the loop returns before the next trade when one is due (RECOMPUTE), and when the
ring of trade times is full (GROW).
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

# Why the loop returned early (the second value it returns).
DONE, RECOMPUTE, GROW = 0, 1, 2
# Columns of the output row: the 17 float features of TradeFeatures, then `history`.
OUT_COLUMNS = 18
SKIPPED = 1  # status of a trade whose id is not above the last seen (a repeat): state untouched, and
# the last seen id in its output row's last column

# Scalars in the float array.
F_P_MEAN, F_P_M2, F_R_MEAN, F_R_M2 = 0, 1, 2, 3
F_QV_TOTAL, F_BV_TOTAL, F_SS_TOTAL, F_AS_TOTAL = 4, 5, 6, 7
F_RET_MEDIAN, F_RET_MAD, F_RATE_TAU_MS, F_RATE_LEVEL, F_LAST_PRICE = 8, 9, 10, 11, 12
F_SCALARS = 13
# Scalars in the integer array: a ring's count, head (index of its oldest value once full) and
# updates since its last exact recomputation.
(I_P_N, I_P_HEAD, I_P_UPD, I_R_N, I_R_HEAD, I_R_UPD, I_QV_N, I_QV_HEAD, I_QV_UPD, I_BV_N, I_BV_HEAD, I_BV_UPD,
 I_SZ_N, I_SZ_HEAD, I_LS_N, I_LS_HEAD, I_RP_N, I_RP_HEAD, I_SS_N, I_SS_HEAD, I_SS_UPD, I_AS_N, I_AS_HEAD, I_AS_UPD,
 I_ROBUST_AGE, I_HAS_LAST_PRICE, I_LAST_TRADE_ID, I_LAST_TIME, I_TRADES_SEEN, I_RATE_STARTED, I_RATE_FIRST_MS,
 I_RATE_LAST_MS, I_RT_N, I_RT_HEAD) = range(34)
I_SCALARS = 34


@njit(cache=True)
def _ring_sum(f, start, capacity, n, head):
    """Sequential sum in arrival order, as Python's sum() over a deque (3.11: no compensation)."""
    total = 0.0
    for k in range(n):
        total += f[start + (head + k) % capacity]
    return total


@njit(cache=True)
def _rolling_sum_push(f, i, start, capacity, x, total_at, n_at, head_at, upd_at):
    """RollingSum.push: the oldest value leaves the total, x joins it; the exact sum every `capacity`."""
    n = i[n_at]
    head = i[head_at]
    if n == capacity:
        f[total_at] -= f[start + head]
        f[start + head] = x
        head = (head + 1) % capacity
        i[head_at] = head
    else:
        f[start + (head + n) % capacity] = x
        n += 1
        i[n_at] = n
    f[total_at] += x
    i[upd_at] += 1
    if i[upd_at] >= capacity:
        f[total_at] = _ring_sum(f, start, capacity, n, head)
        i[upd_at] = 0


@njit(cache=True)
def _median_of_sorted(f, start, n):
    if n == 0:
        return 0.0
    mid = n // 2
    if n % 2:
        return f[start + mid]
    return 0.5 * (f[start + mid - 1] + f[start + mid])


@njit(cache=True)
def _bisect_left(f, start, n, x):
    lo, hi = 0, n
    while lo < hi:
        mid = (lo + hi) // 2
        if f[start + mid] < x:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(cache=True)
def _bisect_right(f, start, n, x):
    lo, hi = 0, n
    while lo < hi:
        mid = (lo + hi) // 2
        if x < f[start + mid]:
            hi = mid
        else:
            lo = mid + 1
    return lo


@njit(cache=True)
def _rolling_median_push(f, i, start, sorted_start, capacity, x, n_at, head_at):
    """RollingMedian.push: the window in arrival order and a sorted copy, kept by bisection."""
    n = i[n_at]
    head = i[head_at]
    if n == capacity:
        oldest = f[start + head]
        k = _bisect_left(f, sorted_start, n, oldest)
        for j in range(k, n - 1):
            f[sorted_start + j] = f[sorted_start + j + 1]
        n -= 1
        f[start + head] = x
        i[head_at] = (head + 1) % capacity
    else:
        f[start + (head + n) % capacity] = x
    k = _bisect_right(f, sorted_start, n, x)  # insort: after equal values
    for j in range(n, k, -1):
        f[sorted_start + j] = f[sorted_start + j - 1]
    f[sorted_start + k] = x
    i[n_at] = n + 1


@njit(cache=True)
def _rolling_stats_push(f, i, start, capacity, x, mean_at, m2_at, n_at, head_at, upd_at):
    """RollingStats.push without its exact recomputation, which the caller does (RECOMPUTE)."""
    n = i[n_at]
    if n < capacity:
        f[start + n] = x
        i[n_at] = n + 1
        delta = x - f[mean_at]
        f[mean_at] += delta / (n + 1)
        f[m2_at] += delta * (x - f[mean_at])
    else:
        head = i[head_at]
        old = f[start + head]
        f[start + head] = x
        i[head_at] = (head + 1) % capacity
        old_mean = f[mean_at]
        f[mean_at] = old_mean + (x - old) / n
        f[m2_at] += (x - old) * (x - f[mean_at] + old - old_mean)
    i[upd_at] += 1


@njit(cache=True)
def _zscore_and_std(f, i, mean_at, m2_at, n_at, x, min_std):
    n = i[n_at]
    m2 = f[m2_at]
    std = math.sqrt((0.0 if m2 < 0.0 else m2) / n) if n else 0.0
    floored = min_std if min_std > std else std
    mean = f[mean_at]
    magnitude = abs(mean)
    if floored <= 1e-12 * (magnitude if magnitude > 1.0 else 1.0):
        return 0.0, std
    return (x - mean) / floored, std


@njit(cache=True)
def _rate_per_second(f, i, now_ms):
    """DecayingRate.per_second, and whether there is one (False where it returned None: no history)."""
    if i[I_RATE_STARTED] == 0 or now_ms <= i[I_RATE_FIRST_MS]:
        return False, 0.0
    tau_ms = f[F_RATE_TAU_MS]
    since_last = now_ms - i[I_RATE_LAST_MS]
    decayed = f[F_RATE_LEVEL] * math.exp(-(since_last if since_last > 0 else 0) / tau_ms)
    weight = tau_ms * -math.expm1(-(now_ms - i[I_RATE_FIRST_MS]) / tau_ms)
    return True, decayed / weight * 1000.0


@njit(cache=True)
def _median_and_mad(f, start, n, scratch, mad_to_std):
    """Median and MAD of a ring's values, and the MAD's stand-in when it is 0: with tick-sized prices
    more than half the returns are often exactly 0 and the MAD with them, so the mean absolute
    deviation, scaled so that mad_to_std x it is a standard deviation again (normal data: std =
    1.2533 x mean absolute deviation), stands in; summed in storage order, as the interpreted
    definition did."""
    for k in range(n):
        scratch[k] = f[start + k]
    # np.median selects (numba: quickselect on a copy) the middle value, or the two middle values
    # and their mean: the value sorting gives, without sorting the other 998.
    median = np.median(scratch[:n])
    total = 0.0
    for k in range(n):
        deviation = abs(f[start + k] - median)
        scratch[k] = deviation
        total += deviation
    mad = np.median(scratch[:n])
    if mad <= 0.0:
        mad = total / n * 1.2533 / mad_to_std
    return median, mad


@njit(cache=True)
def observe_batch(f, i, times, ids, prices, qtys, trade_times, buyer_maker, begin, out, status, layout, consts):
    """Features of trades[begin:], each against the windows before it, then added to them.

    Returns (next trade, why it stopped): DONE, or RECOMPUTE after a trade whose rolling window is
    due for its exact recomputation, or GROW before a trade that would overflow the ring of
    trade times. `layout` holds the float array's offsets (Layout), `consts` the definitions'
    constants (symbol_state.KERNEL_CONSTANTS)."""
    window = layout[0]
    p_buf, r_buf, qv_buf, bv_buf = layout[1], layout[2], layout[3], layout[4]
    sz_buf, sz_sorted, ls_buf, ls_sorted = layout[5], layout[6], layout[7], layout[8]
    rp_buf, ss_buf, as_buf, scratch_len = layout[9], layout[10], layout[11], layout[12]
    vwap_window, volume_window, log_size_window = layout[13], layout[14], layout[15]
    velocity_window, imbalance_window, rate_span_ms, robust_refresh = layout[16], layout[17], layout[18], layout[19]
    size_tail_quantile, size_tail_normal_z, min_velocity_span_s = consts[0], consts[1], consts[2]
    mad_to_std, min_return_std, rate_overdispersion, rate_z_prior = consts[3], consts[4], consts[5], consts[6]
    scratch = np.empty(scratch_len)
    capacity = times.shape[0]
    for t in range(begin, ids.shape[0]):
        if ids[t] <= i[I_LAST_TRADE_ID]:
            status[t] = SKIPPED
            out[t, OUT_COLUMNS - 1] = i[I_LAST_TRADE_ID]  # for the dead letter's reason
            continue
        if i[I_RT_N] == capacity:
            return t, GROW
        price = prices[t]
        qty = qtys[t]
        time_ms = trade_times[t]
        first = i[I_HAS_LAST_PRICE] == 0
        last_price = f[F_LAST_PRICE]
        log_return = 0.0 if first else math.log(price / last_price)
        base_total = f[F_BV_TOTAL]
        vwap = f[F_QV_TOTAL] / base_total if base_total > 0 else price
        median_size = _median_of_sorted(f, sz_sorted, i[I_SZ_N])

        # EventsInLast.add: the trailing second, this trade included
        n_rt, head_rt = i[I_RT_N], i[I_RT_HEAD]
        times[(head_rt + n_rt) % capacity] = time_ms
        n_rt += 1
        horizon = time_ms - rate_span_ms
        while n_rt and times[head_rt] <= horizon:
            head_rt = (head_rt + 1) % capacity
            n_rt -= 1
        i[I_RT_N], i[I_RT_HEAD] = n_rt, head_rt
        trades_last_second = n_rt

        has_baseline, rate_per_s = _rate_per_second(f, i, time_ms)
        baseline = rate_per_s * rate_span_ms / 1000.0 if has_baseline else 0.0
        time_gap_sec = 0.0 if first else (time_ms - i[I_LAST_TIME]) / 1000.0
        # How many typical inter-trade gaps this trade's gap spans, square-rooted, at least 1; typical
        # as of the previous trade (a silence must not shorten the gap it is measured against). The
        # return window mixes returns over typical gaps, and a price diffuses: over k gaps its
        # variance grows about k times, so a 0.2% move after a minute of silence is ordinary where the
        # same move between two trades 0.1 s apart is not. The return z-scores are divided by it to
        # ask whether a move is unusual for the time it took; fast trades keep their full score.
        duration = 1.0
        if i[I_RATE_STARTED]:
            has_rate, at_last = _rate_per_second(f, i, i[I_RATE_LAST_MS])
            if has_rate and not at_last <= 0.0:
                scaled = time_gap_sec * at_last
                duration = math.sqrt(scaled if scaled > 1.0 else 1.0)
        _rolling_sum_push(f, i, ss_buf, imbalance_window, -qty if buyer_maker[t] else qty,
                          F_SS_TOTAL, I_SS_N, I_SS_HEAD, I_SS_UPD)
        _rolling_sum_push(f, i, as_buf, imbalance_window, qty, F_AS_TOTAL, I_AS_N, I_AS_HEAD, I_AS_UPD)

        p_mean = f[F_P_MEAN]
        z_price, price_std = _zscore_and_std(f, i, F_P_MEAN, F_P_M2, I_P_N, price, min_return_std * p_mean)
        z_return, return_std = _zscore_and_std(f, i, F_R_MEAN, F_R_M2, I_R_N, log_return, min_return_std)

        # (r - median) / (1.4826 MAD) over the return window, refreshed every ROBUST_REFRESH trades.
        # Unlike the standard deviation, median and MAD are not inflated by the spikes we look for,
        # so an earlier spike in the window does not mask the next one.
        robust = 0.0
        n_r = i[I_R_N]
        if n_r >= 2:
            if i[I_ROBUST_AGE] >= robust_refresh:
                f[F_RET_MEDIAN], f[F_RET_MAD] = _median_and_mad(f, r_buf, n_r, scratch, mad_to_std)
                i[I_ROBUST_AGE] = 0
            i[I_ROBUST_AGE] += 1
            mad_scaled = mad_to_std * f[F_RET_MAD]
            scale = min_return_std if min_return_std > mad_scaled else mad_scaled
            robust = (log_return - f[F_RET_MEDIAN]) / scale

        # How far up the symbol's size distribution the log size lies: logs, because sizes are heavy-
        # tailed and their logs far less so; scaled by the upper tail (median to the 95th percentile
        # of the last 100 log sizes), because that is the side a volume spike is on and its weight
        # differs by market (real trades have whales every few minutes; a median/MAD scale sees only
        # the middle of the distribution). Quantiles interpolate linearly between closest ranks.
        volume_z = 0.0
        n_ls = i[I_LS_N]
        if n_ls >= 5:
            median = _median_of_sorted(f, ls_sorted, n_ls)
            position = size_tail_quantile * (n_ls - 1)
            low = int(position)
            if low + 1 >= n_ls:
                quantile = f[ls_sorted + n_ls - 1]
            else:
                quantile = f[ls_sorted + low] + (f[ls_sorted + low + 1] - f[ls_sorted + low]) * (position - low)
            spread = quantile - median
            if not spread <= 1e-12:
                volume_z = (math.log(qty) - median) / (spread / size_tail_normal_z)

        # % change since the oldest of the last VELOCITY_WINDOW trades, per second they took (at least
        # MIN_VELOCITY_SPAN_S: a burst inside one millisecond is not an infinite velocity)
        velocity = 0.0
        if i[I_RP_N]:
            oldest = i[I_RP_HEAD]
            span_s = (time_ms - i[I_SCALARS + oldest]) / 1000.0  # the ring's times follow the scalars
            span_s = min_velocity_span_s if min_velocity_span_s > span_s else span_s
            velocity = (price / f[rp_buf + oldest] - 1.0) * 100.0 / span_s

        abs_total = f[F_AS_TOTAL]
        out[t, 0] = z_price
        out[t, 1] = z_return / duration
        out[t, 2] = robust / duration
        out[t, 3] = 0.0 if first else (price / last_price - 1.0) * 100.0
        out[t, 4] = time_gap_sec
        out[t, 5] = (price / vwap - 1.0) * 100.0
        out[t, 6] = qty / median_size if median_size > 0 else 1.0
        out[t, 7] = volume_z
        out[t, 8] = velocity
        out[t, 9] = trades_last_second / baseline if has_baseline and baseline else 1.0
        # The rate z-score: trades cluster (one taker order filled by many makers prints many trades
        # at once), so counts vary far more than a Poisson count would: the variance is
        # RATE_OVERDISPERSION times the mean, and the prior keeps an idle market from calling a
        # handful of trades a burst.
        out[t, 10] = (trades_last_second - baseline) / math.sqrt(rate_overdispersion * baseline + rate_z_prior) \
            if has_baseline else 0.0
        out[t, 11] = f[F_SS_TOTAL] / abs_total if abs_total > 0 else 0.0
        out[t, 12] = log_return
        out[t, 13] = f[F_P_MEAN]
        out[t, 14] = price_std
        out[t, 15] = f[F_R_MEAN]
        out[t, 16] = return_std
        out[t, 17] = i[I_P_N]

        _rolling_stats_push(f, i, p_buf, window, price, F_P_MEAN, F_P_M2, I_P_N, I_P_HEAD, I_P_UPD)
        if not first:
            _rolling_stats_push(f, i, r_buf, window, log_return, F_R_MEAN, F_R_M2, I_R_N, I_R_HEAD, I_R_UPD)
        _rolling_sum_push(f, i, qv_buf, vwap_window, price * qty, F_QV_TOTAL, I_QV_N, I_QV_HEAD, I_QV_UPD)
        _rolling_sum_push(f, i, bv_buf, vwap_window, qty, F_BV_TOTAL, I_BV_N, I_BV_HEAD, I_BV_UPD)
        _rolling_median_push(f, i, sz_buf, sz_sorted, volume_window, qty, I_SZ_N, I_SZ_HEAD)
        _rolling_median_push(f, i, ls_buf, ls_sorted, log_size_window, math.log(qty), I_LS_N, I_LS_HEAD)
        # recent prices: (time, price) of the last VELOCITY_WINDOW trades
        n_rp, head_rp = i[I_RP_N], i[I_RP_HEAD]
        slot = (head_rp + n_rp) % velocity_window
        if n_rp == velocity_window:
            slot = head_rp
            i[I_RP_HEAD] = (head_rp + 1) % velocity_window
        else:
            i[I_RP_N] = n_rp + 1
        f[rp_buf + slot] = price
        i[I_SCALARS + slot] = time_ms
        # DecayingRate.add
        if i[I_RATE_STARTED] == 0:
            i[I_RATE_STARTED] = 1
            i[I_RATE_FIRST_MS] = time_ms
            i[I_RATE_LAST_MS] = time_ms
        since_last = time_ms - i[I_RATE_LAST_MS]
        f[F_RATE_LEVEL] = f[F_RATE_LEVEL] * math.exp(-(since_last if since_last > 0 else 0) / f[F_RATE_TAU_MS]) + 1.0
        if time_ms > i[I_RATE_LAST_MS]:
            i[I_RATE_LAST_MS] = time_ms
        f[F_LAST_PRICE] = price
        i[I_HAS_LAST_PRICE] = 1
        i[I_LAST_TRADE_ID] = ids[t]
        i[I_LAST_TIME] = time_ms
        i[I_TRADES_SEEN] += 1
        if i[I_P_UPD] >= window or i[I_R_UPD] >= window:
            return t + 1, RECOMPUTE
    return ids.shape[0], DONE

