"""Exceptions raised by lobster: one class per core ``ErrorKind``.

Every class derives from :class:`LobsterError`, so ``except LobsterError``
catches everything lobster raises. Some also derive from the builtin that
means the same thing, so code that knows nothing of lobster still works:
``except LookupError`` catches :class:`NotFoundError`, ``except ValueError``
catches :class:`InvalidArgumentError`, and so on. Each class carries the
stable ``kind`` string of the core error it stands for; the message is the
whole cause chain.
"""

from __future__ import annotations

__all__ = [
    "LobsterError",
    "NotFoundError",
    "AlreadyExistsError",
    "InvalidArgumentError",
    "InvalidStateError",
    "PermissionDeniedError",
    "UnsupportedError",
    "TimedOutError",
    "ExhaustedError",
    "CorruptError",
    "HostFailureError",
    "GuestFailureError",
    "InternalError",
    "BY_KIND",
]


class LobsterError(Exception):
    """Base of every error lobster raises. ``kind`` names the core ErrorKind."""

    kind: str = "unknown"


class NotFoundError(LobsterError, LookupError):
    """A tenant, file or other named thing does not exist."""

    kind = "not_found"


class AlreadyExistsError(LobsterError):
    """The thing to create exists already (tenant name, route, interface)."""

    kind = "already_exists"


class InvalidArgumentError(LobsterError, ValueError):
    """Input was rejected; the message names the field and the reason."""

    kind = "invalid_argument"


class InvalidStateError(LobsterError):
    """The operation does not fit the tenant's current state."""

    kind = "invalid_state"


class PermissionDeniedError(LobsterError, PermissionError):
    """The process lacks a privilege (root, CAP_NET_ADMIN, /dev/kvm access)."""

    kind = "permission_denied"


class UnsupportedError(LobsterError, NotImplementedError):
    """Not implemented on this host or in this version."""

    kind = "unsupported"


class TimedOutError(LobsterError, TimeoutError):
    """An external call or a lock did not answer in time."""

    kind = "timeout"


class ExhaustedError(LobsterError):
    """A finite pool (addresses, ports, uids) has no free entry."""

    kind = "exhausted"


class CorruptError(LobsterError):
    """Persistent state is unreadable or inconsistent; it was left untouched."""

    kind = "corrupt"


class HostFailureError(LobsterError, OSError):
    """A host-side system call or external service failed."""

    kind = "host_failure"


class GuestFailureError(LobsterError):
    """The guest (VM, agent, workload) misbehaved or failed."""

    kind = "guest_failure"


class InternalError(LobsterError):
    """A bug in lobster."""

    kind = "internal"


#: Exception class per ``kind`` string.
BY_KIND: dict[str, type[LobsterError]] = {
    cls.kind: cls
    for cls in (
        NotFoundError,
        AlreadyExistsError,
        InvalidArgumentError,
        InvalidStateError,
        PermissionDeniedError,
        UnsupportedError,
        TimedOutError,
        ExhaustedError,
        CorruptError,
        HostFailureError,
        GuestFailureError,
        InternalError,
    )
}
