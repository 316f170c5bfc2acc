"""The Python worker's garbage collector, set for a stream of short-lived records.

CPython's cycle collector starts a young collection every 700 new containers (tuples, lists,
objects) and, every so often, a full one that walks every tracked object of the process. A
Python worker of this job creates several containers per trade (the trade, its features, its
row), and its heap is mostly what it imported at start: PyFlink, Beam, pandas, pyarrow,
onnxruntime, numba and the model. Measured in the throughput benchmark with the defaults, the
collector took about a quarter of the workers' CPU, most of it in full collections of about
0.2 s each (docs/performance.md, "Eleventh round").

Two settings, once the operators are open:
1. `gc.freeze()`: everything that exists then (modules, the model, the compiled kernel, the
   operators) moves to the permanent generation, which no later collection walks. None of it is
   garbage: it lives as long as the worker.
2. A larger first-generation threshold (YOUNG_COLLECTION_EVERY containers instead of 700), so
   collections come less often. The records themselves are freed by reference counting as
   before, whatever the collector does; only garbage in reference cycles waits longer for it.
"""

from __future__ import annotations

import gc
import logging

log = logging.getLogger(__name__)

# New containers between young collections (CPython's default: 700). Per trade a worker makes a
# handful, so the default collects every ~100 trades; this every few thousand.
YOUNG_COLLECTION_EVERY = 20_000
# Young collections per middle one, and middle per full one: CPython's defaults (10, 10).
OLDER_GENERATIONS = (10, 10)


def settle_after_open() -> None:
    """Called by every operator's open(): freezes what the worker holds now and sets the
    thresholds. Calling it again (the next operator's open) freezes what that one added."""
    gc.freeze()
    threshold = (YOUNG_COLLECTION_EVERY, *OLDER_GENERATIONS)
    if gc.get_threshold() != threshold:
        gc.set_threshold(*threshold)
        log.info("garbage collector: %d objects frozen, thresholds %s", gc.get_freeze_count(), threshold)
