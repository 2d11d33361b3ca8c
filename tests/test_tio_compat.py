"""What docs/protocol.md's "Tio compatibility" section decides, over a real server: a
map subscription without START, meta/containers, and the Tio commands corral refuses."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import tioclient
from conftest import serving

from corral.adapters.client import connect
from corral.kernel import InvalidArgument


@contextmanager
def tio_server() -> Iterator[str]:
    with serving(zmq=False) as urls:
        yield f"tio://127.0.0.1:{urls.port}"


def exchange(url: str, data: bytes, until: bytes) -> bytes:
    """Send ``data`` on a new connection; what comes back up to and with ``until``."""
    host, port, _ = tioclient.ParseUrl(url)
    with socket.create_connection((host, port)) as sock:
        sock.sendall(data)
        got = b""
        while not got.endswith(until):
            chunk = sock.recv(65536)
            assert chunk, got
            got += chunk
        return got


def recorder(into: list[tuple[Any, ...]]) -> tioclient.Sink:
    return lambda container, name, key, value, metadata: into.append((name, key, value))


# -- subscribe without START ----------------------------------------------------------


def test_a_map_subscription_without_start_sends_every_record_before_its_answer() -> None:
    """Tio's classic rule: a `set` event per record, in key order, then `answer ok`."""
    with tio_server() as url:
        tio = tioclient.Connect(url)
        m = tio.CreateContainer("m", "volatile_map")
        m["b"], m["a"] = 2, ("one", "meta")
        expected = (b"answer ok handle 1 volatile_map\r\n"
                    b"event 1 set key string 1 value string 3 metadata string 4\r\n"
                    b"a\r\none\r\nmeta\r\n"
                    b"event 1 set key string 1 value int 1\r\nb\r\n2\r\n"
                    b"answer ok\r\n")
        assert expected == exchange(url, b"open m\r\nsubscribe 1\r\n", b"answer ok\r\n")
        tio.close()


def test_a_classic_client_mirrors_a_map_by_subscribing() -> None:
    """The classic client's sink sees the records there, then every change after."""
    with tio_server() as url:
        writer = tioclient.Connect(url)
        m = writer.CreateContainer("m", "volatile_map")
        m["x"], m["y"] = 1, 2
        reader = tioclient.Connect(url)
        mirror: dict[Any, Any] = {}

        def sink(container: Any, name: str, key: Any, value: Any, metadata: Any) -> None:
            if name == "delete":
                del mirror[key]
            else:
                mirror[key] = value

        reader.OpenContainer("m").subscribe(sink)
        reader.DispatchAllEvents()
        assert {"x": 1, "y": 2} == mirror
        m["z"] = 3
        del m["x"]
        reader.Dispatch()
        reader.Dispatch()
        assert {"y": 2, "z": 3} == mirror
        writer.close()
        reader.close()


@pytest.mark.parametrize(("kind", "start", "expected"), [
    ("volatile_map", "__none__", []),
    ("volatile_map", "1", [("set", "b", 2)]),  # once (classic Tio sent it twice)
    ("volatile_map", "-1", [("set", "b", 2)]),
    ("volatile_list", None, []),
    ("volatile_list", "__none__", []),
    ("volatile_list", "0", [("push_back", 0, 1), ("push_back", 1, 2)]),
])
def test_what_comes_first_by_kind_and_start(kind: str, start: str | None,
                                            expected: list[tuple[Any, ...]]) -> None:
    """A map with START, and a list with or without, as classic Tio; `__none__`: none."""
    with tio_server() as url:
        tio = tioclient.Connect(url)
        c = tio.CreateContainer("c", kind)
        if kind == "volatile_map":
            c["a"], c["b"] = 1, 2
        else:
            c.extend([1, 2])
        tio.SendCommand("subscribe", c.handle, *([start] if start else []))
        assert expected == [event[:3] for event in tio.pending_events.get(c.handle, [])]
        tio.close()


def test_a_bad_start_is_refused_and_the_connection_goes_on() -> None:
    """A word that is no int, or a slice end (HEAD's), is an error; nothing subscribes."""
    with tio_server() as url:
        tio = tioclient.Connect(url)
        m = tio.CreateContainer("m", "volatile_map")
        for args in (["k"], ["0", "5"]):
            with pytest.raises(Exception, match="^answer error invalid_argument "):
                tio.SendCommand("subscribe", m.handle, *args)
        tio.SendCommand("subscribe", m.handle, "__none__")  # not already subscribed
        tio.close()


def test_corrals_client_subscribes_to_a_map_for_changes_only() -> None:
    """corral's own client (subscribe() without start) is not sent the records there."""
    with serving(zmq=False) as urls, connect(urls.tcp) as client:
        m = client.map("m")
        m.set("old", 1)
        events = m.subscribe()
        m.set("new", 2)
        event = events.get(timeout=10)
        assert ("set", "new", 2) == (event.name, event.key, event.value)
        events.close()


