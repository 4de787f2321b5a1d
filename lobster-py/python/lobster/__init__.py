"""lobster: isolated microVM tenants on one host.

Open a host from its configuration and read or change its tenants::

    import lobster

    host = lobster.Host()              # $LOBSTERD_CONFIG or /etc/lobsterd/config.json
    for tenant in host.list():
        print(tenant.name, tenant.status, tenant.route)

Every operation blocks (with the GIL released) and has an ``*_async`` twin
that returns an awaitable. Errors are :class:`LobsterError` subclasses, one
per kind (see :mod:`lobster.exceptions`).
``Host.molt()`` and ``Host.overview()`` return plain dicts, typed in
:mod:`lobster.health`.
"""

from __future__ import annotations

from ._lobster import ERROR_KINDS, Host, Tenant, TenantSpec, __version__
from .exceptions import (
    AlreadyExistsError,
    CorruptError,
    ExhaustedError,
    GuestFailureError,
    HostFailureError,
    InternalError,
    InvalidArgumentError,
    InvalidStateError,
    LobsterError,
    NotFoundError,
    PermissionDeniedError,
    TimedOutError,
    UnsupportedError,
)

__all__ = [
    "ERROR_KINDS",
    "Host",
    "Tenant",
    "TenantSpec",
    "__version__",
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
]
