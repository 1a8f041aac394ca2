"""sinks.dicom.journal: what was appended survives a crash (replayed at start), what was checkpointed is
not replayed again, a torn record ends the replay, and each process gets its own journal."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sinks.dicom.journal import HEADER, Journal

SIZE = 64 * 1024


def crash(j: Journal) -> None:
    """The process dies: no checkpoint, the lock goes with the descriptor."""
    os.close(j._fd)
    j._fd = -1


def opened(root: Path) -> Journal:
    j = Journal(str(root), SIZE)
    j.open()
    return j


def test_appended_records_are_replayed_after_a_crash_and_not_again_after_a_checkpoint(tmp_path: Path) -> None:
    j = opened(tmp_path)
    assert j.replayed == 0 and os.path.getsize(j.path) == SIZE
    records = {f"P1/1.2/1.2.3/1.2.3.{i}.dcm": bytes([i]) * (100 + i) for i in range(5)}
    for rel, data in records.items():
        j.append(rel, data)  # as if the files were lost with the page cache
    crash(j)
    again = opened(tmp_path)
    assert again.replayed == 5
    for rel, data in records.items():
        assert (tmp_path / rel).read_bytes() == data
    again.close()
    assert opened(tmp_path).replayed == 0  # checkpointed


def test_a_full_journal_checkpoints_and_starts_over(tmp_path: Path) -> None:
    j = opened(tmp_path)
    big = b"x" * (SIZE // 4 - HEADER.size - 40)
    assert j.fits("P1/1.2/1.2.3/9.dcm", big) and not j.fits("P1/1.2/1.2.3/9.dcm", big + b"x" * 64)
    for i in range(6):  # more than fits: a checkpoint in between
        rec = j.append(f"f{i}", big)
        (tmp_path / f"f{i}").write_bytes(big)  # the caller writes the file, then says so
        j.done(rec.seq)
    crash(j)
    for i in range(6):
        (tmp_path / f"f{i}").unlink()
    again = opened(tmp_path)
    assert 0 < again.replayed < 6  # only what came after the checkpoint
    assert sorted(p.name for p in tmp_path.glob("f*")) == [f"f{i}" for i in range(6 - again.replayed, 6)]


def test_a_torn_record_ends_the_replay(tmp_path: Path) -> None:
    j = opened(tmp_path)
    j.append("a.dcm", b"A" * 1000)
    second = HEADER.size + len("a.dcm") + 1000
    j.append("b.dcm", b"B" * 1000)
    crash(j)
    with open(j.path, "r+b") as fh:  # the second record's data half written
        fh.seek(second + HEADER.size + len("b.dcm") + 500)
        fh.write(b"\0" * 500)
    again = opened(tmp_path)
    assert again.replayed == 1 and (tmp_path / "a.dcm").exists() and not (tmp_path / "b.dcm").exists()


def test_each_live_journal_belongs_to_one_process(tmp_path: Path) -> None:
    first, second = opened(tmp_path), opened(tmp_path)
    assert first.path != second.path
    first.close()
    second.close()


def test_a_journal_left_with_another_size_is_replayed_before_it_is_made_again(tmp_path: Path) -> None:
    j = opened(tmp_path)
    j.append("a.dcm", b"A" * 100)
    crash(j)
    bigger = Journal(str(tmp_path), SIZE * 2)
    bigger.open()
    assert (tmp_path / "a.dcm").read_bytes() == b"A" * 100 and os.path.getsize(bigger.path) == SIZE * 2
    bigger.close()


def test_siblings_starting_together_each_get_their_own_journal(tmp_path: Path) -> None:
    """``dicom scp --processes N``: N journals opened at once on one store, none shared."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(4) as pool:
        journals = list(pool.map(lambda _: opened(tmp_path), range(4)))
    assert len({j.path for j in journals}) == 4
    for j in journals:
        j.append("x.dcm", b"x")
        j.close()


def test_concurrent_appends_share_their_syncs_and_every_one_is_replayed(tmp_path: Path) -> None:
    """Group commit: each append returns durable; threads appending together need fewer fdatasyncs."""
    from concurrent.futures import ThreadPoolExecutor

    j = opened(tmp_path)

    def append(i: int) -> int:
        return j.append(f"P1/1.2/1.2.3/1.2.3.{i}.dcm", bytes([i % 256]) * 200, b"note").seq

    with ThreadPoolExecutor(8) as pool:
        seqs = list(pool.map(append, range(160)))
    assert sorted(seqs) == list(range(1, 161)) and 1 <= j.syncs <= 160
    crash(j)
    noted: list[tuple[str, bytes]] = []
    again = Journal(str(tmp_path), SIZE, lambda rel, note: noted.append((rel, note)))
    again.open()
    assert again.replayed == 160 and len(noted) == 160 and {n for _, n in noted} == {b"note"}
    assert (tmp_path / "P1/1.2/1.2.3/1.2.3.7.dcm").read_bytes() == bytes([7]) * 200


