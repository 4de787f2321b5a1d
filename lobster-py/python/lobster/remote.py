"""``lobster.connect``: a host driven over its HTTP API (``lobsterd serve``).

:func:`connect` returns a :class:`RemoteHost` with the methods of
:class:`lobster.Host` (blocking ones and their ``*_async`` twins), the same
return types and the same exceptions, so a script works locally or remotely
unchanged::

    host = lobster.connect("unix:/run/lobsterd-api/api.sock", token)
    host = lobster.connect("https://fleet-7:8443", token, cafile="ca.pem")
    for tenant in host.list():
        print(tenant.name, tenant.status)

Long operations (spawn, evict, suspend, resume, molt) start an operation on
the server and follow its event stream until it ends; the result or error
is the operation's. Every request has a timeout (``timeout``, seconds); a
long operation's stream may last longer but must show a sign of life (the
server sends one every 15 s). The token is sent only over a unix socket or
TLS: plain ``http://`` is refused.

This module is a thin client: it knows the routes, not the operations.
"""

from __future__ import annotations

import asyncio
import builtins
import functools
import http.client
import json
import socket
import ssl
import urllib.parse
from collections.abc import Awaitable, Iterator
from typing import Any, Callable, Optional, TypeVar, cast

from ._lobster import Tenant, TenantSpec
from .exceptions import (
    BY_KIND,
    ExhaustedError,
    HostFailureError,
    InternalError,
    InvalidArgumentError,
    InvalidStateError,
    LobsterError,
    PermissionDeniedError,
    TimedOutError,
    UnsupportedError,
)
from .health import MoltReport, Overview

__all__ = ["connect", "RemoteHost", "API_CODES"]

T = TypeVar("T")

#: Exception class per code the API adds to the core's kinds.
API_CODES: dict[str, type[LobsterError]] = {
    "unauthorized": PermissionDeniedError,
    "forbidden": PermissionDeniedError,
    "conflict": InvalidStateError,
    "bad_request": InvalidArgumentError,
    "too_large": InvalidArgumentError,
    "rate_limited": ExhaustedError,
    "too_many": ExhaustedError,
    "unavailable": HostFailureError,
    "internal": InternalError,
}

#: Seconds a long operation's event stream may stay silent (the server's
#: keep-alive comes every 15 s).
STREAM_SILENCE_S = 60.0


def error_of(status: Optional[int], body: bytes) -> LobsterError:
    """The exception for an error answer ``{code, message}`` (the one place
    a code meets a class); ``code`` and ``status`` (the HTTP status, None
    for an operation's error) are kept on it."""
    try:
        document = json.loads(body)
        code, message = str(document["code"]), str(document["message"])
    except (ValueError, KeyError, TypeError):
        code, message = "internal", f"HTTP {status}: {body[:200]!r}"
    cls = BY_KIND.get(code) or API_CODES.get(code, LobsterError)
    error = cls(message)
    error.code = code  # type: ignore[attr-defined]
    error.status = status  # type: ignore[attr-defined]
    return error


class _UnixConnection(http.client.HTTPConnection):
    """HTTP over a unix socket."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


def _connector(url: str, cafile: Optional[str], timeout: float) -> Callable[[], http.client.HTTPConnection]:
    """A factory of connections to ``url``; refuses what would expose the token."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme == "unix":
        path = urllib.parse.unquote(parsed.path)
        if not path.startswith("/"):
            raise InvalidArgumentError(f"url `{url}`: a unix socket needs an absolute path (unix:/run/...)")
        return lambda: _UnixConnection(path, timeout)
    if parsed.scheme == "https":
        if not parsed.hostname:
            raise InvalidArgumentError(f"url `{url}`: no host")
        context = ssl.create_default_context(cafile=cafile)
        host, port = parsed.hostname, parsed.port or 443
        return lambda: http.client.HTTPSConnection(host, port, timeout=timeout, context=context)
    raise InvalidArgumentError(
        f"url `{url}`: the scheme must be unix: or https: (a token is never sent in clear)"
    )


