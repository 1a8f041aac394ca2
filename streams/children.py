"""Child processes that do not outlive their parent, even when it is killed with SIGKILL (Linux).

``prctl(PR_SET_PDEATHSIG)`` through libc: the kernel signals the child when the thread that started
it exits, so start children from a thread that lives as long as the process (the main thread).
"""

from __future__ import annotations

import ctypes
import os
import signal

PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGKILL, parent: int | None = None) -> None:
    """Ask the kernel to send ``sig`` to this process when its parent dies. ``parent``: the pid the
    parent had when it started us; if it is already gone (we were re-parented before this call), exit."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, sig)
    if parent is not None and os.getppid() != parent:
        os._exit(1)
