"""What the direct paths take from pynetdicom beyond its public API, and the self-check that fences them.

``scu`` and ``scp`` drive pynetdicom's DICOM Upper Layer provider (the DUL, PS3.8 9) and its DIMSE
provider (PS3.7) from outside: they pause the association reactor, keep the DUL reader off the socket,
read the accepted presentation contexts, replay PDUs into the DUL's queues. pynetdicom may rename or
drop any of these in any release. ``NEEDS`` is the one list of them: every private attribute the wire
code reaches (``private=True``) and the public but undocumented internals it also relies on.

``usable(side)`` runs ``check_pynetdicom(side)`` and ``version_problem()`` once per process and side.
When either finds something, it logs one warning (what is missing, the pynetdicom version) and returns
False: the caller then takes plain pynetdicom's path (``send_c_find``/``send_c_move``; the association
reactor and pynetdicom's own C-STORE responses), which uses only its public API.

What the check cannot see (the meaning of an attribute, the state names, the polling it replaces) is
covered by ``TESTED``, the minor versions the wire code was tested with; keep it equal to the pin of
pynetdicom in pyproject.toml (a unit test compares them) and widen both only after the tests of
``tests/sinks/dicom`` pass on the new version.
"""

from __future__ import annotations

import importlib
import logging
import re
import threading
from dataclasses import dataclass
from typing import Any, Literal

LOG = logging.getLogger(__name__)

Side = Literal["scu", "scp"]
SIDES: tuple[Side, ...] = ("scu", "scp")
BOTH: tuple[Side, ...] = SIDES

# pynetdicom >=3.0,<3.1, as pinned in pyproject.toml: (lowest tested, first untested) (major, minor)
TESTED: tuple[tuple[int, int], tuple[int, int]] = ((3, 0), (3, 1))

# owner -> (module, class, where a fresh Association keeps an instance of it: attribute path, "" itself)
OWNERS: dict[str, tuple[str, str, str]] = {
    "Association": ("pynetdicom.association", "Association", ""),
    "DULServiceProvider": ("pynetdicom.dul", "DULServiceProvider", "dul"),
    "DIMSEServiceProvider": ("pynetdicom.dimse", "DIMSEServiceProvider", "dimse"),
    "ACSE": ("pynetdicom.acse", "ACSE", "acse"),
    "StateMachine": ("pynetdicom.fsm", "StateMachine", "dul.state_machine"),
    "Timer": ("pynetdicom.timer", "Timer", "dul._idle_timer"),
}


@dataclass(frozen=True)
class Need:
    """One pynetdicom attribute the wire code relies on.

    ``on``: "class" for a method or property (looked up on the class), "instance" for an attribute that
    ``__init__`` sets (looked up on a throwaway, never started Association and its providers)."""

    owner: str  # a key of OWNERS
    name: str
    on: Literal["class", "instance"]
    sides: tuple[Side, ...]
    private: bool
    use: str

    @property
    def label(self) -> str:
        return f"{self.owner}.{self.name}"


NEEDS: tuple[Need, ...] = (
    # -- private ------------------------------------------------------------------------------------
    Need("Association", "_accepted_cx", "instance", BOTH, True,
         "accepted presentation contexts by ID: the transfer syntax of a message's context"),
    Need("Association", "_kill", "instance", BOTH, True,
         "set when the association is being killed: stop reading the socket"),
    Need("Association", "_reactor_checkpoint", "instance", ("scu",), True,
         "cleared to pause the association reactor during an exchange, as send_c_* do; set to resume"),
    Need("Association", "_is_paused", "instance", ("scu",), True,
         "True once the reactor has paused: the exchange may take the socket"),
    Need("Association", "_get_valid_context", "class", ("scu",), True,
         "the accepted context for a SOP class as SCU, the one send_c_find/send_c_move would use"),
    Need("Association", "_run_reactor", "class", ("scp",), True,
         "the association thread's loop: replaced per association by the C-STORE loop, which runs "
         "the class's own when it hands the association back"),
    Need("DULServiceProvider", "_is_transport_event", "class", BOTH, True,
         "the DUL thread's socket read: wrapped per association to keep the DUL off the socket"),
    Need("DULServiceProvider", "_run_loop_delay", "instance", ("scp",), True,
         "the DUL thread's idle sleep: shortened while it owns the socket (negotiation, release)"),
    Need("DULServiceProvider", "_idle_timer", "instance", BOTH, True,
         "the network timeout's timer: restarted when the socket is handed back"),
    Need("DULServiceProvider", "_decode_pdu", "class", BOTH, True,
         "decodes a PDU read by the wire code, to replay it into the DUL"),
    Need("DULServiceProvider", "_recv_pdu", "instance", BOTH, True,
         "the queue of received PDUs: a replayed PDU goes here"),
    Need("DULServiceProvider", "_kill_thread", "instance", BOTH, True,
         "set when the DUL thread stops: stop reading the socket"),
    # -- public, but pynetdicom internals -----------------------------------------------------------
    Need("DULServiceProvider", "event_queue", "instance", BOTH, False,
         "state machine events: a replayed PDU's event goes here; must be empty to take the socket"),
    Need("DULServiceProvider", "to_user_queue", "instance", ("scu",), False,
         "must be empty to take the socket"),
    Need("DULServiceProvider", "to_provider_queue", "instance", ("scu",), False,
         "must be empty to take the socket"),
    Need("DULServiceProvider", "state_machine", "instance", BOTH, False,
         "the DUL's state machine: the socket is taken only in Sta6"),
    Need("DULServiceProvider", "send_pdu", "class", ("scp",), False,
         "sends the P-DATA primitive of a pre-encoded C-STORE response"),
    Need("StateMachine", "current_state", "instance", BOTH, False,
         "the association state (PS3.8 9.2): Sta6, established"),
    Need("Timer", "restart", "class", BOTH, False,
         "restarts the network timeout's timer"),
    Need("DIMSEServiceProvider", "msg_queue", "instance", BOTH, False,
         "received DIMSE messages: must be empty to take the socket"),
    Need("DIMSEServiceProvider", "message", "instance", ("scp",), False,
         "the DIMSE message being received (None between messages): must be None to take the socket"),
    Need("DIMSEServiceProvider", "send_msg", "class", ("scp",), False,
         "replaced per association to send plain C-STORE responses pre-encoded"),
    Need("DIMSEServiceProvider", "maximum_pdu_size", "class", ("scp",), False,
         "the peer's maximum PDU length: a pre-encoded response must fit in one PDV"),
    Need("DIMSEServiceProvider", "dul", "class", ("scp",), False,
         "the DUL that sends a pre-encoded response"),
    Need("ACSE", "is_aborted", "class", ("scu",), False,
         "whether the association was aborted while the DUL acts on a replayed PDU"),
)
# Not listed: ``AssociationSocket.socket`` (the TCP socket): both paths check at run time that it is
# a plain socket.socket and leave the association to pynetdicom otherwise. Nor the two attributes of our
# own that the SCU sets on pynetdicom's objects: ``_radstream_gate`` (DUL), ``_radstream_msg_id``
# (Association).


