"""The shared runtime: the GIL is released while a call blocks, and a
forked child is refused loudly instead of hanging."""

import fcntl
import os
import threading

import pytest

import lobster


def test_blocking_call_releases_the_gil(temp_host):
    # Hold the registry lock so list() blocks inside Rust. If list() kept the
    # GIL, this thread could never run again to release the lock, and list()
    # would fail with TimedOutError after the core's 30 s lock timeout.
    temp_host.seed(["alice"])
    host = lobster.Host(temp_host.config)
    outcome = {}
    with open(temp_host.state_dir / "registry.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        worker = threading.Thread(target=lambda: outcome.setdefault("tenants", host.list()))
        worker.start()
        worker.join(timeout=0.5)
        assert worker.is_alive(), "list() did not wait for the registry lock"
        busy = sum(range(100_000))  # Python work while list() blocks
        fcntl.flock(lock, fcntl.LOCK_UN)
    worker.join(timeout=30)
    assert busy and not worker.is_alive()
    assert [t.name for t in outcome["tenants"]] == ["alice"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_forked_child_is_refused_loudly(temp_host):
    host = lobster.Host(temp_host.config)
    host.list()  # start the runtime in this process
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: report what list() did, then leave without cleanup
        try:
            host.list()
            message = "no error"
        except RuntimeError as e:
            message = f"RuntimeError: {e}"
        except BaseException as e:  # noqa: BLE001 - report anything else
            message = f"{type(e).__name__}: {e}"
        os.write(write_end, message.encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        message = pipe.read().decode()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert message.startswith("RuntimeError:") and "fork" in message, message


def test_threads_share_one_host(temp_host):
    # Eight threads list, get and read the overview through one Host at
    # once while a ninth tries a spawn (refused: no images): every call
    # gets its own answer, none hangs or crashes.
    temp_host.seed(["alice", "bob"])
    host = lobster.Host(temp_host.config)
    errors: list[BaseException] = []
    spawned: list[BaseException] = []

    def reader() -> None:
        try:
            for _ in range(25):
                assert [t.name for t in host.list()] == ["alice", "bob"]
                assert host.get("bob").name == "bob"
                assert len(host.overview()["tenants"]) == 2
        except BaseException as e:  # noqa: BLE001 - collected, asserted below
            errors.append(e)

    def spawner() -> None:
        try:
            host.spawn(lobster.TenantSpec("carol"))
        except lobster.NotFoundError as e:
            spawned.append(e)

    threads = [threading.Thread(target=reader) for _ in range(8)] + [threading.Thread(target=spawner)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a call hung"
    assert errors == [] and len(spawned) == 1, (errors, spawned)
