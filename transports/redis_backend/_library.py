"""The ``corral`` Redis Function library on a server or a cluster: loading it, calling it.

A plain client (``redis.Redis``, or one from a Sentinel's ``master_for``) talks to one
primary, whose replicas get the library with its replication. On a Redis Cluster every
primary runs the calls for its own slots, so each needs the library: ``load`` sends it
to them all. A primary can still lack it later (a node added to the cluster, a server
restarted without persistence, a ``FUNCTION FLUSH``): ``fcall`` then loads it again
and calls once more, since a call of a missing function ran nothing.

``Cluster`` is the ``RedisCluster`` that ``connect("redis+cluster://...")`` uses: it
routes an ``FCALL`` by the hash slot of its first key, computed here, where redis-py
asks a server (``COMMAND GETKEYS``, twice per call) to find which arguments are keys.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis
from redis.cluster import RedisCluster
from redis.exceptions import RedisClusterException

__all__ = ["Cluster", "fcall", "load"]

MISSING = "Function not found"  # Redis's and Valkey's answer to FCALL of no function


def _code() -> str:
    # The package builds the library from its Lua sources, and imports this module
    # before it has: take it when it is needed.
    from . import LIBRARY

    return LIBRARY


def load(client: Any) -> None:
    """Load (or replace) the ``corral`` library where ``client``'s commands run: its
    server, or every primary of a ``RedisCluster``. Raises redis.RedisError."""
    if isinstance(client, RedisCluster):
        _load_everywhere(client)
    else:  # through function_load, which a client that has loaded it already may skip
        client.function_load(_code(), replace=True)


def _load_everywhere(client: Any) -> None:
    """Load the library on ``client``'s server or each of its cluster's primaries, even
    through a wrapper that skips ``function_load``."""
    targets = {"target_nodes": RedisCluster.PRIMARIES} if isinstance(
        client, RedisCluster) else {}  # (a wrapped cluster: redis-py's default is that)
    client.execute_command("FUNCTION LOAD", "REPLACE", _code(), **targets)


def fcall(client: Any, keys: Sequence[str], *args: Any) -> Any:
    """``FCALL corral`` with ``keys`` and ``args`` on ``client``; if the server that
    holds the keys has no library, load it everywhere and call again. Raises
    redis.ResponseError with the function's error, redis.RedisError."""
    try:
        return client.fcall("corral", len(keys), *keys, *args)
    except redis.ResponseError as error:
        if not str(error).startswith(MISSING):
            raise
    _load_everywhere(client)
    return client.fcall("corral", len(keys), *keys, *args)


class Cluster(RedisCluster):
    """A ``RedisCluster`` that finds an ``FCALL``'s slot from its keys itself, as
    redis-py does for ``EVAL``, instead of asking a server which arguments are keys."""

    def determine_slot(self, *args: Any) -> int | None:
        if len(args) > 2 and str(args[0]).upper() in ("FCALL", "FCALL_RO"):
            keys = args[3:3 + int(args[2])]
            if keys:
                slots: set[int] = {self.keyslot(key)  # type: ignore[no-untyped-call]
                                   for key in keys}
                if len(slots) != 1:
                    raise RedisClusterException(
                        f"{args[0]} - all keys must map to the same key slot")
                return slots.pop()
        slot: int | None = super().determine_slot(*args)
        return slot
