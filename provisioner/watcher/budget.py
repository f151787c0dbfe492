"""A per-provider request budget: a token bucket that slows down when the provider says "too fast"."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

# Error codes (and HTTP statuses as codes) a provider uses to say "slow down".
RATE_LIMIT_CODES = frozenset(
    {"http_429", "INTERVAL_CONCURRENT_REQUESTS_ERROR", "TRY_AGAIN_LATER", "TIME_INTERVAL_ERROR"}
)
SLOWEST_FRACTION = 1 / 32  # a rate-limited bucket never drops below this share of its rate
RECOVERY = 1.1  # each successful call after a slow-down raises the rate by 10 %


class TokenBucket:
    """``rate`` requests per second on average, bursts of up to ``burst``.

    `slow_down()` (a rate-limit reply) halves the rate and empties the bucket; `recover()` (a
    normal reply) raises it back step by step to the configured rate.
    """

    def __init__(self, rate: float, burst: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_rate = rate
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self._clock = clock
        self._at = clock()

    def _refill(self) -> None:
        now = self._clock()
        self.tokens = min(self.burst, self.tokens + (now - self._at) * self.rate)
        self._at = now

    def take(self, stop: threading.Event) -> bool:
        """Wait for a token; False when ``stop`` was set meanwhile."""
        while True:
            self._refill()
            if self.tokens >= 1:
                self.tokens -= 1
                return True
            if stop.wait((1 - self.tokens) / self.rate):
                return False

    def slow_down(self) -> None:
        self._refill()
        self.rate = max(self.max_rate * SLOWEST_FRACTION, self.rate / 2)
        self.tokens = 0.0

    def recover(self) -> None:
        self.rate = min(self.max_rate, self.rate * RECOVERY)
