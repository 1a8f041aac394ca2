"""HL7 v2 over MLLP: an asyncio listener that produces report events and ACKs after Kafka confirmed.

Per connection, messages are handled one at a time (HL7 original-mode acknowledgement):

- AA only after the Kafka producer's delivery report for every event of the message;
- AE (content not acceptable: missing OBR, empty text, unknown status, ...) and AR (unusable
  message: not HL7, undeclared/undecodable charset, unsupported type, too large) carry the reason
  in MSA-3 and an ERR segment; the original bytes go to the dead-letter topic;
- the dead letter of an AE/AR is confirmed by Kafka before the answer (a dead letter over the broker's
  message limit keeps the head of the message, marked);
- AR "resend" when Kafka did not confirm in time the events, or the dead letter of a rejected message
  (the sender keeps the message and retries);
- junk outside frames, frames cut by a closed connection and frames left without their end block
  until the idle timeout go to the dead-letter topic (the connection is closed); the idle timeout
  is a time without any byte, restarted by each chunk, so a slow but live sender of a large frame
  is not cut;
- a frame ends at FS: the CR of the end block <FS><CR> may be missing (many senders omit it);
- a frame over ``ingest.mllp_max_bytes`` (default 32 MiB) gets AR and its head is dead-lettered. The
  limit is on the frame, which carries embedded attachments (ED/RP OBX, e.g. a report PDF in base64);
  the report event, text only, must still fit the reports topic (an event the broker refuses for good
  is AE and dead-lettered), and the parser bounds the text it accepts itself. At most two frames
  over 1 MiB are parsed at once (the others wait), so a burst of large frames does not multiply the
  parse memory.

Resource limits against a slow or greedy peer (``ingest.*``, docs/ingest_hl7.md "MLLP listener limits"),
each refusal logged with its reason and counted in ``radstream_mllp_refusals_total{reason}``:

- ``mllp_max_connections`` (default 64) connections at once: one more is closed at once, unread
  ("connections");
- ``mllp_frame_deadline_s`` (default 300 s) from a frame's first byte (other than CR/LF/blank) to its
  FS: a frame still open then is dead-lettered like one cut by the idle timeout, with its own reason,
  and the connection closed ("deadline"). The idle timeout alone would let a sender trickling a byte
  per idle period hold a connection and its buffer for days;
- ``mllp_max_buffered_bytes`` (default 256 MiB) across all connections: the bytes read and not yet
  answered (partial frames, and frames until their ACK is written). The connection whose bytes go over
  it gets AR "busy, please resend" (the sender keeps the message; nothing is dead-lettered: it was not
  read whole) and is closed ("buffered"). A sender still writing may see a reset instead of the AR;
  either way it resends.

Frames are read with the asyncio stream of python-hl7's ``start_hl7_server`` (its reader,
writer and ``writeblock``); the frame reader here adds what hl7.mllp's ``readblock`` lacks:
keeping the bytes of bad frames for the dead-letter record and surviving oversized frames.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import zoneinfo
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, tzinfo
from typing import Any

from hl7.mllp import open_hl7_connection
from hl7.mllp.streams import END_BLOCK, START_BLOCK, HL7StreamProtocol, HL7StreamReader

from processors.ingest.hl7v2 import (
    HL7Result,
    build_ack,
    codec_of,
    parse_oru,
    sniff_header,
)
from processors.ingest.model import NoReport, ParseError
from streams import metrics
from streams.config import IngestConfig, KafkaConfig, TopicsConfig
from streams.ingest.publish import INTERACTIVE, Publisher
from streams.producer import DeliveryError, make_producer

log = logging.getLogger(__name__)
DLQ_HEAD_BYTES = 256 * 1024
OFF_LOOP_BYTES = 256 * 1024  # a message this big is parsed in the executor, not on the event loop
LARGE_BYTES = 1 << 20  # ... and one this big waits for one of LARGE_PARSES slots
LARGE_PARSES = 2
STAGE = "hl7-listener"
_TEXT = re.compile(rb"[^\r\n\t ]")  # a byte that starts a frame (CR/LF/blanks between frames do not)


def ingest_timezone(ingest: IngestConfig) -> tzinfo:
    """Zone of HL7 times without an offset (``ingest.timezone``, default UTC)."""
    name = ingest.timezone
    return zoneinfo.ZoneInfo(name) if name else UTC


class Refused(Exception):
    """Raised into a connection's read by the listener's limits: ``why`` is deadline | buffered."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