def _class(owner: str) -> Any:
    module, name, _path = OWNERS[owner]
    try:
        return getattr(importlib.import_module(module), name, None)
    except ImportError:
        return None


def _throwaway_association() -> Any:
    """An Association that is never started: what ``__init__`` sets is there, no thread, no socket."""
    from pynetdicom import AE
    from pynetdicom.association import Association

    return Association(AE(), "requestor")


def _instance(assoc: Any, owner: str) -> Any:
    obj = assoc
    for part in filter(None, OWNERS[owner][2].split(".")):
        obj = getattr(obj, part, None)
    return obj


def check_pynetdicom(side: Side | None = None) -> list[str]:
    """The pynetdicom attributes the direct paths of ``side`` (default: both sides) rely on and the
    installed pynetdicom lacks, as "Owner.name"; empty: all there."""
    wanted = [n for n in NEEDS if side is None or side in n.sides]
    missing: list[str] = []
    assoc: Any = None
    if any(n.on == "instance" for n in wanted):
        try:
            assoc = _throwaway_association()
        except Exception as exc:  # a changed constructor: every instance attribute counts as missing
            missing.append(f"Association(AE(), 'requestor'): {type(exc).__name__}: {exc}")
    for need in wanted:
        cls = _class(need.owner)
        if need.on == "class":
            found = cls is not None and hasattr(cls, need.name)
        else:
            obj = None if assoc is None else _instance(assoc, need.owner)
            found = obj is not None and (cls is None or isinstance(obj, cls)) and hasattr(obj, need.name)
        if not found:
            missing.append(need.label)
    return missing


def version() -> str:
    import pynetdicom

    return str(getattr(pynetdicom, "__version__", "unknown"))


def version_problem(installed: str | None = None) -> str | None:
    """Why the installed (or the given) pynetdicom version is not one the wire code was tested with."""
    v = version() if installed is None else installed
    (lo_major, lo_minor), (hi_major, hi_minor) = TESTED
    tested = f">={lo_major}.{lo_minor},<{hi_major}.{hi_minor}"
    m = re.match(r"(\d+)\.(\d+)", v)
    if m is None:
        return f"pynetdicom version {v!r} unknown (tested: {tested})"
    if not TESTED[0] <= (int(m[1]), int(m[2])) < TESTED[1]:
        return f"pynetdicom {v} is not a tested version ({tested})"
    return None


_lock = threading.Lock()
_verdicts: dict[Side, bool] = {}


def usable(side: Side) -> bool:
    """Whether the direct paths of ``side`` may run on the installed pynetdicom; checked once per
    process and side, with one warning when not (the caller then uses plain pynetdicom)."""
    verdict = _verdicts.get(side)
    if verdict is not None:
        return verdict
    with _lock:
        if side not in _verdicts:
            missing = check_pynetdicom(side)
            problems = [f"missing {', '.join(missing)}"] if missing else []
            why = version_problem()
            if why is not None:
                problems.append(why)
            if problems:
                LOG.warning("pynetdicom %s: the direct %s path is off, plain pynetdicom serves instead (%s)",
                            version(), side.upper(), "; ".join(problems))
            _verdicts[side] = not problems
        return _verdicts[side]


def reset() -> None:
    """Forget the verdicts (tests): the next ``usable`` checks again."""
    with _lock:
        _verdicts.clear()
