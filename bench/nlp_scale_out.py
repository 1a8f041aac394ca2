"""Runs the scale-out scenario of ``tests/radstream/test_nlp_scale_out.py`` (three NLP workers in one
group, one killed -9 mid-stream) ``--rounds`` times per mode on a private broker, and counts the runs that
lost or doubled reports: with the killed worker started again under its static id, and with the other two
taking its partitions over. docs/operations.md ("Several NLP workers") has the results.

Usage: ``python bench/nlp_scale_out.py [--rounds 5]``
"""

from __future__ import annotations

import argparse
import tempfile
import traceback
from pathlib import Path

from radstream.config import Settings
from radstream.stack import kafka
from tests.radstream.test_nlp_scale_out import three_nlp_workers_one_killed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="nlp-scale-out-"))
    st = kafka.start_kafka(tmp / "kafka", tie_to_parent=True)
    base = Settings(state_dir=str(tmp)).replace(kafka={"bootstrap": st.bootstrap, "partitions": 6})
    try:
        for restart in (True, False):
            failed = 0
            for n in range(args.rounds):
                run = tmp / f"run-{restart}-{n}"
                run.mkdir()
                try:
                    three_nlp_workers_one_killed(base, run, restart=restart)
                except AssertionError:
                    failed += 1
                    traceback.print_exc(limit=1)
            mode = "killed worker restarted" if restart else "the others take over"
            print(f"{mode}: {failed} of {args.rounds} runs lost or doubled reports", flush=True)
    finally:
        kafka.stop_kafka(tmp / "kafka")


if __name__ == "__main__":
    main()
