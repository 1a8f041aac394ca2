"""Static consumer-group membership: a stable ``group.instance.id`` per process slot.

A consumer that rejoins its group under the ``group.instance.id`` of a member that died takes over that
member's partitions at once; without one, the group first waits for the dead member's session to
expire. The id must be stable across restarts of one process slot and unique among the live members.
By default a process takes the lowest free slot of its host and state dir (an exclusive lock on a file
``<state_dir>/slots/<group>.<n>.lock``, released by the kernel when the process dies however it dies).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import socket
from pathlib import Path

from streams.config import WorkerConfig

NO_STATIC_MEMBERSHIP = "-"
MAX_SLOTS = 256

_held: dict[tuple[str, str], tuple[int, int]] = {}  # (slots dir, group) -> (slot, locked fd)


def slot(slots_dir: Path, group: str) -> int:
    """This process's slot for ``group`` under ``slots_dir``: the lowest one no live process holds."""
    key = (str(slots_dir.resolve()), group)
    if key in _held:
        return _held[key][0]
    slots_dir.mkdir(parents=True, exist_ok=True)
    for n in range(MAX_SLOTS):
        fd = os.open(slots_dir / f"{group}.{n}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        _held[key] = (n, fd)  # kept open for the life of the process
        return n
    raise RuntimeError(f"no free consumer slot for {group} under {slots_dir} ({MAX_SLOTS} taken)")


def group_instance_id(worker: WorkerConfig, state_dir: str | Path, group: str) -> str | None:
    """The ``group.instance.id`` of this process in ``group``; None: dynamic membership."""
    if worker.instance_id == NO_STATIC_MEMBERSHIP:
        return None
    if worker.instance_id:
        return f"{worker.instance_id}"
    where = hashlib.sha256(str(Path(state_dir).resolve()).encode()).hexdigest()[:8]
    return f"{socket.gethostname()}-{where}-{slot(Path(state_dir) / 'slots', group)}"
