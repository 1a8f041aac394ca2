"""Rate-limited logging: a broker that is down makes every Kafka client of a process (aiokafka's and
librdkafka's) log each failed reconnect, thousands of lines within seconds. ``RateLimit`` lets the
first line of each kind through once per period and counts the rest into the next one it lets through.

A kind is the logger, the level and the message with its numbers masked (ports, node ids, timings
and counters differ between otherwise identical reconnect errors).
"""

from __future__ import annotations

import logging
import re
import threading
import time

_NUMBERS = re.compile(r"\d+")


class RateLimit(logging.Filter):
    """At most one record of a kind per ``period_s`` (records below ``min_level`` all pass)."""

    def __init__(self, period_s: float = 10.0, min_level: int = logging.WARNING,
                 max_kinds: int = 1000) -> None:
        super().__init__()
        self.period_s, self.min_level, self.max_kinds = period_s, min_level, max_kinds
        self._lock = threading.Lock()  # librdkafka logs from its own threads
        self._kinds: dict[tuple[str, int, str], tuple[float, int]] = {}  # -> (window start, suppressed)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < self.min_level:
            return True
        try:
            text = record.getMessage()
        except Exception:  # a malformed record: not ours to judge
            return True
        kind = (record.name, record.levelno, _NUMBERS.sub("#", text)[:300])
        now = time.monotonic()
        with self._lock:
            start, suppressed = self._kinds.get(kind, (float("-inf"), 0))
            if now - start < self.period_s:
                self._kinds[kind] = (start, suppressed + 1)
                return False
            if len(self._kinds) >= self.max_kinds:
                self._kinds = {k: v for k, v in self._kinds.items() if now - v[0] < self.period_s}
            self._kinds[kind] = (now, 0)
        if suppressed:
            record.msg, record.args = f"{text} (and {suppressed} more like it in {now - start:.0f} s)", ()
        return True


def rate_limit_root_handlers(period_s: float = 10.0) -> RateLimit:
    """Put one ``RateLimit`` on every handler of the root logger (where every logger's records end up)."""
    limit = RateLimit(period_s)
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RateLimit) for f in handler.filters):
            handler.addFilter(limit)
    return limit