def test_a_full_journal_waits_for_the_files_of_its_records_before_the_checkpoint(tmp_path: Path) -> None:
    import threading

    j = opened(tmp_path)
    big = b"x" * (SIZE // 4 - HEADER.size - 40)
    recs = [j.append(f"f{i}", big) for i in range(3)]
    for rec in recs[1:]:
        j.done(rec.seq)
    assert j.read(recs[0]) == big  # what a retry of its file writes
    finished = threading.Event()

    def more() -> None:
        j.done(j.append("f3", big).seq)
        j.append("f4", big)
        finished.set()

    threading.Thread(target=more, daemon=True).start()
    assert not finished.wait(0.3)  # f4 does not fit: the checkpoint waits until f0's file is done
    j.done(recs[0].seq)
    assert finished.wait(5)


def test_a_short_journal_write_fails_the_append_and_the_next_record_takes_its_place(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A short ``pwritev`` (the record torn) must not be answered as durable."""
    real_write = os.pwritev
    short = [True]

    def pwritev(fd: int, parts: list[bytes], offset: int) -> int:
        if short[0]:
            short[0] = False
            return real_write(fd, [b"".join(parts)[:10]], offset)
        return real_write(fd, parts, offset)

    monkeypatch.setattr(os, "pwritev", pwritev)
    j = opened(tmp_path)
    with pytest.raises(OSError, match="short write"):
        j.append("P1/1.2/1.2.3/1.2.3.1.dcm", b"a" * 300)
    rec = j.append("P1/1.2/1.2.3/1.2.3.2.dcm", b"b" * 300)
    assert rec.seq == 1 and rec.offset == 0
    j.done(rec.seq)
    crash(j)
    again = opened(tmp_path)
    assert again.replayed == 1 and not (tmp_path / "P1/1.2/1.2.3/1.2.3.1.dcm").exists()
    assert (tmp_path / "P1/1.2/1.2.3/1.2.3.2.dcm").read_bytes() == b"b" * 300


def test_a_replay_makes_directories_0750_and_files_0640_at_umask_022(tmp_path: Path) -> None:
    """The journal's path does not fsync new directories, so a crash can lose them with the file: the
    replay makes them again, owner and group only as the store does, not 0755/0644 at the usual umask."""
    j = opened(tmp_path)
    rel = "P1/1.2/1.2.3/1.2.3.4.dcm"
    j.append(rel, b"image")
    crash(j)
    old = os.umask(0o022)
    try:
        again = opened(tmp_path)
    finally:
        os.umask(old)
    assert again.replayed == 1 and (tmp_path / rel).read_bytes() == b"image"
    assert (tmp_path / rel).stat().st_mode & 0o777 == 0o640
    for d in ("P1", "P1/1.2", "P1/1.2/1.2.3"):
        assert (tmp_path / d).stat().st_mode & 0o777 == 0o750, d
    again.close()


def test_draining_a_backlog_of_the_outbox_rewrites_its_file_a_few_times_not_per_acknowledgement(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """After a broker outage the pending events alone may be over the compaction size: each
    acknowledgement then must not rewrite (and fsync) the whole file under the lock every C-STORE waits on."""
    from sinks.dicom import journal

    monkeypatch.setattr(journal, "OUTBOX_COMPACT_BYTES", 64 * 1024)
    box = journal.Outbox(str(tmp_path))
    box.open()
    rewrites = 0
    rewrite = box._rewrite

    def counted() -> None:
        nonlocal rewrites
        rewrites += 1
        rewrite()

    monkeypatch.setattr(box, "_rewrite", counted)
    ids = [box.add(journal.Event("t", b"k", os.urandom(700))) for _ in range(600)]  # ~1 MB pending
    for n in ids:
        box.ack(n)
    assert not box.pending
    assert rewrites <= 10, rewrites
    # what is left in the file is acknowledgements only: nothing is produced again at the next start
    box.close()
    assert journal.Outbox(str(tmp_path)).open() == []
