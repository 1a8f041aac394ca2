"""Benchmark: a flood of bad tokens with a known (public) token id. First the latency of a successful,
uncached token check (median of 5, each on a fresh TokenStore), then N parallel requests with distinct
bad secrets against a SqlServer's /health: wall, CPU and peak RSS of this process, and the statuses.
Run it for two trees alternately (``PYTHONPATH=<tree> python bench/auth_flood.py 24``, A/B/A/B) and
record the load average with each number (docs/access.md)."""

from __future__ import annotations

import resource
import statistics
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

from sinks.clickhouse.web import SqlServer
from streams.auth import Gate, TokenStore


def main(n: int) -> None:
    tmp = Path(tempfile.mkdtemp())
    store = TokenStore(tmp / "tokens.json")
    store.add_user("ann", ["analyst"])
    tok = store.add_token("ann")
    tid = tok.split("_")[1]
    lat = []
    for _ in range(5):  # before the flood raised the peak RSS
        fresh = TokenStore(tmp / "tokens.json")
        t = time.perf_counter()
        assert fresh.verify(tok) is not None
        lat.append(time.perf_counter() - t)
    srv = SqlServer(None, "127.0.0.1", 0, gate=Gate(store))
    srv.start()
    statuses: Counter[int] = Counter()

    def hit(i: int) -> None:
        req = urllib.request.Request(f"http://127.0.0.1:{srv.port}/health",
                                     headers={"Authorization": f"Bearer rst_{tid}_wrong{i}"})
        try:
            with urllib.request.urlopen(req, timeout=120):
                statuses[200] += 1
        except urllib.error.HTTPError as exc:
            statuses[exc.code] += 1

    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    cpu0, t0 = time.process_time(), time.monotonic()
    threads = [threading.Thread(target=hit, args=(i,)) for i in range(n)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"{n} bogus: {time.monotonic() - t0:.1f} s wall, {time.process_time() - cpu0:.1f} s CPU, max RSS "
          f"{rss0 / 1e3:.0f} -> {rss1 / 1e3:.0f} MB, {dict(statuses)}; good uncached check median "
          f"{statistics.median(lat) * 1000:.0f} ms ({', '.join(f'{x * 1000:.0f}' for x in lat)})")
    srv.stop()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 24)
