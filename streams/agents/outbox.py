"""Records done when what they caused is delivered: the at-least-once rule of the agents.

An input record is held (``Acks.hold``) while the messages it caused (findings, a dead letter, a
changelog update) are in the producer. ``Completion`` counts them and marks the tickets done once the
broker acknowledged every one, so no offset is committed past a record whose output could be lost.
Delivery callbacks run in the thread that polls the producer (the loop's, through ``tick``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence

from confluent_kafka import KafkaError, Message, Producer

from streams.loop import Ticket


class DeliveryFailed(RuntimeError):
    """A message the agent produced was not delivered: the agent stops, its held records come again."""


class Completion:
    def __init__(self, tickets: Sequence[Ticket]) -> None:
        self.tickets = list(tickets)
        self.waiting = 0
        self.sealed = False
        self.error: KafkaError | None = None

    def callback(self) -> Callable[[KafkaError | None, Message], None]:
        """One more message to wait for; pass the result as its ``on_delivery``."""
        self.waiting += 1

        def delivered(err: KafkaError | None, _msg: Message) -> None:
            self.waiting -= 1
            if err is not None and self.error is None:
                self.error = err
            self._maybe_done()

        return delivered

    def seal(self) -> None:
        """Every message of these records was handed to the producer."""
        self.sealed = True
        self._maybe_done()

    @property
    def finished(self) -> bool:
        return self.sealed and self.waiting == 0

    def _maybe_done(self) -> None:
        if self.finished and self.error is None:
            for ticket in self.tickets:
                ticket.done()


class Sent:
    """An agent's completions in the producer, oldest first."""

    def __init__(self, agent: str) -> None:
        self.agent = agent
        self._queue: deque[Completion] = deque()

    def append(self, done: Completion) -> None:
        self._queue.append(done)

    def __len__(self) -> int:
        return len(self._queue)

    def check(self) -> None:
        """Forget the finished completions; raise ``DeliveryFailed`` once any message failed."""
        while self._queue and self._queue[0].finished and self._queue[0].error is None:
            self._queue.popleft()
        for done in self._queue:
            if done.error is not None:
                raise DeliveryFailed(f"a message of the {self.agent} agent was not delivered: {done.error}")


def send(producer: Producer, topic: str, key: bytes | None, value: bytes | None, done: Completion,
         headers: Sequence[tuple[str, bytes]] | None = None) -> None:
    """Queue one message whose delivery ``done`` waits for (a full queue is served first)."""
    on_delivery = done.callback()
    while True:
        try:
            producer.produce(topic, value=value, key=key, headers=list(headers or []),
                             on_delivery=on_delivery)
            return
        except BufferError:
            producer.poll(0.1)
