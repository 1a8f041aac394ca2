"""The NLP agent's redo rule, without a broker: a batch whose future failed because its pool broke, or was
cancelled because the pool was replaced for a broken one, is analysed again instead of stopping the
agent. (The kill -9 of a real NLP child is tests/radstream/test_recovery.py.)"""

from __future__ import annotations

from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool

import pytest
from confluent_kafka import Producer

from streams.agents.nlp import NlpHandler, NlpRunner, _Batch
from streams.agents.outbox import Completion
from streams.agents.table import ChangelogTable
from streams.config import KafkaConfig, MlConfig, TopicsConfig, WorkerConfig


def _failed(how: str) -> Future[list[object]]:
    f: Future[list[object]] = Future()
    if how == "cancelled":
        f.cancel()
    else:
        f.set_exception(BrokenProcessPool("a child process terminated abruptly"))
    return f


@pytest.mark.parametrize("how", ["cancelled", "broken"])
def test_a_batch_of_a_broken_or_replaced_pool_is_analysed_again(how: str) -> None:
    producer = Producer({"bootstrap.servers": "127.0.0.1:1"})  # never used: nothing is emitted here
    runner = NlpRunner(WorkerConfig(nlp_processes=0), MlConfig())  # analyses in this thread
    handler = NlpHandler(TopicsConfig(), runner, producer, ChangelogTable(KafkaConfig(), "t", producer))
    batch = _Batch([], Completion([]), [b"not a report"], [None], _failed(how), None)  # type: ignore[arg-type]

    assert handler._outcomes(batch) is None  # submitted again, not raised
    assert batch.attempts == 1
    out = handler._outcomes(batch)
    assert out is not None and len(out) == 1
    assert out[0].value is None and out[0].error_type  # analysed: the bad message gets its reason


def test_the_nlp_process_starts_and_builds_its_engine_at_the_first_assignment() -> None:
    """Not at the first batch: that batch would wait for the imports and the engine (seconds; under load
    long enough for the loop to pause its partitions)."""
    producer = Producer({"bootstrap.servers": "127.0.0.1:1"})  # never used
    runner = NlpRunner(WorkerConfig(nlp_processes=1), MlConfig())
    try:
        handler = NlpHandler(TopicsConfig(), runner, producer, ChangelogTable(KafkaConfig(), "t", producer))
        assert handler.warming is None
        handler.on_assign([("another-topic", 0)])  # no partition of the reports topic: nothing to restore
        first = handler.warming
        assert first is not None and first.result(120) is True
        handler.on_assign([("another-topic", 1)])
        assert handler.warming is first  # once per handler
    finally:
        runner.close()
