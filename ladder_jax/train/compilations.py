"""Counts XLA compilations of this process (jax.monitoring events), for the ladder's report.

jax records BACKEND_COMPILE for every executable it builds, whether XLA compiles it or the
persistent compilation cache returns it; a cache hit is recorded apart. So
compiled = backend events - cache hits, and cache_hits is what the persistent cache saved.
"""

from __future__ import annotations

import threading

__all__ = ["CompileCounter", "counter"]

_BACKEND_COMPILE = "/jax/core/compile/backend_compile_duration"
_CACHE_HIT = "/jax/compilation_cache/cache_hits"


class CompileCounter:
    """Running totals; snapshot() -> {"compiled": n, "cache_hits": n, "compile_seconds": s}."""

    def __init__(self):
        self._lock = threading.Lock()
        self.backend = 0
        self.cache_hits = 0
        self.seconds = 0.0
        self._installed = False

    def install(self) -> "CompileCounter":
        if not self._installed:
            import jax

            jax.monitoring.register_event_duration_secs_listener(self.on_duration)
            jax.monitoring.register_event_listener(self.on_event)
            self._installed = True
        return self

    def on_duration(self, event: str, seconds: float, **_) -> None:
        if event == _BACKEND_COMPILE:
            with self._lock:
                self.backend += 1
                self.seconds += seconds

    def on_event(self, event: str, **_) -> None:
        if event == _CACHE_HIT:
            with self._lock:
                self.cache_hits += 1

    def snapshot(self) -> dict:
        with self._lock:
            return {"compiled": self.backend - self.cache_hits, "cache_hits": self.cache_hits,
                    "compile_seconds": round(self.seconds, 1)}


counter = CompileCounter()  # one per process: jax listeners cannot be removed
