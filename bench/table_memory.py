"""Memory of the NLP agent's report-versions table: restore N reports from a changelog, per store, one go.

    PYTHONPATH=. python bench/table_memory.py [--reports 100000] [--text 1170] [--base-tree DIR]

A local Kafka broker (started here) holds a changelog of N keys, each the version history of one report
(``[[1, "final", <text of --text characters>]]``, as the NLP agent writes it). Each store restores it
in a child process of its own (``ChangelogTable.restore``, the path a starting worker takes), then reads
every key once in random order (``get``, as the agent does per report). Reported per store: restore
time, get time per key, the disk store's file size, the RSS the child still holds afterwards per
report, and its peak RSS growth (ru_maxrss; the restore's consumer buffers, up to librdkafka's queue
limits, count there), both minus its RSS before the restore. Stores: ``disk`` (the default: an
unlinked SQLite file), ``memory`` (dicts of JSON bytes) and, with ``--base-tree`` (e.g. ``git archive
<commit> | tar -x -C DIR``), that tree's table (dicts of parsed JSON before the disk store).
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def child(bootstrap: str, topic: str, n: int, store: str, state: str) -> None:
    from confluent_kafka import Producer

    from streams.agents.table import ChangelogTable
    from streams.config import KafkaConfig

    kafka = KafkaConfig(bootstrap=bootstrap)
    producer = Producer({"bootstrap.servers": bootstrap})
    args = () if store == "base" else (None if store == "memory" else Path(state) / "agents",)
    table = ChangelogTable(kafka, topic, producer, *args)
    before = rss_kib()
    started = time.perf_counter()
    table.restore([0])
    restore_s = time.perf_counter() - started
    keys = [f"default|ACC{i:07d}".encode() for i in range(n)]
    random.Random(1).shuffle(keys)
    started = time.perf_counter()
    found = sum(table.get(0, k) is not None for k in keys)
    get_s = time.perf_counter() - started
    del keys
    gc.collect()
    after = rss_kib()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    db = getattr(getattr(table, "_store", None), "_db", None)  # the SQLite store's file size
    disk = 0
    if db is not None:
        disk = db.execute("PRAGMA page_count").fetchone()[0] * db.execute("PRAGMA page_size").fetchone()[0]
    print(json.dumps({"store": store, "found": found, "restore_s": restore_s, "get_us": get_s / n * 1e6,
                      "held_per_report": (after - before) * 1024 / n, "peak_mb": (peak - before) / 1024,
                      "disk_per_report": disk / n}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reports", type=int, default=100_000)
    ap.add_argument("--text", type=int, default=1170)
    ap.add_argument("--base-tree", metavar="DIR")
    ap.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        bootstrap, topic, n, store, state = args.child
        child(bootstrap, topic, int(n), store, state)
        return
    sys.path.insert(0, str(REPO))
    from confluent_kafka import Producer

    from radstream.stack import kafka
    from streams.agents import create_changelogs
    from streams.config import KafkaConfig

    tmp = Path(tempfile.mkdtemp(prefix="radstream-bench-table-"))
    bootstrap = kafka.start_kafka(tmp / "kafka", tie_to_parent=True).bootstrap
    try:
        topic = "bench-worker-report-versions-changelog"
        create_changelogs(KafkaConfig(bootstrap=bootstrap), {topic: 1})
        producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 50, "compression.type": "lz4"})
        rnd = random.Random(7)
        words = ["the", "of", "and", "no", "is", "with", "right", "left", "lung", "effusion", "nodule",
                 "seen", "mild", "stable", "chest", "heart", "size"]
        for i in range(args.reports):
            text = " ".join(rnd.choice(words) for _ in range(args.text // 5))[: args.text]
            value = json.dumps([[1, "final", text]], separators=(",", ":")).encode()
            while True:
                try:
                    producer.produce(topic, key=f"default|ACC{i:07d}".encode(), value=value, partition=0)
                    break
                except BufferError:
                    producer.poll(0.1)
        assert producer.flush(120) == 0
        stores = [("base", args.base_tree)] if args.base_tree else []
        stores += [("memory", str(REPO)), ("disk", str(REPO))]
        print(f"{args.reports:,} reports of {args.text} characters; RSS held after the restore and one get "
              f"per key, and peak RSS growth (both minus RSS before the restore)")
        print(f"{'store':<8} {'restore s':>10} {'get us/key':>11} {'held bytes/report':>18} {'peak MB':>8} "
              f"{'disk bytes/report':>18}")
        for store, tree in stores:
            out = subprocess.run([sys.executable, str(REPO / "bench" / "table_memory.py"), "--child",
                                  bootstrap, topic, str(args.reports), store, str(tmp)],
                                 cwd=tree, env={"PYTHONPATH": tree, "PATH": "/usr/bin:/bin"},
                                 capture_output=True, text=True, check=True).stdout
            r = json.loads(out.strip().splitlines()[-1])
            assert r["found"] == args.reports, r
            print(f"{store:<8} {r['restore_s']:>10.2f} {r['get_us']:>11.1f} {r['held_per_report']:>18,.0f} "
                  f"{r['peak_mb']:>8,.0f} {r['disk_per_report']:>18,.0f}")
    finally:
        kafka.stop_kafka(tmp / "kafka")


if __name__ == "__main__":
    main()
