"""Operations on Redis: the configuration audit (``audit``, ``warn_on``) against real
redis-server processes configured each way, and ``corral redis-check URL`` as a
process."""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from conftest import running_redis

from corral.adapters.cli import main
from corral.kernel import InvalidArgument
from corral.transports.redis_backend.audit import Finding, audit, warn_on


@contextlib.contextmanager
def redis_with(directory: Path, *options: str) -> Iterator[redis.Redis]:
    """A client of a redis-server of this test's own with ``options``."""
    with running_redis(directory, *options) as server:
        client = server.client()
        yield client
        client.close()


def verdicts(findings: list[Finding]) -> dict[str, tuple[str, str]]:
    """Each finding's setting -> (level, found)."""
    return {finding.setting: (finding.level, finding.found) for finding in findings}


def version_of(client: redis.Redis) -> tuple[str, bool]:
    """The server's version as the audit reports it, and whether it has WAITAOF."""
    text = str(client.info("server")["redis_version"])
    major, minor = map(int, text.split(".")[:2])
    return f"Redis {text}", (major, minor) >= (7, 2)


def url_of(client: redis.Redis) -> str:
    return f"unix://{client.connection_pool.connection_kwargs['path']}"


def run_check(*argv: str) -> subprocess.CompletedProcess[str]:
    """``corral redis-check ARGV`` as a process."""
    return subprocess.run([sys.executable, "-m", "corral.adapters.cli", "redis-check",
                           *argv], capture_output=True, text=True, timeout=60)


# -- the audit --------------------------------------------------------------------------


def test_the_test_server_without_aof(redis_server: redis.Redis) -> None:
    """No AOF, noeviction: only the AOF is wrong, and only if durability asks for it."""
    version, has_waitaof = version_of(redis_server)
    waitaof = ("ok", "available" if has_waitaof else "missing")
    assert {"version": ("ok", version), "WAITAOF": waitaof,
            "maxmemory-policy": ("ok", "noeviction"), "appendonly": ("warning", "no"),
            "appendfsync": ("ok", "everysec")} == verdicts(audit(redis_server))
    assert {"version": ("ok", version), "WAITAOF": waitaof,
            "maxmemory-policy": ("ok", "noeviction"), "appendonly": ("warning", "no"),
            "appendfsync": ("warning", "everysec")} == verdicts(
        audit(redis_server, durability="always"))
    assert {"version": ("ok", version), "WAITAOF": waitaof,
            "maxmemory-policy": ("ok", "noeviction")} == verdicts(
        audit(redis_server, durability="none"))


@pytest.mark.parametrize(("maxmemory", "ending"), [
    ("64mb", f"; maxmemory is {64 << 20}"),
    ("0", "; no maxmemory is set now, but one set later (or by a managed service) starts "
          "the evictions"),
])
def test_an_evicting_server_is_a_warning_that_says_why(tmp_path: Path, maxmemory: str,
                                                       ending: str) -> None:
    """allkeys-lru: a warning naming the policy wanted and what eviction breaks, even
    while there is no limit."""
    with redis_with(tmp_path, "--appendonly", "no", "--maxmemory-policy", "allkeys-lru",
                    "--maxmemory", maxmemory) as client:
        findings = audit(client, durability="none")
    [eviction] = [f for f in findings if f.setting == "maxmemory-policy"]
    assert ("warning", "allkeys-lru", "noeviction") == (eviction.level, eviction.found,
                                                        eviction.wanted)
    assert "evicting a container's keys breaks it" in eviction.why
    assert eviction.why.endswith(ending)
    assert ["ok", "ok", "warning"] == [f.level for f in findings]


