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
import contextlib
import functools
import http.client
import json
import os
import socket
import ssl
import sys
import time
import types
import urllib.parse
from collections.abc import Awaitable, Iterator
from typing import Any, Callable, Optional, TypeVar, Union, cast

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
from .health import MoltReport, Overview, ProgressCallback, SnapReport

__all__ = ["connect", "RemoteHost", "RemoteLogStream", "API_CODES"]

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

#: Largest answer read (a list of thousands of tenants is a few MiB).
MAX_ANSWER_BYTES = 64 << 20

#: Largest server-sent event read.
MAX_EVENT_BYTES = 1 << 20

#: How often an operation is polled when its event stream failed.
POLL_EVERY_S = 0.5


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


class RemoteLogStream:
    """A log followed over the API: iterate (or ``async for``) over its
    lines; ``close()`` or a ``with`` block ends it. A stream the server
    ends with an ``error`` event raises its exception."""

    def __init__(self, events: Iterator[tuple[str, str]]) -> None:
        self._events = events

    def __iter__(self) -> RemoteLogStream:
        return self

    def __next__(self) -> str:
        for event, data in self._events:
            if event == "line":
                return data
            if event == "error":
                raise error_of(None, data.encode())
        raise StopIteration

    def __aiter__(self) -> RemoteLogStream:
        return self

    async def __anext__(self) -> str:
        line = await asyncio.to_thread(next, self, None)
        if line is None:
            raise StopAsyncIteration
        return line

    def close(self) -> None:
        """Ends the stream (its connection closes)."""
        close = getattr(self._events, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> RemoteLogStream:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


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
            with self._mapped(f"{method} {path}"):
                connection.request(method, path, body=body, headers=self._headers(body))
                response = connection.getresponse()
                data = response.read(MAX_ANSWER_BYTES + 1)
                if len(data) > MAX_ANSWER_BYTES:
                    raise HostFailureError(f"{method} {path}: the answer is over {MAX_ANSWER_BYTES} bytes")
                if response.length:  # bytes its Content-Length promised but never came
                    raise HostFailureError(f"{method} {path}: the answer was cut short")
                if response.status >= 400:
                    raise error_of(response.status, data)
                return json.loads(data) if data else None
        finally:
            connection.close()

    def _events(self, path: str, silence: Optional[float] = STREAM_SILENCE_S) -> Iterator[tuple[str, str]]:
        """The server-sent events of ``path`` as (event, data) pairs; the
        request is made (and an error answer raised) at once. A stream
        silent for ``silence`` seconds is an error (None: no bound, for a
        log that may be quiet for ever). Lines and events are bounded: a
        server cannot make the client hold unbounded memory."""
        connection = self._connect()
        try:
            with self._mapped(f"GET {path}"):
                connection.request("GET", path, headers=self._headers(None))
                response = connection.getresponse()
                if response.status >= 400:
                    raise error_of(response.status, response.read(MAX_ANSWER_BYTES))
                if connection.sock is not None:
                    connection.sock.settimeout(silence)
        except BaseException:
            connection.close()
            raise
        return self._read_events(connection, response, path)

    def _read_events(
        self, connection: http.client.HTTPConnection, response: http.client.HTTPResponse, path: str
    ) -> Iterator[tuple[str, str]]:
        try:
            with self._mapped(f"GET {path}"):
                event = "message"
                data: builtins.list[str] = []
                size = 0
                while raw := response.readline(MAX_EVENT_BYTES + 1):
                    size += len(raw)
                    if len(raw) > MAX_EVENT_BYTES or size > MAX_EVENT_BYTES:
                        raise HostFailureError(f"GET {path}: an event over {MAX_EVENT_BYTES} bytes")
                    line = raw.decode().rstrip("\r\n")
                    if not line:
                        if data:
                            yield event, "\n".join(data)
                        event, data, size = "message", [], 0
                    elif line.startswith("event:"):
                        event = line[6:].strip()
                    elif line.startswith("data:"):
                        value = line[5:]
                        data.append(value[1:] if value.startswith(" ") else value)
        finally:
            connection.close()

    @contextlib.contextmanager
    def _mapped(self, what: str) -> Iterator[None]:
        """Raises what fails inside as lobster raises it: its own errors as
        they are, a timeout as ``TimedOutError``, any other failure of the
        connection or of a malformed answer as ``HostFailureError``."""
        try:
            yield
        except LobsterError:
            raise  # some derive from OSError or ValueError: never re-wrapped
        except socket.timeout as e:
            raise TimedOutError(f"{what}: no answer from {self._url}: {e}") from e
        except (OSError, http.client.HTTPException, ValueError) as e:
            raise HostFailureError(f"{what}: {self._url}: {e}") from e

    def _operation(
        self, method: str, path: str, body: Optional[bytes] = None, progress: Optional[ProgressCallback] = None
    ) -> Any:
        """Starts a long operation and follows it to its end: its result, or
        its error raised."""
        return self._run(method, path, body, progress).get("result")

    def _run(
        self, method: str, path: str, body: Optional[bytes] = None, progress: Optional[ProgressCallback] = None
    ) -> dict[str, Any]:
        """Starts a long operation and follows it to its end (its event
        stream, or polling when the stream fails): the ended operation, or
        its error raised. ``progress`` gets each step once, in order."""
        started = self._request(method, path, body)
        if not isinstance(started, dict) or not isinstance(started.get("id"), str):
            raise HostFailureError(f"{method} {path}: the answer is not an operation")
        where = "/v1/operations/" + urllib.parse.quote(started["id"], safe="")
        operation: dict[str, Any] = started
        reported = 0
        try:
            for event, data in self._events(where + "/events"):
                if event == "progress" and progress is not None:
                    _report(progress, json.loads(data))
                    reported += 1
                elif event == "operation":
                    operation = json.loads(data)
                    break
        except (HostFailureError, TimedOutError, ExhaustedError, ValueError):
            pass  # the stream failed, not the operation: poll it
        while operation.get("state") == "running":
            time.sleep(POLL_EVERY_S)
            operation = self._request("GET", where)
        if progress is not None:  # the steps a failed stream did not carry
            for step in (operation.get("progress") or [])[reported:]:
                _report(progress, step)
        if operation.get("state") == "failed":
            error = operation.get("error") or {}
            raise error_of(None, json.dumps(error).encode())
        return operation

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

    def spawn(self, spec: TenantSpec, *, progress: Optional[ProgressCallback] = None) -> Tenant:
        """Creates and starts a tenant; ``progress`` gets each step."""
        if spec.from_snap is not None:
            raise UnsupportedError(
                "from_snap: restoring from an archive is not offered by the HTTP API; "
                "run `lobsterd spawn --from-snap` on the host"
            )
        body = spec._api_body().encode()
        return self._tenant(self._operation("POST", "/v1/tenants", body, _checked(progress)))

    def evict(self, name: str, *, keep_overlay: bool = False) -> None:
        """Removes a tenant and everything it holds."""
        if keep_overlay:
            raise UnsupportedError("keep_overlay: the HTTP API always removes the overlay disk")
        self._operation("DELETE", self._path(name))

    def logs(self, name: str, *, source: str = "workload", lines: int = 100) -> builtins.list[str]:
        """The last ``lines`` lines of a tenant's ``workload`` (or ``agent``) log."""
        query = urllib.parse.urlencode({"source": source, "lines": lines})
        return cast("builtins.list[str]", self._request("GET", f"{self._path(name)}/logs?{query}")["lines"])

    def follow_logs(self, name: str, *, source: str = "workload", lines: int = 10) -> RemoteLogStream:
        """Follows a tenant's log: an iterator (and async iterator) of lines."""
        query = urllib.parse.urlencode({"source": source, "lines": lines})
        return RemoteLogStream(self._events(f"{self._path(name)}/logs/follow?{query}", silence=None))

    def snap(self, name: str, output: Union[str, "os.PathLike[str]", None] = None) -> SnapReport:
        """Archives a tenant's disk on its host; with ``output``, the archive
        is downloaded there (admin scope) and ``path`` names the local copy."""
        operation = self._run("POST", self._path(name) + "/snap")
        report = cast(SnapReport, operation["result"])
        if output is not None:
            self._download(f"/v1/operations/{operation['id']}/archive", os.fspath(output))
            report["path"] = os.fspath(output)
        return report

    def _download(self, path: str, output: str) -> None:
        """Streams the body of ``path`` into the new file ``output`` (0600)."""
        connection = self._connect()
        try:
            with self._mapped(f"GET {path} into {output}"):
                connection.request("GET", path, headers=self._headers(None))
                response = connection.getresponse()
                if response.status >= 400:
                    raise error_of(response.status, response.read(MAX_ANSWER_BYTES))
                try:
                    fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                except FileExistsError as e:
                    raise InvalidArgumentError(f"output `{output}`: exists already") from e
                with os.fdopen(fd, "wb") as file:
                    while chunk := response.read(1 << 20):
                        file.write(chunk)
        finally:
            connection.close()

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

    def suspend(self, name: str, *, progress: Optional[ProgressCallback] = None) -> Tenant:
        """Writes a running tenant's state to disk and stops its VM."""
        return self._tenant(self._operation("POST", self._path(name) + "/suspend", None, _checked(progress)))

    def resume(self, name: str, *, progress: Optional[ProgressCallback] = None) -> Tenant:
        """Starts a suspended tenant again from its snapshot."""
        return self._tenant(self._operation("POST", self._path(name) + "/resume", None, _checked(progress)))

    def rotate_tokens(self, name: str) -> Tenant:
        """Gives a running tenant new agent and gateway tokens (admin scope)."""
        return self._tenant(self._request("POST", self._path(name) + "/rotate-tokens"))

    def watchdog_log(self, lines: int = 100) -> builtins.list[str]:
        """The last ``lines`` lines of the host's detached watchdog's log."""
        query = urllib.parse.urlencode({"lines": lines})
        return cast("builtins.list[str]", self._request("GET", f"/v1/watchdog/log?{query}")["lines"])

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

    def spawn_async(self, spec: TenantSpec, *, progress: Optional[ProgressCallback] = None) -> Awaitable[Tenant]:
        """Awaitable twin of ``spawn()`` (``progress`` runs on the caller's loop)."""
        return self._async(functools.partial(self.spawn, progress=_on_loop(progress)), spec)

    def evict_async(self, name: str, *, keep_overlay: bool = False) -> Awaitable[None]:
        """Awaitable twin of ``evict()``."""
        return self._async(functools.partial(self.evict, keep_overlay=keep_overlay), name)

    def logs_async(self, name: str, *, source: str = "workload", lines: int = 100) -> Awaitable[builtins.list[str]]:
        """Awaitable twin of ``logs()``."""
        return self._async(functools.partial(self.logs, source=source, lines=lines), name)

    def follow_logs_async(self, name: str, *, source: str = "workload", lines: int = 10) -> Awaitable[RemoteLogStream]:
        """Awaitable twin of ``follow_logs()``."""
        return self._async(functools.partial(self.follow_logs, source=source, lines=lines), name)

    def snap_async(self, name: str, output: Union[str, "os.PathLike[str]", None] = None) -> Awaitable[SnapReport]:
        """Awaitable twin of ``snap()``."""
        return self._async(self.snap, name, output)

    def molt_async(self, name: Optional[str] = None) -> Awaitable[builtins.list[MoltReport]]:
        """Awaitable twin of ``molt()``."""
        return self._async(self.molt, name)

    def overview_async(self) -> Awaitable[Overview]:
        """Awaitable twin of ``overview()``."""
        return self._async(self.overview)

    def suspend_async(self, name: str, *, progress: Optional[ProgressCallback] = None) -> Awaitable[Tenant]:
        """Awaitable twin of ``suspend()``."""
        return self._async(functools.partial(self.suspend, progress=_on_loop(progress)), name)

    def resume_async(self, name: str, *, progress: Optional[ProgressCallback] = None) -> Awaitable[Tenant]:
        """Awaitable twin of ``resume()``."""
        return self._async(functools.partial(self.resume, progress=_on_loop(progress)), name)


    def rotate_tokens_async(self, name: str) -> Awaitable[Tenant]:
        """Awaitable twin of ``rotate_tokens()``."""
        return self._async(self.rotate_tokens, name)

    def watchdog_log_async(self, lines: int = 100) -> Awaitable[builtins.list[str]]:
        """Awaitable twin of ``watchdog_log()``."""
        return self._async(self.watchdog_log, lines)


def _checked(progress: Optional[ProgressCallback]) -> Optional[ProgressCallback]:
    """``progress`` if it is None or callable (checked before anything is
    asked of the host, as lobster.Host does)."""
    if progress is not None and not callable(progress):
        raise TypeError("progress: expected a callable taking one dict")
    return progress


def _report(progress: ProgressCallback, event: Any) -> None:
    """Calls a progress callback as lobster.Host does: an exception it
    raises goes to ``sys.unraisablehook`` and the operation goes on."""
    try:
        progress(event)
    except Exception as e:  # noqa: BLE001 - the callback's, reported not raised
        sys.unraisablehook(
            types.SimpleNamespace(  # the hook reads these attributes only
                exc_type=type(e), exc_value=e, exc_traceback=e.__traceback__,
                err_msg="Exception ignored in progress callback", object=progress,
            )
        )


def _on_loop(progress: Optional[ProgressCallback]) -> Optional[ProgressCallback]:
    """``progress`` scheduled on the running event loop (the async twins'
    callbacks run where the caller's coroutines run)."""
    callback = _checked(progress)
    if callback is None:
        return None
    loop = asyncio.get_running_loop()
    return lambda event: loop.call_soon_threadsafe(callback, event)


def connect(url: str, token: str, *, cafile: Optional[str] = None, timeout: float = 30.0) -> RemoteHost:
    """A host over its HTTP API: ``unix:/path/to/api.sock`` or
    ``https://host:port`` (``cafile``: the CA that signed the server's
    certificate, else the system's), with an API token from
    ``lobsterd api-token create``."""
    return RemoteHost(url, token, cafile=cafile, timeout=timeout)
