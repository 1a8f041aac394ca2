"""When the worker may talk to a PACS: allowed time windows and a throttle (pure, no I/O).

Windows are data, e.g. ``"mon-fri 19:00-07:00; sat-sun 00:00-24:00"``: each entry is days
(``mon``, ``mon-fri``, ``sat,sun``, ``*``) and a start-end time (``HH:MM`` or ``HH:MM:SS``) in the
PACS's local time zone; an end before the start runs past midnight (into the next day). An empty
spec means always open. A move that has started is not interrupted at the end of a window; no new
study starts outside one.

The throttle paces study starts: the next C-MOVE may start only after ``3600 / studies_per_hour``
seconds and after ``images * 60 / images_per_minute`` seconds (images of the previous study, from
C-FIND) since the previous start. Over any run the rate stays within both limits.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from datetime import time as dtime

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class Window:
    days: frozenset[int]  # 0 = Monday
    start: timedelta  # since midnight
    end: timedelta  # since midnight; <= start means "next day"

    def contains(self, now: datetime) -> bool:
        midnight = datetime.combine(now.date(), dtime(0), tzinfo=now.tzinfo)
        since = now - midnight
        today, yesterday = now.weekday(), (now.weekday() - 1) % 7
        if self.end > self.start:
            return today in self.days and self.start <= since < self.end
        # overnight: from start today to midnight, or from midnight to end (started yesterday)
        return (today in self.days and since >= self.start) or (yesterday in self.days and since < self.end)


def _parse_time(text: str) -> timedelta:
    parts = [int(p) for p in text.strip().split(":")]
    while len(parts) < 3:
        parts.append(0)
    h, m, s = parts
    if not (0 <= h <= 24 and 0 <= m < 60 and 0 <= s < 60) or (h == 24 and (m or s)):
        raise ValueError(f"bad time {text!r}")
    return timedelta(hours=h, minutes=m, seconds=s)


def _parse_days(text: str) -> frozenset[int]:
    text = text.strip().lower()
    if text in ("*", "daily", "all"):
        return frozenset(range(7))
    out: set[int] = set()
    for part in text.split(","):
        if "-" in part:
            a, b = (DAYS.index(x.strip()[:3]) for x in part.split("-", 1))
            i = a
            while True:
                out.add(i)
                if i == b:
                    break
                i = (i + 1) % 7
        else:
            out.add(DAYS.index(part.strip()[:3]))
    return frozenset(out)


def parse_windows(spec: str) -> list[Window]:
    windows = []
    for entry in spec.replace("\n", ";").split(";"):
        entry = entry.strip()
        if not entry:
            continue
        days, _, span = entry.rpartition(" ")
        start, end = span.split("-", 1)
        windows.append(Window(_parse_days(days or "*"), _parse_time(start), _parse_time(end)))
    return windows


def is_open(windows: list[Window], now: datetime) -> bool:
    return not windows or any(w.contains(now) for w in windows)


def next_open(windows: list[Window], now: datetime, step: timedelta = timedelta(seconds=1),
              horizon: timedelta = timedelta(days=8)) -> datetime | None:
    """``now`` if open, else the first second a window opens (None if never)."""
    if is_open(windows, now):
        return now
    # candidate instants: each window start on each of the coming days
    candidates = []
    for d in range(0, horizon.days + 1):
        day = datetime.combine(now.date() + timedelta(days=d), dtime(0), tzinfo=now.tzinfo)
        for w in windows:
            t = day + w.start
            if t > now and t.weekday() in w.days:
                candidates.append(t)
    return min(candidates) if candidates else None


class Pacer:
    """Spaces study starts so that studies/hour and images/minute stay within their limits (0 = no limit)."""

    def __init__(self, studies_per_hour: float = 0.0, images_per_minute: float = 0.0) -> None:
        self.sph = studies_per_hour
        self.ipm = images_per_minute
        self._next = 0.0
        self._lock = threading.Lock()

    @property
    def active(self) -> bool:
        return self.sph > 0 or self.ipm > 0

    def reserve(self, images: int, now: float | None = None) -> float:
        """Book the next start for a study of ``images`` instances; returns seconds to wait before it."""
        if not self.active:
            return 0.0
        with self._lock:
            t = time.monotonic() if now is None else now
            start = max(t, self._next)
            gap = 0.0
            if self.sph > 0:
                gap = max(gap, 3600.0 / self.sph)
            if self.ipm > 0:
                gap = max(gap, max(images, 1) * 60.0 / self.ipm)
            self._next = start + gap
            return start - t
