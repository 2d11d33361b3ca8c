"""Acknowledgement by replicas (``?replicas=N``): each change waits until N replicas
have it, or raises NotReplicated; against a real primary and replica the test starts
on 127.0.0.1."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from conftest import wait_until

from corral.adapters._redis_client import RedisCorral
from corral.adapters.client import connect
from corral.kernel import JobState
from corral.transports.redis_backend import NotReplicated


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _server(directory: Path, port: int, *extra: str) -> subprocess.Popen[bytes]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed: apt-get install redis-server")
    directory.mkdir()
    return subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "no", "--dir", str(directory),
                             *extra], stdout=subprocess.DEVNULL)


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[int, redis.Redis, subprocess.Popen[bytes]]]:
    """A primary and its replica: the primary's port, a client of the replica, and
    the replica's process (to stop it)."""
    primary_port, replica_port = _free_port(), _free_port()
    primary = _server(tmp_path / "primary", primary_port)
    replica = _server(tmp_path / "replica", replica_port, "--replicaof", "127.0.0.1",
                      str(primary_port))
    to_replica = redis.Redis(port=replica_port)
    try:
        def linked() -> bool:
            with contextlib.suppress(redis.ConnectionError):
                return to_replica.info("replication").get("master_link_status") == "up"
            return False

        wait_until(linked, 20)
        yield primary_port, to_replica, replica
    finally:
        for process in (replica, primary):
            process.terminate()
            process.wait(10)


def test_each_change_waits_for_the_replica(pair: Any) -> None:
    port, to_replica, _ = pair
    with connect(f"redis://127.0.0.1:{port}/0?prefix=ack&replicas=1") as corral:
        assert isinstance(corral, RedisCorral)
        jobs = corral.jobs("j")
        for n in range(50):  # acknowledged: the replica has it already, every time
            id = jobs.put(n)
            assert to_replica.hexists("ack:{j}:job:" + id, "item")
        job = jobs.claim(timeout=0)
        jobs.finish(job, "done")
        assert to_replica.hget("ack:{j}:job:" + job.id, "state") == b"finished"


def test_a_change_no_replica_took_raises_not_replicated(pair: Any) -> None:
    port, to_replica, replica = pair
    # Long enough for the replica to acknowledge the create on a loaded machine; the
    # put after the replica is gone waits it out once.
    url = f"redis://127.0.0.1:{port}/0?prefix=ack&replicas=1&replicas_timeout=2"
    with connect(url) as corral:
        jobs = corral.jobs("j")
        replica.terminate()
        replica.wait(10)
        with pytest.raises(NotReplicated, match="0 of 1 replicas"):
            jobs.put("alone")
        assert jobs.statistics().ready == 1  # applied on the primary all the same
        assert jobs.state("1") is JobState.READY  # reads are not waited for
