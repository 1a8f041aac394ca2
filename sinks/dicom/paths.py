"""Names that become paths in the research store and the quarantine: checked before they are used.

- DICOM UIDs follow PS3.5 9.1: components of digits separated by ".", no component with a leading zero
  (except "0" itself), at most 64 characters. Such a string can never be "..", hold a "/" or be empty.
- Project ids: a letter or digit, then letters, digits, "-" or "_", at most 64 characters (no dots, so
  never "." or "..", never a hidden file).
- ``inside(root, *parts)``: the joined path, resolved, must stay under the resolved root.
- ``fsync_dir(path)``: after a rename into a directory, so the new entry survives a crash.
"""

from __future__ import annotations

import os
import re
import threading

_UID = re.compile(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*")
_PROJECT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


class UnsafeName(ValueError):
    """A UID or id that must not become (part of) a path."""


def is_uid(value: str) -> bool:
    """True for a UID of the PS3.5 9.1 grammar (at most 64 characters)."""
    return len(value) <= 64 and _UID.fullmatch(value) is not None


def check_uid(value: str, what: str = "UID") -> str:
    if not is_uid(value):
        raise UnsafeName(f"{what} {value[:80]!r} is not a valid DICOM UID (PS3.5 9.1)")
    return value


def is_project_id(value: str) -> bool:
    return _PROJECT.fullmatch(value) is not None


def check_project_id(value: str) -> str:
    if not is_project_id(value):
        raise UnsafeName(f"project id {value[:80]!r} is not valid: 1-64 of A-Z a-z 0-9 - _, "
                         "starting with a letter or digit")
    return value


def is_token(value: str) -> bool:
    """A request id or similar token safe in a file name (no "/", does not start with a dot)."""
    return _TOKEN.fullmatch(value) is not None


def fsync_dir(path: str) -> None:
    """Make the entries of directory ``path`` (a rename, a new file or directory) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def durable_write(path: str, data: bytes) -> None:
    """``path`` holds ``data`` (mode 0600), whole and durable, or is left as it was: a temporary file in
    the same directory, fsynced, renamed over ``path``, then the directory fsynced."""
    tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(os.path.dirname(os.path.abspath(path)))


def inside(root: str, *parts: str) -> str:
    """``root/parts...``, refused (UnsafeName) unless it resolves to a path under the resolved root."""
    base = os.path.realpath(root)
    path = os.path.realpath(os.path.join(base, *parts))
    if os.path.commonpath([base, path]) != base or path == base:
        raise UnsafeName(f"{os.path.join(*parts)!r} leaves {root}")
    return path