class Budget:
    """Bytes read and not yet answered by all connections (``ingest.mllp_max_buffered_bytes``)."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.held = 0
        self.peak = 0


class LimitedReader(HL7StreamReader):
    """The stream reader of one MLLP connection that enforces the listener's limits as bytes arrive:
    it charges what it holds to the shared budget and starts each frame's deadline at its first byte.
    Either refusal is raised into the connection's pending (or next) read as ``Refused``; bytes that
    arrive after a refusal are dropped, not held."""

    def __init__(self, limit: int, budget: Budget, deadline: float) -> None:
        super().__init__(limit=limit)
        self.budget, self.deadline = budget, deadline
        self.charged = 0  # this connection's share of budget.held
        self.answering = 0  # bytes of the frame being answered (held until its ACK is written)
        self.timer: asyncio.TimerHandle | None = None
        self.refusal: Refused | None = None

    def feed_data(self, data: bytes) -> None:
        if self.refusal is not None:
            return
        super().feed_data(data)
        if self.timer is None and _TEXT.search(data):
            self._start_deadline()
        self.recount()
        # a frame past the size limit is the size limit's to refuse (dead-lettered, AR), not the budget's
        # ("busy, resend" would have it sent again for ever)
        if self.budget.held > self.budget.cap and len(self._buffer) <= self._limit:
            self.refuse("buffered")

    async def readuntil(self, separator: bytes = b"\n") -> bytes:
        # StreamReader.readuntil looks at the exception only while it waits, and returns a frame already
        # in the buffer: a refusal set while the handler answered the previous frame must win
        if self.refusal is not None:
            raise self.refusal
        return await super().readuntil(separator)

    def held(self) -> int:
        return len(self._buffer)

    def pending(self) -> bytes:
        return bytes(self._buffer)

    def recount(self) -> None:
        now = len(self._buffer) + self.answering
        self.budget.held += now - self.charged
        self.budget.peak = max(self.budget.peak, self.budget.held)
        self.charged = now

    def frame_read(self, answering: int) -> None:
        """After each frame read: its deadline ends; the next starts now if part of it is here."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.answering = answering
        self.recount()
        if _TEXT.search(self._buffer):
            self._start_deadline()

    def answered(self) -> None:
        self.answering = 0
        self.recount()

    def release(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.answering = 0
        self.budget.held -= self.charged
        self.charged = 0

    def refuse(self, why: str) -> None:
        if self.refusal is None:
            self.refusal = Refused(why)
            self.set_exception(self.refusal)  # wakes a read waiting for data

    def _start_deadline(self) -> None:
        self.timer = asyncio.get_running_loop().call_later(self.deadline, self._expire)

    def _expire(self) -> None:
        self.timer = None
        if END_BLOCK not in self._buffer:  # an ended frame waiting for its turn is not late
            self.refuse("deadline")


@dataclass
class Frame:
    kind: str  # frame | oversize | junk | blank | truncated | idle | eof | deadline | buffered
    data: bytes = b""
    junk: bytes = b""  # bytes before the start block of a good frame
    size: int = 0


async def _buffered(reader: asyncio.StreamReader) -> bytes:
    """What the reader holds without waiting (bytes of a frame whose end never came)."""
    try:
        return bytes(await asyncio.wait_for(reader.read(1 << 30), 0.05))
    except (TimeoutError, ConnectionError, Refused):
        return b""


def _held(reader: asyncio.StreamReader) -> int:
    """Bytes the reader holds (its buffer; 0 if this asyncio has none by that name)."""
    return len(getattr(reader, "_buffer", b""))


async def _read_block(reader: asyncio.StreamReader, idle_timeout: float | None) -> bytes:
    """``readuntil(FS)`` with an idle timeout: TimeoutError only after ``idle_timeout`` seconds in which
    no byte arrived, not after ``idle_timeout`` for the whole frame (a slow but live sender of a large
    frame is not cut). readuntil consumes nothing until it finds FS, so cancelling it at each poll (a
    quarter of the timeout, at most 5 s) keeps the buffer; a chunk restarts the timer within a poll."""
    if idle_timeout is None:
        return await reader.readuntil(END_BLOCK)
    loop = asyncio.get_running_loop()
    poll = min(idle_timeout / 4, 5.0)
    held, last = _held(reader), loop.time()
    while True:
        left = last + idle_timeout - loop.time()
        if left <= 0:
            raise TimeoutError
        try:
            return await asyncio.wait_for(reader.readuntil(END_BLOCK), min(poll, left))
        except TimeoutError:
            if _held(reader) != held:  # bytes came since the last poll: the sender is alive
                held, last = _held(reader), loop.time()


async def read_frame(reader: asyncio.StreamReader, idle_timeout: float | None = None) -> Frame:
    """Next MLLP frame (its payload without VT/FS/CR) or what went wrong instead (``_read_frame``); a
    frame the listener's limits refused is ``deadline`` (all its bytes read so far, for the dead letter)
    or ``buffered`` (its head, for the AR's header)."""
    try:
        return await _read_frame(reader, idle_timeout)
    except Refused as exc:
        data = reader.pending() if isinstance(reader, LimitedReader) else b""
        if exc.why == "deadline":
            return Frame(exc.why, data, size=len(data))
        start = data.find(START_BLOCK)  # the head of the refused frame, for its header (the AR's MSA)
        return Frame(exc.why, data[start + 1:][:DLQ_HEAD_BYTES] if start >= 0 else b"", size=len(data))


async def _read_frame(reader: asyncio.StreamReader, idle_timeout: float | None = None) -> Frame:
    """Next MLLP frame (its payload without VT/FS/CR) or what went wrong instead.

    The frame ends at FS; the CR after it is not waited for. Senders that omit that CR (common in
    hand-built interfaces) are served at once instead of hanging until the idle timeout; a CR that
    does follow (every conformant sender) is blank space before the next start block and skipped.
    FS is a control character HL7 does not allow in message content, so it cannot end a frame early.
    """
    try:
        block = await _read_block(reader, idle_timeout)
    except asyncio.IncompleteReadError as exc:
        partial = bytes(exc.partial)
        return Frame("truncated", partial, size=len(partial)) if partial.strip(b"\r\n\t ") else Frame("eof")
    except TimeoutError:
        # idle with part of a frame (no FS yet): keep those bytes for the dead letter, not silence
        partial = await _buffered(reader)
        return Frame("idle", partial, size=len(partial)) if partial.strip(b"\r\n\t ") else Frame("eof")
    except asyncio.LimitOverrunError as exc:
        head = bytearray(await reader.readexactly(exc.consumed))
        size = len(head)
        while True:  # discard the rest of the oversized frame, keep a head for the dead letter
            try:
                tail = await _read_block(reader, idle_timeout)
                size += len(tail)
                if len(head) < DLQ_HEAD_BYTES:
                    head += tail[: DLQ_HEAD_BYTES - len(head)]
                break
            except asyncio.LimitOverrunError as more:
                chunk = await reader.readexactly(more.consumed)
                size += len(chunk)
                if len(head) < DLQ_HEAD_BYTES:
                    head += chunk[: DLQ_HEAD_BYTES - len(head)]
            except asyncio.IncompleteReadError as inc:
                size += len(inc.partial)
                return Frame("truncated", bytes(head[:DLQ_HEAD_BYTES]), size=size)
            except TimeoutError:  # the sender of an oversized frame went silent
                return Frame("idle", bytes(head[:DLQ_HEAD_BYTES]), size=size)
            except Refused as refused:  # past its deadline (or the budget) while being discarded
                return Frame(refused.why, bytes(head[:DLQ_HEAD_BYTES]), size=size)
        start = head.find(START_BLOCK)
        return Frame("oversize", bytes(head[start + 1 if start >= 0 else 0:]), size=size)
    start = block.rfind(START_BLOCK)
    if start < 0:
        if not block[:-1].strip(b"\r\n\t "):  # a stray FS (a doubled end block): nothing to answer
            return Frame("blank", size=len(block))
        return Frame("junk", bytes(block[:-1]).lstrip(b"\r\n"), size=len(block))
    return Frame("frame", bytes(block[start + 1:-1]), junk=bytes(block[:start]), size=len(block))


class HL7Listener:
    """Serves MLLP connections; one shared idempotent producer."""

    def __init__(self, kafka: KafkaConfig, topics: TopicsConfig, ingest: IngestConfig,
                 publisher: Publisher | None = None, *, max_bytes: int | None = None,
                 idle_timeout: float = 600.0, kafka_timeout: float = 30.0) -> None:
        self.ingest = ingest
        self.publisher = publisher or Publisher(kafka, topics, ingest, stage=STAGE,
                                                producer=make_producer(kafka, **INTERACTIVE))
        self.max_bytes = max_bytes or ingest.mllp_max_bytes  # the frame limit (attachments included)
        self.max_connections = ingest.mllp_max_connections
        self.frame_deadline = ingest.mllp_frame_deadline_s
        self.budget = Budget(ingest.mllp_max_buffered_bytes)
        self.connections = 0
        self.idle_timeout = idle_timeout
        self.kafka_timeout = kafka_timeout
        self.default_charset = ingest.hl7_charset
        self.tz = ingest_timezone(ingest)
        self.stats = {"messages": 0, "AA": 0, "AE": 0, "AR": 0, "events": 0, "dead_letters": 0,
                      "dead_letters_failed": 0, "refused_connections": 0, "refused_buffered": 0,
                      "refused_deadline": 0}
        self.server: asyncio.Server | None = None
        # parses of large frames at once (each holds its frame and the message without attachments; the
        # default executor would run ~6 on 2 cores): the listener's memory stays bounded under a burst
        self._large = asyncio.Semaphore(LARGE_PARSES)
        self.large_parses = self.large_parses_peak = 0

    async def start(self, host: str, port: int) -> int:
        """Start listening; returns the bound port (``port=0`` picks a free one)."""
        self.publisher.start_polling()
        for why in ("connections", "buffered", "deadline"):
            metrics.MLLP_REFUSALS.labels(why)  # the series exist at 0 before the first refusal

        def protocol() -> HL7StreamProtocol:  # python-hl7's start_hl7_server, with our reader
            reader = LimitedReader(self.max_bytes, self.budget, self.frame_deadline)
            return HL7StreamProtocol(reader, self.handle)

        self.server = await asyncio.get_running_loop().create_server(protocol, host, port)
        sock = self.server.sockets[0]
        bound: int = sock.getsockname()[1]
        return bound

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
        await asyncio.get_running_loop().run_in_executor(None, self.publisher.close)

    async def _dead_letter(self, raw: bytes, reason: BaseException | str, peer: str) -> bool:
        """Send a dead letter and wait until Kafka confirmed it (an AE/AR is answered only then, or the
        rejected message would be lost); False when it did not. A dead letter too large for the broker
        keeps the head of the message (``streams.producer.dead_letter_record``)."""
        try:
            await self.publisher.dead_letter_confirmed(raw, reason, where=f"mllp:{peer}",
                                                       timeout=self.kafka_timeout)
        except Exception as exc:  # the DLQ being down must not stop the listener
            self.stats["dead_letters_failed"] += 1
            log.error("dead-letter write failed: %s: %s", type(exc).__name__, exc)
            return False
        self.stats["dead_letters"] += 1
        return True

    def _kafka_down(self, header: Any, codec: str, result: HL7Result, exc: Exception) -> bytes:
        log.error("Kafka did not confirm message %s: %s", result.header.control_id, exc)
        err = ParseError(f"temporarily unable to store the message ({type(exc).__name__}); please resend",
                         code="AR")
        self.stats["AR"] += 1
        return build_ack(header, "AR", err.reason, err, charset_codec=codec)

    def _resend(self, header: Any, codec: str) -> bytes:
        """AR asking the sender to keep and resend a rejected message whose dead letter Kafka did not take."""
        err = ParseError("temporarily unable to store the rejected message; please resend", code="AR")
        self.stats["AR"] += 1
        return build_ack(header, "AR", err.reason, err, charset_codec=codec)

    def _refused(self, why: str) -> None:
        self.stats[f"refused_{why}"] += 1
        metrics.MLLP_REFUSALS.labels(why).inc()

    async def handle(self, reader: Any, writer: Any) -> None:
        peer = "{}:{}".format(*(writer.get_extra_info("peername") or ("?", "?"))[:2])
        limited = reader if isinstance(reader, LimitedReader) else None
        if self.connections >= self.max_connections:
            # closed unread: MLLP has no refusal of a connection, the sender retries as after any close
            self._refused("connections")
            log.warning("MLLP connection from %s refused: %d connections open, the limit "
                        "(ingest.mllp_max_connections)", peer, self.connections)
            if limited is not None:
                limited.release()
            writer.close()
            return
        self.connections += 1
        try:
            while True:
                frame = await read_frame(reader, self.idle_timeout)
                if limited is not None:
                    limited.frame_read(len(frame.data) if frame.kind == "frame" else 0)
                if frame.kind == "eof":
                    break
                if frame.kind == "deadline":
                    self._refused("deadline")
                    log.warning("MLLP frame from %s not ended within the frame deadline of %g s "
                                "(%d bytes): dead-lettered, connection closed", peer, self.frame_deadline,
                                frame.size)
                    await self._dead_letter(frame.data, f"incomplete MLLP frame: no end block <FS> within "
                                            f"the frame deadline of {self.frame_deadline:g} s after its "
                                            f"first byte ({frame.size} bytes); connection closed", peer)
                    break
                if frame.kind == "buffered":
                    # not read whole: nothing to dead-letter; AR asks the sender to keep it and resend
                    self._refused("buffered")
                    log.warning("MLLP frame from %s refused: the listener holds %d bytes of unanswered "
                                "frames, over the limit of %d (ingest.mllp_max_buffered_bytes); AR, "
                                "connection closed", peer, self.budget.held, self.budget.cap)
                    err = ParseError("listener busy: too many bytes of unanswered messages held; please "
                                     "resend", code="AR")
                    self.stats["AR"] += 1
                    writer.writeblock(build_ack(_header_or_none(frame.data), "AR", err.reason, err))
                    with contextlib.suppress(Refused):  # drain() raises its reader's refusal again
                        await writer.drain()
                    break
                if frame.kind == "blank":
                    continue
                if frame.kind == "truncated":
                    await self._dead_letter(frame.data, f"truncated MLLP frame: connection closed after "
                                      f"{frame.size} bytes without the end block <FS><CR>", peer)
                    break
                if frame.kind == "idle":
                    await self._dead_letter(frame.data, f"incomplete MLLP frame: no end block <FS> after "
                                            f"{frame.size} bytes within the idle timeout of "
                                            f"{self.idle_timeout:g} s; connection closed", peer)
                    break
                if frame.junk.strip(b"\r\n\t \x1c"):
                    await self._dead_letter(frame.junk, "bytes outside an MLLP frame (an earlier frame "
                                            "without its end block?)", peer)
                if frame.kind == "junk":
                    err = ParseError("frame without the MLLP start block <VT>", code="AR")
                    # AR whether or not the dead letter was confirmed: the sender keeps the message
                    await self._dead_letter(frame.data, err.reason, peer)
                    ack = build_ack(_header_or_none(frame.data), "AR", err.reason, err)
                    self.stats["AR"] += 1
                elif frame.kind == "oversize":
                    err = ParseError(f"message of {frame.size} bytes exceeds the limit of "
                                     f"{self.max_bytes} bytes", code="AR")
                    await self._dead_letter(frame.data, err.reason + " (first bytes kept)", peer)
                    ack = build_ack(_header_or_none(frame.data), "AR", err.reason, err)
                    self.stats["AR"] += 1
                else:
                    ack = await self.process(frame.data, peer)
                writer.writeblock(ack)
                await writer.drain()
                if limited is not None:
                    limited.answered()
        except (ConnectionError, asyncio.CancelledError):
            pass
        except Refused as exc:
            # over a limit while a frame was answered: its ACK is written (close flushes it); the next
            # frame of this connection is not read
            self._refused(exc.why)
            log.warning("MLLP connection from %s closed after its answer: %s limit reached", peer, exc.why)
        except Exception:  # keep serving other connections whatever happened here
            log.exception("MLLP connection %s failed", peer)
        finally:
            self.connections -= 1
            if limited is not None:
                limited.release()
            writer.close()

    async def process(self, raw: bytes, peer: str = "?") -> bytes:
        """Parse, produce, and return the ACK bytes for one message."""
        self.stats["messages"] += 1
        metrics.INGEST_MESSAGES.labels(STAGE).inc()
        header = _header_or_none(raw)
        codec = "ascii"
        if header is not None:
            try:
                codec = codec_of(header, self.default_charset)
            except ParseError:
                codec = "ascii"
        def parse() -> HL7Result:
            return parse_oru(raw, site=self.ingest.site,
                             accession_field=self.ingest.accession_field,
                             default_charset=self.default_charset, default_tz=self.tz)

        try:
            # big messages are parsed off the event loop so other connections keep being served
            if len(raw) > LARGE_BYTES:
                async with self._large:
                    self.large_parses += 1
                    self.large_parses_peak = max(self.large_parses_peak, self.large_parses)
                    try:
                        result = await asyncio.get_running_loop().run_in_executor(None, parse)
                    finally:
                        self.large_parses -= 1
            elif len(raw) > OFF_LOOP_BYTES:
                result = await asyncio.get_running_loop().run_in_executor(None, parse)
            else:
                result = parse()
        except NoReport as exc:  # a valid status update without a report (scheduled, in progress)
            self.stats["AA"] += 1
            log.info("AA %s from %s: no report", header.control_id if header else "?", peer)
            return build_ack(header, "AA", f"accepted, no report: {exc.reason}", charset_codec=codec)
        except ParseError as exc:
            if not await self._dead_letter(raw, exc, peer):
                return self._resend(header, codec)
            self.stats[exc.code] = self.stats.get(exc.code, 0) + 1
            # the reason (it may quote message content) goes to the sender and the dead letter, not the log
            log.info("%s %s from %s (field %s)", exc.code, header.control_id if header else "?", peer,
                     exc.field or "-")
            return build_ack(header, exc.code, exc.reason, exc, charset_codec=codec)
        except Exception as exc:  # a parser bug: closing without an ACK would make the sender resend forever
            log.error("AE %s from %s: parser failed with %s", header.control_id if header else "?", peer,
                      type(exc).__name__)  # its text may quote the message: dead letter only
            err = ParseError(f"message could not be processed ({type(exc).__name__}: {exc})", code="AE")
            if not await self._dead_letter(raw, err, peer):
                return self._resend(header, codec)
            self.stats["AE"] += 1
            return build_ack(header, "AE", err.reason, err, charset_codec=codec)
        try:
            await self.publisher.publish_confirmed(result.events, timeout=self.kafka_timeout)
        except DeliveryError as exc:
            if not exc.refused_for_good:
                return self._kafka_down(header, codec, result, exc)
            # a resend would be refused again and hold up the sender's queue for good: AE, dead letter
            log.error("Kafka refused message %s for good: %s", result.header.control_id, exc)
            err = ParseError(f"Kafka refused a report of this message ({exc}): dead-lettered, not in the "
                             "report stream", code="AE")
            if not await self._dead_letter(raw, err, peer):
                return self._resend(header, codec)
            self.stats["AE"] += 1
            return build_ack(header, "AE", err.reason, err, charset_codec=codec)
        except Exception as exc:
            return self._kafka_down(header, codec, result, exc)
        self.stats["AA"] += 1
        self.stats["events"] += len(result.events)
        log.info("AA %s from %s: %d report event(s)", result.header.control_id, peer, len(result.events))
        note = f"{len(result.events)} report(s) accepted"
        if result.skipped:
            note += "; skipped " + "; ".join(result.skipped)
        if result.notes:  # the sender learns what was not kept (an attachment) or shared (linked exams)
            note += "; " + "; ".join(result.notes)
        return build_ack(header, "AA", note, charset_codec=codec)


def _header_or_none(raw: bytes) -> Any:
    try:
        return sniff_header(raw)
    except ParseError:
        return None


async def send_messages(host: str, port: int, messages: Sequence[bytes],
                        timeout: float = 60.0) -> list[bytes]:
    """A small MLLP client: send each message on one connection, wait for its ACK; returns the ACKs."""
    reader, writer = await open_hl7_connection(host, port)
    acks: list[bytes] = []
    try:
        for raw in messages:
            writer.writeblock(raw)
            await writer.drain()
            acks.append(bytes(await asyncio.wait_for(reader.readblock(), timeout)))
    finally:
        writer.close()
        await writer.wait_closed()
    return acks


async def serve_forever(kafka: KafkaConfig, topics: TopicsConfig, ingest: IngestConfig, host: str,
                        port: int) -> None:
    listener = HL7Listener(kafka, topics, ingest)
    bound = await listener.start(host, port)
    print(f"hl7-listener: MLLP on {host}:{bound} -> {topics.reports} "
          f"(dead letters -> {topics.dead_letter})", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    import signal

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await listener.stop()
    print(f"hl7-listener: stopped {listener.stats}", flush=True)
