"""The Python workers' garbage collector (flink_jobs/worker_gc.py): set by every operator's open(),
the heap of the start frozen, and garbage in reference cycles still collected afterwards.

Each case runs in a fresh interpreter: freezing and thresholds are process-wide, and the point is
what an operator's open() does to a process that has not been touched yet."""
import json
import os
import subprocess
import sys
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_python(code: str) -> dict:
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_every_operator_open_settles_the_collector(tmp_path):
    seen = run_python(f"""
        import gc, json
        import config as app_config
        from flink_jobs import worker_gc
        from flink_jobs.alerts.sink import AlertSink
        from flink_jobs.operators import ApplyCooldown, ParseTradeBatches, ScoreTrades, StoreSink
        from tests.test_score_batches import KeyedValue, Metrics, RuntimeContext

        class FunctionContext:
            def get_metric_group(self):
                return Metrics()

        class SinkContext(RuntimeContext):
            def get_list_state(self, descriptor):
                return []

        cfg = app_config.load({{"CHDB_PATH": {str(tmp_path / "chdb")!r}}}, detection={{"methods": ("zscore",)}})
        opened = {{}}
        for name, operator, context in [
                ("parse", ParseTradeBatches(cfg.detection), FunctionContext()),
                ("score", ScoreTrades(cfg.detection, bars=False), RuntimeContext(KeyedValue())),
                ("cooldown", ApplyCooldown(cfg.detection), RuntimeContext(KeyedValue())),
                ("store", StoreSink(cfg.store), SinkContext(KeyedValue())),
                ("alerts", AlertSink(cfg.alerts), RuntimeContext(KeyedValue()))]:
            gc.unfreeze()
            gc.set_threshold(700, 10, 10)
            operator.open(context)
            opened[name] = {{"threshold": list(gc.get_threshold()), "frozen": gc.get_freeze_count()}}
            if name == "alerts":
                operator.close()  # its sender's thread
        print(json.dumps({{"opened": opened, "expected": [worker_gc.YOUNG_COLLECTION_EVERY,
                                                          *worker_gc.OLDER_GENERATIONS]}}))
    """)
    assert set(seen["opened"]) == {"parse", "score", "cooldown", "store", "alerts"}
    for name, after_open in seen["opened"].items():
        assert after_open["threshold"] == seen["expected"], name
        # The modules, the model and the operators it had loaded: tens of thousands of objects.
        assert after_open["frozen"] > 10_000, name


def test_cyclic_garbage_made_after_the_freeze_is_still_collected():
    seen = run_python("""
        import gc, json, weakref
        from flink_jobs.worker_gc import settle_after_open

        class Node:
            pass

        before = Node(); before.me = before  # a cycle alive at the freeze: frozen, never walked
        settle_after_open()
        frozen_with_it = gc.get_freeze_count()
        after = Node(); after.me = after     # a cycle made while records flow
        gone = weakref.ref(after)
        del after
        collected = gc.collect()
        print(json.dumps({"enabled": gc.isenabled(), "collected": collected, "alive": gone() is not None,
                          "frozen": frozen_with_it}))
    """)
    assert seen["enabled"]
    assert not seen["alive"], "a reference cycle made after open() must still be freed"
    assert seen["collected"] >= 1
    assert seen["frozen"] > 0
