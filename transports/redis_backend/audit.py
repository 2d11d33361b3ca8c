"""What corral needs of its Redis server, checked: ``audit`` and ``warn_on``.

``audit(client)`` reads the server's version (``INFO server``) and its settings
(``CONFIG GET appendonly appendfsync maxmemory-policy maxmemory``) and says, one
``Finding`` per item, whether they suit corral: Redis >= 7.0 or Valkey >= 7.2 (corral's
commands are Redis Functions), ``maxmemory-policy noeviction`` (an evicted key breaks
its container), and an append-only file that matches the durability asked for.
``corral redis-check URL`` prints the findings; ``warn_on`` logs the ones that are not
"ok". A server that refuses CONFIG (managed services rename or disable it) gives
warnings that say what could not be read, never an exception.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import Any

import attrs
import redis

from corral.kernel import InvalidArgument

__all__ = ["DURABILITIES", "LEVELS", "Finding", "audit", "warn_on"]

DURABILITIES = ("always", "everysec", "none")
LEVELS = ("ok", "warning", "error")  # from good to bad
_SETTINGS = ("appendonly", "appendfsync", "maxmemory-policy", "maxmemory")
_FUNCTIONS = {"redis": (7, 0), "valkey": (7, 2)}  # the first versions with Functions
_WAITAOF = {"redis": (7, 2), "valkey": (7, 2)}
_FSYNCS = {"always": ("always",), "everysec": ("always", "everysec")}


@attrs.frozen(kw_only=True)
class Finding:
    """One item of the audit: a ``setting`` (or "version", "WAITAOF"), the value
    ``found`` on the server, the value corral ``wanted``, ``why`` it matters, and the
    verdict ``level``: "ok", "warning" or "error" (corral cannot run)."""

    level: str = attrs.field(validator=attrs.validators.in_(LEVELS))
    setting: str
    found: str
    wanted: str
    why: str

    def __str__(self) -> str:
        return f"{self.level}: {self.setting} is {self.found}, wanted {self.wanted}: {self.why}"


def audit(client: redis.Redis, *, durability: str = "everysec") -> list[Finding]:
    """The findings about the server ``client`` talks to, for corral with
    ``durability`` "always" (each acknowledged write fsynced), "everysec" (at most a
    second lost) or "none" (no check of the append-only file).

    Raises InvalidArgument for another ``durability``, and redis.ConnectionError (or
    another redis.RedisError but ResponseError) if the server cannot be reached."""
    if durability not in DURABILITIES:
        raise InvalidArgument(f"durability is one of {', '.join(DURABILITIES)}, "
                              f"not {durability!r}")
    findings = _version_findings(client)
    try:
        config: dict[Any, Any] = client.config_get(*_SETTINGS)
    except redis.ResponseError as error:  # renamed, disabled, or denied by an ACL
        config, refused = {}, f"CONFIG GET was refused ({error})"
    else:
        refused = "CONFIG GET did not answer it"
    findings.append(_eviction(config, refused))
    if durability != "none":
        findings += _aof(config, refused, durability)
    return findings


def warn_on(findings: Iterable[Finding], logger: logging.Logger | None = None) -> None:
    """Log each finding that is not "ok", as a warning or an error, to ``logger``
    (``logging.getLogger("corral.redis")`` by default)."""
    log = logger or logging.getLogger("corral.redis")
    for finding in findings:
        if finding.level != "ok":
            log.log(logging.ERROR if finding.level == "error" else logging.WARNING,
                    "Redis %s", finding)


def _version_findings(client: redis.Redis) -> list[Finding]:
    """The server's version against the Functions' minimum, and a note on WAITAOF."""
    try:
        info: dict[str, Any] = client.info("server")
    except redis.ResponseError as error:
        info, refused = {}, f"INFO server was refused ({error})"
    else:
        refused = "INFO server did not say"
    server = "valkey" if str(info.get("server_name", "")).lower() == "valkey" else "redis"
    text = str(info.get(f"{server}_version", ""))
    match = re.match(r"(\d+)\.(\d+)", text)
    name = "Valkey" if server == "valkey" else "Redis"
    low = ".".join(map(str, _FUNCTIONS[server]))
    if match is None:
        return [Finding(level="warning", setting="version", found="unknown",
                        wanted=f"{name} >= {low}",
                        why=f"the audit could not read it ({refused}): corral's commands "
                            f"are Redis Functions, which {name} has since {low}")]
    version = (int(match[1]), int(match[2]))
    why = f"corral's commands are Redis Functions (FUNCTION LOAD, FCALL), which {name} " \
          f"has since {low}"
    if version < _FUNCTIONS[server]:
        functions = Finding(level="error", setting="version", found=f"{name} {text}",
                            wanted=f"{name} >= {low}", why=f"{why}: corral cannot run here")
    else:
        functions = Finding(level="ok", setting="version", found=f"{name} {text}",
                            wanted=f"{name} >= {low}", why=why)
    if version >= _WAITAOF[server]:
        waitaof = Finding(level="ok", setting="WAITAOF", found="available",
                          wanted="Redis >= 7.2 (optional)",
                          why="a write can wait until the AOF of this server and of its "
                              "replicas has it on disk")
    else:
        waitaof = Finding(level="ok", setting="WAITAOF", found="missing",
                          wanted="Redis >= 7.2 (optional)",
                          why="only WAIT (replicas received a write, not fsynced it); "
                              "WAITAOF comes with Redis 7.2")
    return [functions, waitaof]


def _eviction(config: dict[Any, Any], refused: str) -> Finding:
    policy, limit = config.get("maxmemory-policy"), config.get("maxmemory")
    if policy is None:
        return Finding(level="warning", setting="maxmemory-policy", found="unknown",
                       wanted="noeviction",
                       why=f"the audit could not read it ({refused}): with any other "
                           "policy Redis may evict a container's keys, which breaks it")
    if policy == "noeviction":
        return Finding(level="ok", setting="maxmemory-policy", found=policy,
                       wanted="noeviction",
                       why="a full Redis refuses writes (OOM) instead of dropping keys")
    bound = (f"maxmemory is {limit}" if limit not in (None, "0") else
             "no maxmemory is set now, but one set later (or by a managed service) starts "
             "the evictions")
    return Finding(level="warning", setting="maxmemory-policy", found=policy,
                   wanted="noeviction",
                   why="at maxmemory Redis evicts keys, and evicting a container's keys "
                       "breaks it (records vanish, a parked waiter is never served, "
                       f"an index points at nothing); {bound}")


def _aof(config: dict[Any, Any], refused: str, durability: str) -> list[Finding]:
    """The append-only file's settings against ``durability`` ("always" or
    "everysec")."""
    wanted = _FSYNCS[durability]
    appendonly, appendfsync = config.get("appendonly"), config.get("appendfsync")
    asked = f"durability {durability!r}"
    findings = []
    if appendonly is None:
        findings.append(Finding(level="warning", setting="appendonly", found="unknown",
                                wanted="yes", why=f"the audit could not read it ({refused}); "
                                f"{asked} needs the append-only file"))
    elif appendonly == "yes":
        findings.append(Finding(level="ok", setting="appendonly", found=appendonly,
                                wanted="yes",
                                why=f"{asked}: every write goes to the append-only file"))
    else:
        findings.append(Finding(level="warning", setting="appendonly", found=appendonly,
                                wanted="yes",
                                why=f"{asked} needs the append-only file: without it a "
                                    "crash or restart loses every write since the last "
                                    "RDB snapshot, if there is one"))
    if appendfsync is None:
        findings.append(Finding(level="warning", setting="appendfsync", found="unknown",
                                wanted=" or ".join(wanted),
                                why=f"the audit could not read it ({refused})"))
        return findings
    loses = {"always": "Redis fsyncs the AOF before it answers: nothing acknowledged is "
                       "lost on this node",
             "everysec": "a power loss can lose about the last second of acknowledged "
                         "writes",
             "no": "the OS decides when the AOF reaches the disk: a power loss can lose "
                   "the last 30 seconds or so of acknowledged writes"}
    why = f"{asked}: " + loses.get(appendfsync, "an unknown policy")
    if appendonly is not None and appendonly != "yes":
        why += " (once appendonly is yes)"
    findings.append(Finding(level="ok" if appendfsync in wanted else "warning",
                            setting="appendfsync", found=appendfsync,
                            wanted=" or ".join(wanted), why=why))
    return findings
