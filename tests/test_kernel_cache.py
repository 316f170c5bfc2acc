"""The compiled features are imported from a copy of their source named by its content, so that
numba's cache beside it serves every process on the machine (flink_jobs/features/kernel_cache.py):
Flink unpacks the job's Python files into a new directory per job, where a cache would always be
empty and every worker would compile again."""
import os
import subprocess
import sys

import pytest

from config import PROJECT_DIR
from flink_jobs.features import kernel_cache


def warm_up_in_a_new_process(cache_dir) -> str:
    result = subprocess.run([sys.executable, "-m", "flink_jobs.features.kernel_cache"], cwd=PROJECT_DIR,
                            env={**os.environ, "FEATURES_CACHE_DIR": str(cache_dir)},
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout


def cached_machine_code(cache_dir) -> dict:
    folder = os.path.join(cache_dir, "__pycache__")
    return {name: os.stat(os.path.join(folder, name)).st_mtime_ns for name in os.listdir(folder)}


def test_a_second_process_loads_the_machine_code_the_first_compiled(tmp_path):
    first = warm_up_in_a_new_process(tmp_path)
    copies = [name for name in os.listdir(tmp_path) if name.endswith(".py")]
    assert len(copies) == 1 and copies[0].startswith("kernel_") and str(tmp_path) in first
    with open(os.path.join(PROJECT_DIR, "flink_jobs", "features", "kernel.py"), "rb") as source, \
            open(tmp_path / copies[0], "rb") as copy:
        assert copy.read() == source.read()
    compiled = cached_machine_code(tmp_path)
    assert any(name.endswith(".nbc") for name in compiled)

    warm_up_in_a_new_process(tmp_path)

    assert cached_machine_code(tmp_path) == compiled  # nothing compiled or written again


def test_a_changed_kernel_is_a_new_file(tmp_path, monkeypatch):
    monkeypatch.setenv("FEATURES_CACHE_DIR", str(tmp_path))
    paths = {kernel_cache._stable_copy(source, kernel_cache.module_name(source).rsplit(".", 1)[1] + ".py")
             for source in (b"A = 1\n", b"A = 2\n", b"A = 1\n")}
    assert len(paths) == 2 and all(os.path.dirname(p) == str(tmp_path) for p in paths)


def test_without_a_writable_cache_directory_the_kernel_is_imported_where_it_is(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("FEATURES_CACHE_DIR", str(blocker / "cache"))  # under a file: cannot be made
    source_name = kernel_cache.module_name(kernel_cache.kernel_source())
    monkeypatch.delitem(sys.modules, source_name, raising=False)

    module = kernel_cache.load_kernel()

    assert module.__name__ == "flink_jobs.features.kernel"
    assert source_name not in sys.modules


@pytest.mark.parametrize("xdg, expected", [("/x/cache", "/x/cache/crypto-anomaly-detector"),
                                           ("", os.path.expanduser("~/.cache/crypto-anomaly-detector"))])
def test_the_default_cache_directory_follows_xdg(monkeypatch, xdg, expected):
    monkeypatch.delenv("FEATURES_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", xdg)
    assert kernel_cache.cache_dir() == expected


def test_the_kernel_imports_in_a_python_worker_whose_print_pyflink_replaced():
    """PyFlink's worker sets builtins.print to a bound method (beam_sdk_worker_main.CustomPrint),
    which numba's import cannot register; the job's workers failed at their first bundle."""
    code = """
import builtins

class CustomPrint:  # as pyflink.fn_execution.beam.beam_sdk_worker_main does
    def __init__(self, _print):
        self._print = _print

    def print(self, *args, **kwargs):
        self._print("logged:", *args, **kwargs)

builtins.print = CustomPrint(print).print
from flink_jobs.features.symbol_state import SymbolState, observe_all
from flink_jobs.trades import Trade
observe_all(SymbolState(2), [Trade("X", 1, 1.0, 1.0, 1, 1, False)])
print("the worker's print is back")
"""
    result = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_DIR, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "logged: the worker's print is back\n"