@pytest.mark.parametrize(("fsync", "durability", "expected"), [
    ("always", "always", "ok"),
    ("always", "everysec", "ok"),
    ("everysec", "always", "warning"),
    ("everysec", "everysec", "ok"),
    ("no", "everysec", "warning"),
    ("no", "always", "warning"),
])
def test_the_aof_against_the_durability_asked(tmp_path: Path, fsync: str, durability: str,
                                              expected: str) -> None:
    """With the AOF on, appendfsync decides: always suits both, everysec only
    everysec, no neither."""
    with redis_with(tmp_path, "--appendonly", "yes", "--appendfsync", fsync) as client:
        found = verdicts(audit(client, durability=durability))
        assert ("ok", "yes") == found["appendonly"]
        assert (expected, fsync) == found["appendfsync"]
        assert {} == {setting: verdict for setting, verdict in found.items()
                      if setting not in ("appendonly", "appendfsync") and verdict[0] != "ok"}
        assert {"version", "WAITAOF", "maxmemory-policy"} == set(verdicts(
            audit(client, durability="none")))  # nothing about the AOF
    assert (tmp_path / "appendonlydir").is_dir()  # the server did keep an AOF


def test_a_refused_config_gives_warnings_not_a_crash(tmp_path: Path) -> None:
    """CONFIG renamed away (as managed services do): each setting it could not read is
    a warning that says so; the version still comes from INFO."""
    with redis_with(tmp_path, "--appendonly", "no", "--rename-command", "CONFIG",
                    "") as client:
        version, _ = version_of(client)
        findings = audit(client, durability="always")
    assert {"version": ("ok", version), "maxmemory-policy": ("warning", "unknown"),
            "appendonly": ("warning", "unknown"),
            "appendfsync": ("warning", "unknown")} == {
        setting: verdict for setting, verdict in verdicts(findings).items()
        if setting != "WAITAOF"}
    for finding in findings[2:]:
        assert "the audit could not read it (CONFIG GET was refused (" in finding.why
        assert "unknown command" in finding.why


class ServerNamed:
    """A real server's client whose INFO says it is another server: the audit's
    version checks for servers this machine does not have. Everything but the
    version fields is the real server's answer."""

    def __init__(self, client: redis.Redis, **fields: str) -> None:
        self._client = client
        self._fields = fields

    def info(self, section: str) -> dict[str, Any]:
        return {**self._client.info(section), **self._fields}

    def config_get(self, *names: str) -> Any:
        return self._client.config_get(*names)


@pytest.mark.parametrize(("fields", "level", "found", "waitaof"), [
    ({"redis_version": "6.2.14"}, "error", "Redis 6.2.14", "missing"),
    ({"redis_version": "7.2.5"}, "ok", "Redis 7.2.5", "available"),
    ({"server_name": "valkey", "redis_version": "7.2.4", "valkey_version": "8.0.1"},
     "ok", "Valkey 8.0.1", "available"),
])
def test_the_version_decides_functions_and_waitaof(redis_server: redis.Redis,
                                                   fields: dict[str, str], level: str,
                                                   found: str, waitaof: str) -> None:
    """Before Redis 7.0 corral cannot run (an error); WAITAOF comes with 7.2; Valkey is
    judged by its own version."""
    findings = audit(ServerNamed(redis_server, **fields),  # type: ignore[arg-type]
                     durability="none")
    assert {"version": (level, found), "WAITAOF": ("ok", waitaof),
            "maxmemory-policy": ("ok", "noeviction")} == verdicts(findings)
    if level == "error":
        assert findings[0].why.endswith("corral cannot run here")


def test_an_unknown_durability_is_invalid(redis_server: redis.Redis) -> None:
    with pytest.raises(InvalidArgument, match="durability is one of always, everysec, "
                                              "none, not 'sometimes'"):
        audit(redis_server, durability="sometimes")


def test_warn_on_logs_what_is_not_ok(redis_server: redis.Redis,
                                     caplog: pytest.LogCaptureFixture) -> None:
    """Warnings as warnings (errors as errors) on corral.redis; nothing for "ok"."""
    findings = [*audit(redis_server, durability="always"),
                Finding(level="error", setting="version", found="Redis 6.2.14",
                        wanted="Redis >= 7.0", why="corral cannot run here")]
    with caplog.at_level(logging.INFO, logger="corral.redis"):
        warn_on(findings)
    assert [("corral.redis", logging.WARNING,
             "Redis warning: appendonly is no, wanted yes: durability 'always' needs the "
             "append-only file: without it a crash or restart loses every write since "
             "the last RDB snapshot, if there is one"),
            ("corral.redis", logging.WARNING,
             "Redis warning: appendfsync is everysec, wanted always: durability 'always': "
             "a power loss can lose about the last second of acknowledged writes (once "
             "appendonly is yes)"),
            ("corral.redis", logging.ERROR,
             "Redis error: version is Redis 6.2.14, wanted Redis >= 7.0: corral cannot "
             "run here")] == caplog.record_tuples


