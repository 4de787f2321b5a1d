"""`lobster.connect`: the same methods as `lobster.Host` over `lobsterd
serve`, giving equal results and the same exceptions. Each test compares a
local Host and a RemoteHost of one temporary host (the HTTP server runs over
the real core; no VM is involved: T2 drives real guests)."""

from __future__ import annotations

import asyncio
import inspect

import pytest

import lobster
from lobster.remote import API_CODES, error_of


@pytest.fixture
def served(temp_host):
    temp_host.seed(["alice", "bob"])
    with temp_host.serve() as served:
        yield temp_host, served


def remote(served, scope="admin"):
    return lobster.connect(served.url, served.tokens[scope])


def test_remote_host_has_every_method_of_host_with_its_parameters():
    local = {n for n in dir(lobster.Host) if not n.startswith("_") and callable(getattr(lobster.Host, n))}
    here = {n for n in dir(lobster.RemoteHost) if not n.startswith("_") and callable(getattr(lobster.RemoteHost, n))}
    assert local <= here, f"missing: {sorted(local - here)}"

    def shape(function):
        return [(p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()][1:]

    for name in local:
        assert shape(getattr(lobster.RemoteHost, name)) == shape(getattr(lobster.Host, name)), name


def test_reads_equal_the_local_host(served):
    host, server = served
    local, far = lobster.Host(host.config), remote(server, "read")
    assert far.list() == local.list()
    assert [t.name for t in far.list()] == ["alice", "bob"]
    assert far.get("bob") == local.get("bob")
    assert far.get("bob").to_dict() == local.get("bob").to_dict()
    assert far.overview()["tenants"] == local.overview()["tenants"]


def test_token_needs_the_admin_scope(served):
    host, server = served
    assert remote(server, "admin").token("alice") == lobster.Host(host.config).token("alice")
    with pytest.raises(lobster.PermissionDeniedError) as info:
        remote(server, "read").token("alice")
    assert info.value.code == "forbidden" and info.value.status == 403


def test_a_wrong_token_is_permission_denied_and_reveals_nothing(served):
    _, server = served
    far = lobster.connect(server.url, "lob_00000000_" + "0" * 64)
    for call in (far.list, lambda: far.get("alice"), lambda: far.get("nobody")):
        with pytest.raises(lobster.PermissionDeniedError) as info:
            call()
        assert info.value.code == "unauthorized" and info.value.status == 401


@pytest.mark.parametrize(("operation", "needs"), [("suspend", "running with a VM"), ("resume", "suspended")])
def test_operation_errors_are_the_core_kinds(served, operation, needs):
    host, server = served
    far = remote(server, "operate")
    with pytest.raises(lobster.InvalidStateError, match=f"{operation} needs {needs}") as info:
        getattr(far, operation)("alice")
    assert info.value.kind == "invalid_state" and info.value.code == "invalid_state"
    assert [(t.name, t.status) for t in far.list()] == [("alice", "running"), ("bob", "running")]


@pytest.mark.parametrize("operation", ["get", "evict", "suspend", "resume", "molt"])
def test_a_missing_tenant_is_not_found(served, operation):
    _, server = served
    with pytest.raises(lobster.NotFoundError):
        getattr(remote(server), operation)("nobody")


def test_spawn_without_images_fails_as_locally_and_leaves_nothing(served):
    host, server = served
    spec = lobster.TenantSpec("carol", vcpus=1, memory_mib=512, env={"A": "1"}, secrets={"KEY": "s3cret"})
    with pytest.raises(lobster.NotFoundError, match="kernel image") as local:
        lobster.Host(host.config).spawn(spec)
    with pytest.raises(lobster.NotFoundError, match="kernel image") as far:
        remote(server, "operate").spawn(spec)
    assert far.value.kind == local.value.kind
    assert "carol" not in [t.name for t in remote(server).list()]


def test_spawn_from_an_archive_is_unsupported_remotely(served, tmp_path):
    _, server = served
    with pytest.raises(lobster.UnsupportedError, match="from_snap"):
        remote(server, "operate").spawn(lobster.TenantSpec("carol", from_snap=tmp_path / "a.tar.zst"))


def test_molt_of_every_tenant_is_one_report_each(served):
    host, server = served
    reports = remote(server, "operate").molt()
    assert sorted(r["tenant"] for r in reports) == ["alice", "bob"]


def test_a_read_token_cannot_operate(served):
    _, server = served
    with pytest.raises(lobster.PermissionDeniedError):
        remote(server, "read").evict("alice")
    assert [t.name for t in remote(server).list()] == ["alice", "bob"]


def test_evict_removes_the_tenant(served):
    host, server = served
    remote(server, "operate").evict("bob")
    assert [t.name for t in lobster.Host(host.config).list()] == ["alice"]


def test_awaitable_twins(served):
    host, server = served
    far = remote(server)

    async def main():
        tenants, alice, token = await asyncio.gather(far.list_async(), far.get_async("alice"), far.token_async("alice"))
        with pytest.raises(lobster.NotFoundError):
            await far.get_async("nobody")
        return tenants, alice, token

    tenants, alice, token = asyncio.run(main())
    local = lobster.Host(host.config)
    assert tenants == local.list() and alice == local.get("alice") and token == local.token("alice")


@pytest.mark.parametrize(
    ("url", "reason"),
    [("http://127.0.0.1:1", "never sent in clear"), ("unix:relative.sock", "absolute path"), ("https://", "no host")],
)
def test_urls_that_would_expose_the_token_are_refused(url, reason):
    with pytest.raises(lobster.InvalidArgumentError, match=reason):
        lobster.connect(url, "lob_x_y")


def test_a_token_with_white_space_is_refused():
    with pytest.raises(lobster.InvalidArgumentError, match="token"):
        lobster.connect("unix:/nowhere.sock", "lob_x\r\nX-Evil: 1")


def test_an_absent_server_is_a_host_failure(tmp_path):
    with pytest.raises(lobster.HostFailureError, match="nowhere"):
        lobster.connect(f"unix:{tmp_path}/nowhere.sock", "lob_x_y").list()


def test_every_api_code_and_kind_has_a_class():
    for kind in lobster.ERROR_KINDS:
        assert error_of(500, f'{{"code": "{kind}", "message": "m"}}'.encode()).kind == kind
    for code, cls in API_CODES.items():
        assert type(error_of(400, f'{{"code": "{code}", "message": "m"}}'.encode())) is cls
    garbled = error_of(502, b"<html>bad gateway</html>")
    assert isinstance(garbled, lobster.LobsterError) and garbled.status == 502


def test_tenant_from_json_round_trips_and_names_bad_input(served):
    host, _ = served
    alice = lobster.Host(host.config).get("alice")
    assert lobster.Tenant.from_json(alice.to_json()) == alice
    with pytest.raises(lobster.InvalidArgumentError, match="tenant JSON"):
        lobster.Tenant.from_json('{"name": "x"}')


@pytest.mark.parametrize("where", ["local", "remote"])
def test_logs_snap_and_follow_name_bad_input_and_missing_tenants(served, where):
    host, server = served
    h = lobster.Host(host.config) if where == "local" else remote(server)
    with pytest.raises(lobster.InvalidArgumentError, match="source"):
        h.logs("alice", source="kernel")
    for call in (lambda: h.logs("nobody"), lambda: h.snap("nobody"), lambda: h.follow_logs("nobody")):
        with pytest.raises(lobster.NotFoundError):
            call()


def test_watchdog_log_and_rotate_tokens_as_locally(served):
    host, server = served
    local = lobster.Host(host.config)
    for call in (lambda h: h.watchdog_log(3), lambda h: h.rotate_tokens("nobody")):
        with pytest.raises(lobster.NotFoundError) as here:
            call(local)
        with pytest.raises(lobster.NotFoundError) as there:
            call(remote(server))
        assert str(there.value) and str(here.value).startswith(str(there.value))
    with pytest.raises(lobster.PermissionDeniedError):
        remote(server, "operate").rotate_tokens("alice")


def test_a_progress_that_is_not_callable_is_refused_before_anything(served):
    host, server = served
    with pytest.raises(TypeError, match="progress"):
        remote(server).suspend("alice", progress=42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="progress"):
        remote(server).spawn(lobster.TenantSpec("carol"), progress="no")  # type: ignore[arg-type]
    assert [t.name for t in lobster.Host(host.config).list()] == ["alice", "bob"]


def test_evict_keeping_the_overlay_is_local_only(served):
    host, server = served
    with pytest.raises(lobster.UnsupportedError, match="keep_overlay"):
        remote(server, "operate").evict("bob", keep_overlay=True)
    lobster.Host(host.config).evict("bob", keep_overlay=True)
    assert [t.name for t in lobster.Host(host.config).list()] == ["alice"]


@pytest.fixture
def hostile(tmp_path):
    """A unix-socket server answering every request with `answer` (bytes,
    set by the test) and closing: a server that lies."""
    import socketserver
    import threading

    class Server(socketserver.ThreadingUnixStreamServer):
        daemon_threads = True
        block_on_close = False

    class Handler(socketserver.StreamRequestHandler):
        timeout = 5

        def handle(self):
            while self.rfile.readline() not in (b"\r\n", b""):
                pass
            self.wfile.write(server.answer)

    path = str(tmp_path / "hostile.sock")
    server = Server(path, Handler)
    server.answer = b""
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server, f"unix:{path}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nnot j",  # not JSON
        b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n[]",  # cut short
        b"garbage\r\n\r\n",  # not HTTP
    ],
)
def test_a_lying_server_is_a_host_failure(hostile, answer):
    server, url = hostile
    server.answer = answer
    with pytest.raises(lobster.HostFailureError):
        lobster.connect(url, "lob_x_y").list()


def test_an_endless_event_is_cut_at_its_bound(hostile):
    server, url = hostile
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n"
    server.answer = head + b"event: line\ndata: " + b"x" * (2 << 20) + b"\n\n"
    with pytest.raises(lobster.HostFailureError, match="over"):
        next(lobster.connect(url, "lob_x_y").follow_logs("alice"))


def test_an_error_answer_keeps_its_class_through_the_transport(hostile):
    server, url = hostile
    body = b'{"code":"forbidden","message":"no"}'
    server.answer = b"HTTP/1.1 403 Forbidden\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    with pytest.raises(lobster.PermissionDeniedError):
        lobster.connect(url, "lob_x_y").follow_logs("alice")