# -- meta/containers --------------------------------------------------------------------


def test_meta_containers_lists_the_containers() -> None:
    """Open it (or create it, as a classic client may): a map of name -> type, in key
    order, that get, get_count and query read."""
    with tio_server() as url:
        tio = tioclient.Connect(url)
        tio.CreateContainer("b", "volatile_list")
        tio.CreateContainer("a", "job")
        meta = tio.OpenContainer("meta/containers")
        assert "volatile_map" == meta.type
        assert 2 == len(meta)
        assert [("a", "job", None), ("b", "volatile_list", None)] == (
            meta.query_with_key_and_metadata())
        assert "volatile_list" == meta["b"]
        assert ("a", "job", None) == meta.get(0, withKeyAndMetadata=True)
        assert [("b", "volatile_list", None)] == meta.query_with_key_and_metadata(-1)
        assert "volatile_map" == tio.CreateContainer("meta/containers", "volatile_map").type
        with pytest.raises(Exception, match="^answer error not_found "):
            meta.get("c")
        tio.close()


def test_meta_containers_tells_its_subscribers_of_creates_and_deletes() -> None:
    """Subscribing sends the listing (as a map's), then `set` for each new container and
    `delete` for each deleted one, whichever connection made the change; opening an
    existing container with create tells nothing."""
    with tio_server() as url:
        tio = tioclient.Connect(url)
        tio.CreateContainer("old", "queue")
        events: list[tuple[Any, ...]] = []
        tio.OpenContainer("meta/containers").subscribe(recorder(events))
        other = tioclient.Connect(url)
        other.CreateContainer("new", "volatile_list")
        other.CreateContainer("new", "volatile_list")
        other.SendCommand("delete_container", "old")
        tio.Dispatch()
        tio.Dispatch()
        assert [("set", "old", "queue"), ("set", "new", "volatile_list"),
                ("delete", "old", None)] == events
        other.close()
        tio.close()


def test_meta_containers_is_read_only_and_reserved() -> None:
    """Writes on it, other meta/ names and deleting it are refused, and change nothing."""
    with tio_server() as url:
        tio = tioclient.Connect(url)
        meta = tio.OpenContainer("meta/containers")
        tio.CreateContainer("l", "volatile_list")
        for refused in (lambda: meta.set("x", "volatile_list"), lambda: meta.delete("l"),
                        meta.clear, lambda: meta.set_property("p", "v"),
                        lambda: tio.CreateContainer("meta/sessions", "volatile_map"),
                        lambda: tio.SendCommand("delete_container", "meta/containers")):
            with pytest.raises(Exception, match="^answer error invalid_argument "):
                refused()
        with pytest.raises(Exception, match="^answer error wrong_kind "):
            tio.CreateContainer("meta/containers", "volatile_list")
        assert ["l"] == meta.keys()
        meta.close()
        with pytest.raises(Exception, match="^answer error not_found "):
            len(meta)
        tio.close()


# -- what corral refuses ------------------------------------------------------------------


def test_diff_and_permissions_are_refused_as_not_supported() -> None:
    """The classic client's diff and permission calls get a clear answer (not `invalid
    command`), and the connection goes on; corral's client raises InvalidArgument."""
    with tio_server() as url:
        tio = tioclient.Connect(url)
        lst = tio.CreateContainer("l", "volatile_list")
        calls = [("diff_start", "corral has no diffs; use subscribe",
                  lambda: tio.DiffStart(lst.handle)),
                 ("diff", "corral has no diffs; use subscribe", lambda: tio.Diff("1")),
                 ("set_permission", "corral has no per-user permissions; serve --token "
                  "guards the whole server",
                  lambda: tio.SetPermission("volatile_list", "l", "*", "deny", "bob"))]
        for command, why, call in calls:
            with pytest.raises(Exception) as raised:
                call()
            assert (f"answer error invalid_argument not supported: {command} ({why})"
                    == str(raised.value).split(" - ")[0])
        assert "pong" == tio.ping()[2]
        tio.close()
        expected = (b"answer error invalid_argument not supported: diff_start (corral has "
                    b"no diffs; use subscribe)\r\nanswer ok pong\r\n")
        assert expected == exchange(url, b"diff_start 1 value string 5\r\nping\n\r\nping\r\n",
                                    b"pong\r\n")  # its payload drained, not read
    with serving(zmq=False) as urls, connect(urls.tcp) as client:
        with pytest.raises(InvalidArgument, match=r"^not supported: diff_start \("):
            client.raw(["diff_start", "1"])
        client.list("l").push_back(1)  # the connection goes on