def test_warn_on_takes_a_logger(redis_server: redis.Redis,
                                caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        warn_on(audit(redis_server), logging.getLogger("myapp"))
    assert [("myapp", logging.WARNING)] == [(name, level) for name, level, _ in
                                            caplog.record_tuples]


# -- corral redis-check ------------------------------------------------------------------


def test_redis_check_of_a_good_server_exits_0(tmp_path: Path) -> None:
    """AOF fsynced always, noeviction: every line ok, exit 0; a ?prefix= changes
    nothing."""
    with redis_with(tmp_path, "--appendonly", "yes", "--appendfsync", "always") as client:
        done = run_check(f"{url_of(client)}?prefix=app", "--durability", "always")
    assert (0, "") == (done.returncode, done.stderr)
    lines = done.stdout.splitlines()
    assert [["ok", "version"], ["ok", "WAITAOF"], ["ok", "maxmemory-policy"],
            ["ok", "appendonly"], ["ok", "appendfsync"]] == [line.split()[:2]
                                                              for line in lines]
    assert ["noeviction", "wanted", "noeviction"] == lines[2].split()[2:5]
    assert ["always", "wanted", "always"] == lines[4].split()[2:5]


def test_redis_check_of_an_evicting_server_exits_1(tmp_path: Path) -> None:
    """A warning: exit 1, the line names the setting, what it is, what is wanted, why."""
    with redis_with(tmp_path, "--appendonly", "no",
                    "--maxmemory-policy", "volatile-lru") as client:
        done = run_check(url_of(client), "--durability", "none")
        as_json = run_check(url_of(client), "--durability", "none", "--json")
    assert (1, "") == (done.returncode, done.stderr)
    [line] = [line for line in done.stdout.splitlines() if "maxmemory-policy" in line]
    assert ["warning", "maxmemory-policy", "volatile-lru", "wanted",
            "noeviction"] == line.split()[:5]
    assert "evicting a container's keys breaks it" in line
    assert 1 == as_json.returncode
    assert {"level": "warning", "setting": "maxmemory-policy", "found": "volatile-lru",
            "wanted": "noeviction"} == {key: value for key, value in
                                        json.loads(as_json.stdout)[2].items()
                                        if key != "why"}


def test_redis_check_without_config_exits_1(tmp_path: Path) -> None:
    """CONFIG refused: warnings that it could not read the settings, no traceback."""
    with redis_with(tmp_path, "--rename-command", "CONFIG", "") as client:
        done = run_check(url_of(client))
    assert (1, "") == (done.returncode, done.stderr)
    assert 3 == done.stdout.count("the audit could not read it")


def test_redis_check_of_nothing_exits_2_without_the_password(tmp_path: Path) -> None:
    """Unreachable (a TCP port nobody listens on, a missing socket): exit 2, naming the
    URL but not its password."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    done = run_check(f"redis://:secret@127.0.0.1:{port}/0?prefix=app&password=secret2")
    assert (2, "") == (done.returncode, done.stdout)
    assert done.stderr.startswith(
        f"corral redis-check: cannot reach Redis at redis://:***@127.0.0.1:{port}/0: ")
    assert "secret" not in done.stderr and "Traceback" not in done.stderr
    done = run_check(f"unix://{tmp_path}/nothing.sock")
    assert 2 == done.returncode
    assert f"cannot reach Redis at unix://{tmp_path}/nothing.sock" in done.stderr


def test_redis_check_is_in_the_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit:
        main(["--help"])
    assert 0 == exit.value.code
    assert "audit a Redis server's settings for corral" in capsys.readouterr().out
