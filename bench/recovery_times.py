"""Recovery times of ``radstream worker`` after kill -9, on a private single broker.

Results: docs/operations.md, section "Recovery".

    PYTHONPATH=. python bench/recovery_times.py [--rounds 3]

* resume: kill -9 a streaming worker, start it again; seconds from the new process's start to the
  findings of a report sent as it starts. Measured with the defaults (static membership, 10 s session)
  and with the settings before them (no group.instance.id, a 60 s session) in the same run;
* log lines the worker writes in the first 15 s without its broker (kill -9 of the broker);
* seconds from SIGTERM to exit with the broker killed.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from radstream.config import Settings
from radstream.stack import kafka
from streams.topics import create_topics
from tests.radstream.recovery_helpers import Proc, Tail, keys, produce_reports, resume_time, worker_settings

BASELINE = {"instance_id": "-", "session_timeout_s": 60.0, "heartbeat_s": 3.0}


def fresh(base: Settings, tmp: Path, **worker: object) -> Settings:
    prefix = f"t{uuid.uuid4().hex[:6]}."
    s = base.replace(topics={f.name: prefix + getattr(base.topics, f.name)
                             for f in dataclasses.fields(base.topics)})
    create_topics(s.kafka, s.topics)
    d = tmp / prefix.strip(".")
    d.mkdir()
    return worker_settings(s, d, **worker)


def outage(base: Settings, tmp: Path, kdir: Path) -> tuple[int, float]:
    """(log lines in 15 s without a broker, seconds from SIGTERM to exit without a broker)."""
    s = fresh(base, tmp)
    tail = Tail(s, s.topics.findings)
    proc = Proc(s, tmp / "outage.log", "worker")
    try:
        produce_reports(s, ["O1"])
        assert tail.wait_for(keys(["O1"]), 90)
        before = len(proc.text().splitlines())
        st = kafka.running(kdir)
        assert st is not None and st.pid
        os.kill(st.pid, signal.SIGKILL)
        time.sleep(15)
        lines = len(proc.text().splitlines()) - before
        started = time.monotonic()
        proc.popen.send_signal(signal.SIGTERM)
        proc.popen.wait(120)
        return lines, time.monotonic() - started
    finally:
        proc.stop()
        tail.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="recovery-times-"))
    kdir = tmp / "kafka"
    st = kafka.start_kafka(kdir, tie_to_parent=True)
    base = Settings(state_dir=str(tmp)).replace(kafka={"bootstrap": st.bootstrap})
    try:
        for name, worker in (("defaults", {}), ("before (dynamic, 60 s session)", BASELINE)):
            times = []
            for _ in range(args.rounds):
                try:
                    times.append(resume_time(fresh(base, tmp, **worker), tmp))
                except AssertionError:  # no findings within resume_time's timeout (120 s)
                    times.append(float("inf"))
            print(f"resume after kill -9, {name}: " + ", ".join(f"{t:.1f}" for t in times)
                  + f" s (median {statistics.median(times):.1f}; inf: not within 120 s)", flush=True)
        lines, exit_s = outage(base, tmp, kdir)
        print(f"log lines in 15 s without a broker: {lines}")
        print(f"SIGTERM to exit without a broker: {exit_s:.1f} s")
    finally:
        kafka.stop_kafka(kdir)


if __name__ == "__main__":
    main()
