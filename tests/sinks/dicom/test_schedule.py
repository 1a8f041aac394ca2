"""sinks.dicom.schedule: retrieval windows and the throttle."""

from __future__ import annotations

from datetime import datetime

import pytest

from sinks.dicom import schedule


def test_overnight_and_weekend_windows() -> None:
    w = schedule.parse_windows("mon-fri 19:00-07:00; sat-sun 00:00-24:00")
    tue = datetime(2026, 11, 24)  # a Tuesday
    assert not schedule.is_open(w, tue.replace(hour=12))
    assert schedule.is_open(w, tue.replace(hour=20))
    assert schedule.is_open(w, tue.replace(hour=6, minute=59))
    assert not schedule.is_open(w, tue.replace(hour=7))
    assert schedule.is_open(w, datetime(2026, 11, 28, 13))  # Saturday
    assert schedule.next_open(w, tue.replace(hour=12)) == tue.replace(hour=19)
    # Monday 06:00 would be the tail of a Sunday-night window, and "mon-fri 19:00-07:00" has none
    assert not schedule.is_open(w, datetime(2026, 11, 30, 6))
    assert schedule.parse_windows("") == [] and schedule.is_open([], tue)


def test_monday_early_morning_belongs_to_sunday_only_if_configured() -> None:
    w = schedule.parse_windows("mon-fri 19:00-07:00")
    assert not schedule.is_open(w, datetime(2026, 11, 30, 6))  # Monday 06:00, Sunday had no window
    assert schedule.is_open(w, datetime(2026, 11, 29, 6)) is False  # Sunday 06:00
    assert schedule.is_open(w, datetime(2026, 11, 28, 6))  # Saturday 06:00: Friday night's window


def test_bad_window_spec_is_an_error() -> None:
    with pytest.raises(ValueError):
        schedule.parse_windows("mon 25:00-07:00")


def test_pacer_spaces_starts_by_images_and_studies() -> None:
    p = schedule.Pacer(images_per_minute=600)  # 10 images/s
    assert p.reserve(20, now=0.0) == 0.0
    assert p.reserve(5, now=0.0) == pytest.approx(2.0)  # after the 20 images of the first study
    assert p.reserve(5, now=10.0) == 0.0
    s = schedule.Pacer(studies_per_hour=120)  # one every 30 s
    assert s.reserve(1, now=0.0) == 0.0 and s.reserve(1, now=1.0) == pytest.approx(29.0)
    assert schedule.Pacer().reserve(100) == 0.0
