"""Imports the compiled features (kernel.py) so that their machine code is reused across processes.

numba caches a compiled function beside its source file, keyed by the file's path and
modification time. The job's Python files reach the workers in a zip that Flink unpacks into a
new directory for every job, so a cache beside them is always empty: every Python worker of every
job would compile the kernel again, about 9 s of a core at each start (docs/performance.md). The
kernel is therefore imported from a copy of its source named by its content hash, in
FEATURES_CACHE_DIR (default: $XDG_CACHE_HOME or ~/.cache, then crypto-anomaly-detector): the same
code is the same file in every job on the machine, with its cache beside it, and a changed kernel
is a new file. Where that directory cannot be written, the kernel is imported where it is and
compiled in each process, with a warning.
"""
from __future__ import annotations

import builtins
import contextlib
import hashlib
import importlib.util
import logging
import os
import pkgutil
import sys
from types import BuiltinFunctionType, ModuleType

log = logging.getLogger(__name__)


def cache_dir() -> str:
    configured = os.environ.get("FEATURES_CACHE_DIR")
    if configured:
        return configured
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "crypto-anomaly-detector")


def kernel_source() -> bytes:
    return pkgutil.get_data("flink_jobs.features", "kernel.py")  # works from a zip as well


def module_name(source: bytes) -> str:
    return "flink_jobs.features.kernel_" + hashlib.sha256(source).hexdigest()[:16]


def load_kernel() -> ModuleType:
    with _builtin_print():
        return _load_kernel()


@contextlib.contextmanager
def _builtin_print():
    """The built-in print while numba is imported. PyFlink's Python worker replaces builtins.print
    with a bound method that logs (beam_sdk_worker_main.CustomPrint); numba, when imported,
    registers print under the module the function claims to come from, and raises AttributeError
    for that method. The worker's print is put back right after."""
    current = builtins.print
    original = getattr(getattr(current, "__self__", None), "_print", None)
    if isinstance(current, BuiltinFunctionType) or not isinstance(original, BuiltinFunctionType):
        yield
        return
    builtins.print = original
    try:
        yield
    finally:
        builtins.print = current


def _load_kernel() -> ModuleType:
    source = kernel_source()
    name = module_name(source)
    if name in sys.modules:
        return sys.modules[name]
    try:
        path = _stable_copy(source, name.rsplit(".", 1)[1] + ".py")
    except OSError as error:
        log.warning("compiled features: no cache directory (%s); compiling in this process", error)
        from flink_jobs.features import kernel

        return kernel
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except RuntimeError as error:  # numba: "cannot cache function ...: no locator available"
        del sys.modules[name]
        log.warning("compiled features: cannot cache in %s (%s); compiling in this process", path, error)
        from flink_jobs.features import kernel

        return kernel
    return module


def _stable_copy(source: bytes, file_name: str) -> str:
    folder = cache_dir()
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, file_name)
    if not os.path.exists(path):
        # Several workers start at once: each writes its own file and renames it into place.
        partial = f"{path}.{os.getpid()}.partial"
        with open(partial, "wb") as handle:
            handle.write(source)
        os.replace(partial, path)
    return path


def warm_up() -> str:
    """Compiles the kernel into the cache now (make setup, image builds) rather than in the first
    job's workers; returns where the kernel was imported from."""
    from flink_jobs.features.symbol_state import SymbolState, kernel, observe_all
    from flink_jobs.trades import Trade

    observe_all(SymbolState(2), [Trade("WARMUP", i, 1.0 + i, 1.0, i, i, i % 2 == 0) for i in range(4)])
    return kernel.__file__


if __name__ == "__main__":
    import time

    started = time.monotonic()
    where = warm_up()
    print(f"compiled features ready in {time.monotonic() - started:.1f} s: {where}")
