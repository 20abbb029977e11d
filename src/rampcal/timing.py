"""Per-step wall times and memory, collected from stpipe's log records."""

from __future__ import annotations

import logging
import resource
import sys
import threading
import time

__all__ = ["StepTimer", "peak_rss_mb", "rss_mb"]


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (MB)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024.0**2 if sys.platform == "darwin" else peak / 1024.0


def rss_mb() -> float:
    """Current resident set size of this process (MB)."""
    import psutil

    return psutil.Process().memory_info().rss / 1024.0**2


class StepTimer(logging.Handler):
    """Log handler timing every stpipe step between its 'running' and 'done' records.

    Use as a context manager. :attr:`times` maps step name → seconds and
    :attr:`start_mb` step name → RSS when it started, and
    :attr:`peak_mb` step name → the highest RSS sampled while the step ran (sampled
    every ``interval`` seconds by a background thread; innermost step wins).
    """

    def __init__(self, interval: float = 0.02) -> None:
        super().__init__(level=logging.INFO)
        self.times: dict[str, float] = {}
        self.peak_mb: dict[str, float] = {}
        self.start_mb: dict[str, float] = {}
        self._start: dict[str, float] = {}
        self._stack: list[str] = []
        self._interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.msg if isinstance(record.msg, str) else ""
        if not record.args:
            return
        name = str(record.args[0])
        if msg.startswith("Step %s running"):
            self._start[name] = time.perf_counter()
            self.start_mb.setdefault(name, rss_mb())
            self._stack.append(name)
        elif msg.startswith("Step %s done") and name in self._start:
            elapsed = time.perf_counter() - self._start.pop(name)
            self.times[name] = self.times.get(name, 0.0) + elapsed
            if name in self._stack:
                self._stack.remove(name)

    def _sample(self) -> None:
        while not self._stop.wait(self._interval):
            if self._stack:
                name = self._stack[-1]
                self.peak_mb[name] = max(self.peak_mb.get(name, 0.0), rss_mb())

    def __enter__(self) -> StepTimer:
        logger = logging.getLogger("stpipe")
        self._saved_level = logger.level
        if logger.getEffectiveLevel() > logging.INFO:
            logger.setLevel(logging.INFO)
        logger.addHandler(self)
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        logger = logging.getLogger("stpipe")
        logger.removeHandler(self)
        logger.setLevel(self._saved_level)
