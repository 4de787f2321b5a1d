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

A host elsewhere is driven the same way over its HTTP API
(``lobsterd serve``), see :mod:`lobster.remote`::

    host = lobster.connect("https://fleet-7:8443", token, cafile="ca.pem")
"""

from __future__ import annotations

from ._lobster import ERROR_KINDS, Host, LogStream, Tenant, TenantSpec, __version__
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
from .remote import RemoteHost, connect

__all__ = [
    "ERROR_KINDS",
    "Host",
    "LogStream",
    "RemoteHost",
    "connect",
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