class RemoteHost:
    """A lobster host behind ``lobsterd serve``; see :func:`connect`."""

    def __init__(self, url: str, token: str, *, cafile: Optional[str] = None, timeout: float = 30.0) -> None:
        if not token or any(c.isspace() for c in token):
            raise InvalidArgumentError("token: empty or holds white space")
        self._url = url
        self._token = token
        self._connect = _connector(url, cafile, timeout)

    @property
    def url(self) -> str:
        """Where the API answers."""
        return self._url

    def __repr__(self) -> str:
        return f"RemoteHost(url={self._url!r})"

    # -- transport ---------------------------------------------------------

    def _headers(self, body: Optional[bytes]) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self._token}", "Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        return headers

    def _request(self, method: str, path: str, body: Optional[bytes] = None) -> Any:
        """One request; the decoded JSON answer, or the error's exception."""
        connection = self._connect()
        try:
            connection.request(method, path, body=body, headers=self._headers(body))
            response = connection.getresponse()
            data = response.read()
        except socket.timeout as e:
            raise TimedOutError(f"{method} {path}: no answer from {self._url}: {e}") from e
        except OSError as e:
            raise HostFailureError(f"{method} {path}: {self._url}: {e}") from e
        finally:
            connection.close()
        if response.status >= 400:
            raise error_of(response.status, data)
        return json.loads(data) if data else None

    def _events(self, path: str) -> Iterator[tuple[str, str]]:
        """The server-sent events of ``path`` as (event, data) pairs."""
        connection = self._connect()
        try:
            connection.request("GET", path, headers=self._headers(None))
            response = connection.getresponse()
            if response.status >= 400:
                raise error_of(response.status, response.read())
            if connection.sock is not None:
                connection.sock.settimeout(STREAM_SILENCE_S)
            event = "message"
            data: builtins.list[str] = []
            for raw in response:
                line = raw.decode().rstrip("\r\n")
                if not line:
                    if data:
                        yield event, "\n".join(data)
                    event, data = "message", []
                elif line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:"):
                    value = line[5:]
                    data.append(value[1:] if value.startswith(" ") else value)
        except socket.timeout as e:
            raise TimedOutError(f"GET {path}: {self._url} went silent: {e}") from e
        except OSError as e:
            raise HostFailureError(f"GET {path}: {self._url}: {e}") from e
        finally:
            connection.close()

    def _operation(self, method: str, path: str, body: Optional[bytes] = None) -> Any:
        """Starts a long operation and follows it to its end: its result, or
        its error raised."""
        operation = self._request(method, path, body)
        for event, data in self._events(f"/v1/operations/{operation['id']}/events"):
            if event == "operation":
                operation = json.loads(data)
                break
        if operation["state"] == "running":
            raise HostFailureError(f"operation {operation['id']}: the event stream ended before the operation")
        if operation["state"] == "failed":
            error = operation.get("error") or {}
            raise error_of(None, json.dumps(error).encode())
        return operation.get("result")

    @staticmethod
    def _tenant(document: Any) -> Tenant:
        return Tenant.from_json(json.dumps(document))

    @staticmethod
    def _path(name: str) -> str:
        # The server checks the name; quoting keeps it one path segment.
        return "/v1/tenants/" + urllib.parse.quote(name, safe="")

    # -- the methods of lobster.Host -----------------------------------------

    def list(self) -> builtins.list[Tenant]:
        """Every tenant, sorted by name."""
        return [self._tenant(t) for t in self._request("GET", "/v1/tenants")]

    def get(self, name: str) -> Tenant:
        """One tenant by name; raises ``NotFoundError`` if there is none."""
        return self._tenant(self._request("GET", self._path(name)))

    def token(self, name: str) -> str:
        """The token clients present to a tenant's gateway (admin scope)."""
        return cast(str, self._request("GET", self._path(name) + "/token")["token"])

    def spawn(self, spec: TenantSpec) -> Tenant:
        """Creates and starts a tenant."""
        if spec.from_snap is not None:
            raise UnsupportedError(
                "from_snap: restoring from an archive is not offered by the HTTP API; "
                "run `lobsterd spawn --from-snap` on the host"
            )
        body = spec._api_body().encode()
        return self._tenant(self._operation("POST", "/v1/tenants", body))

    def evict(self, name: str) -> None:
        """Removes a tenant and everything it holds."""
        self._operation("DELETE", self._path(name))

    def molt(self, name: Optional[str] = None) -> builtins.list[MoltReport]:
        """Health-checks one tenant (or every one that should run) and
        repairs what failed; one report per tenant."""
        if name is None:
            return cast("builtins.list[MoltReport]", self._operation("POST", "/v1/molt")["reports"])
        report = self._operation("POST", self._path(name) + "/molt")
        return [cast(MoltReport, report)] if report is not None else []

    def overview(self) -> Overview:
        """A snapshot of every tenant with the watchdog's view."""
        return cast(Overview, self._request("GET", "/v1/overview"))

    def suspend(self, name: str) -> Tenant:
        """Writes a running tenant's state to disk and stops its VM."""
        return self._tenant(self._operation("POST", self._path(name) + "/suspend"))

    def resume(self, name: str) -> Tenant:
        """Starts a suspended tenant again from its snapshot."""
        return self._tenant(self._operation("POST", self._path(name) + "/resume"))

    # -- awaitable twins (each blocking call on a worker thread) --------------

    @staticmethod
    def _async(call: Callable[..., T], *args: Any) -> Awaitable[T]:
        return asyncio.to_thread(functools.partial(call, *args))

    def list_async(self) -> Awaitable[builtins.list[Tenant]]:
        """Awaitable twin of ``list()``."""
        return self._async(self.list)

    def get_async(self, name: str) -> Awaitable[Tenant]:
        """Awaitable twin of ``get()``."""
        return self._async(self.get, name)

    def token_async(self, name: str) -> Awaitable[str]:
        """Awaitable twin of ``token()``."""
        return self._async(self.token, name)

    def spawn_async(self, spec: TenantSpec) -> Awaitable[Tenant]:
        """Awaitable twin of ``spawn()``."""
        return self._async(self.spawn, spec)

    def evict_async(self, name: str) -> Awaitable[None]:
        """Awaitable twin of ``evict()``."""
        return self._async(self.evict, name)

    def molt_async(self, name: Optional[str] = None) -> Awaitable[builtins.list[MoltReport]]:
        """Awaitable twin of ``molt()``."""
        return self._async(self.molt, name)

    def overview_async(self) -> Awaitable[Overview]:
        """Awaitable twin of ``overview()``."""
        return self._async(self.overview)

    def suspend_async(self, name: str) -> Awaitable[Tenant]:
        """Awaitable twin of ``suspend()``."""
        return self._async(self.suspend, name)

    def resume_async(self, name: str) -> Awaitable[Tenant]:
        """Awaitable twin of ``resume()``."""
        return self._async(self.resume, name)


def connect(url: str, token: str, *, cafile: Optional[str] = None, timeout: float = 30.0) -> RemoteHost:
    """A host over its HTTP API: ``unix:/path/to/api.sock`` or
    ``https://host:port`` (``cafile``: the CA that signed the server's
    certificate, else the system's), with an API token from
    ``lobsterd api-token create``."""
    return RemoteHost(url, token, cafile=cafile, timeout=timeout)
