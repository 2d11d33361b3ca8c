"""The thread facade on a real three-node Redis Cluster (``redis+cluster://``) and on a
Sentinel-managed primary (``redis+sentinel://``): every kind's commands and blocking
waits on containers held by different nodes, and the examples' processes, with no
CROSSSLOT error anywhere, the library on every primary (and back after a primary lost
it), and URLs that fail clearly."""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import socket
import subprocess
from collections.abc import Iterable, Iterator
from typing import Any, cast

import pytest
import redis
from conftest import start, wait_until
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.exceptions import ResponseError
from redis.retry import Retry
from test_examples import run

from corral.adapters._redis_client import RedisCorral
from corral.adapters.client import connect
from corral.kernel import AlreadyExists, Empty, NotFound
from corral.transports.redis_backend import _library

_prefixes = itertools.count()

# Container names by the node that holds them: `redis-cli --cluster create` gives the
# nodes a third of the 16384 hash slots each, in order (a test checks these).
ON_NODE = ({"list": "lb", "map": "ma", "queue": "qa", "feed": "fd", "sorted": "sb"},
           {"list": "ld", "map": "mc", "queue": "qc", "feed": "fa", "sorted": "sa"},
           {"list": "la", "map": "mb", "queue": "qb", "feed": "fb", "sorted": "sd"})
each_node = pytest.mark.parametrize("names", ON_NODE, ids=("node0", "node1", "node2"))


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: apt-get install redis-server")
    return path


def _bindable(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_ports(count: int) -> list[int]:
    """Ports p free on 127.0.0.1 with p + 10000 (a cluster node's bus) free as well."""
    ports: list[int] = []
    while len(ports) < count:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if port < 55535 and port not in ports and _bindable(port + 10000):
            ports.append(port)
    return ports


@contextlib.contextmanager
def _servers(*commands: list[str]) -> Iterator[list[redis.Redis]]:
    """Start each redis-server command line (each has its ``--port``); yield a client
    of each once it answers PING; shut them all down at the end."""
    processes: list[subprocess.Popen[bytes]] = []
    clients: list[redis.Redis] = []
    try:
        for command in commands:
            processes.append(subprocess.Popen(command, stdout=subprocess.DEVNULL))
            clients.append(redis.Redis(  # no retries: SHUTDOWN answers by hanging up
                port=int(command[command.index("--port") + 1]), retry=Retry(NoBackoff(), 0)))

        def up(client: redis.Redis) -> bool:
            try:
                return bool(client.ping())
            except redis.ConnectionError:
                return False

        wait_until(lambda: all(up(client) for client in clients))
        yield clients
    finally:
        for client in clients:
            with contextlib.suppress(redis.ConnectionError):  # it is gone, as asked
                client.shutdown(nosave=True)
            client.close()
        for process in processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[redis.Redis]]:
    """Three redis-servers on 127.0.0.1 in cluster mode, without persistence, made one
    Redis Cluster with a third of the slots each and no replicas: a client of each
    node. Fails, never skips, where redis-server or redis-cli is missing."""
    server, cli = _binary("redis-server"), _binary("redis-cli")
    directory = tmp_path_factory.mktemp("cluster")
    ports = _free_ports(3)
    with _servers(*([server, "--port", str(port), "--bind", "127.0.0.1",
                     "--cluster-enabled", "yes",
                     "--cluster-config-file", str(directory / f"nodes-{port}.conf"),
                     "--save", "", "--appendonly", "no", "--dir", str(directory)]
                    for port in ports)) as nodes:
        subprocess.run([cli, "--cluster", "create",
                        *(f"127.0.0.1:{port}" for port in ports),
                        "--cluster-replicas", "0", "--cluster-yes"],
                       check=True, stdout=subprocess.DEVNULL, timeout=60)
        wait_until(lambda: all("ok" == node.cluster("INFO")["cluster_state"]
                               for node in nodes))
        yield nodes


@pytest.fixture
def prefix() -> str:
    return f"c{os.getpid()}x{next(_prefixes)}"


@pytest.fixture
def url(cluster: list[redis.Redis], prefix: str) -> str:
    port = cluster[0].connection_pool.connection_kwargs["port"]
    return f"redis+cluster://127.0.0.1:{port}?prefix={prefix}"


@pytest.fixture
def a(url: str) -> Iterator[RedisCorral]:
    with connect(url) as corral:
        assert isinstance(corral, RedisCorral)
        yield corral


@pytest.fixture
def b(cluster: list[redis.Redis], prefix: str) -> Iterator[RedisCorral]:
    """Another facade on the cluster, from other nodes: another process."""
    ports = ",".join(f"127.0.0.1:{node.connection_pool.connection_kwargs['port']}"
                     for node in cluster[1:])
    with connect(f"redis+cluster://{ports}?prefix={prefix}") as corral:
        assert isinstance(corral, RedisCorral)
        yield corral


def holders(cluster: list[redis.Redis], prefix: str, names: Iterable[str]) -> set[int]:
    """The ports of the nodes that hold containers ``names``, from the hash slots of
    their keys and the cluster's slot table."""
    owners = {}
    for first, last, (_, port, *_), *_ in cluster[0].cluster("SLOTS"):
        owners.update(dict.fromkeys(range(first, last + 1), port))
    return {owners[key_slot(f"{prefix}:{{{name}}}:meta".encode())] for name in names}


@pytest.fixture(autouse=True)
def no_crossslot(cluster: list[redis.Redis]) -> Iterator[None]:
    """No node answered CROSSSLOT during the test."""
    yield
    for node in cluster:
        assert "errorstat_CROSSSLOT" not in node.info("errorstats")


def test_each_node_holds_containers_of_every_kind(cluster: list[redis.Redis],
                                                  a: RedisCorral, prefix: str) -> None:
    """The tests' containers of each kind are held by the three nodes, one each, and
    each node has the library once a facade connected."""
    for node, names in zip(cluster, ON_NODE, strict=True):
        assert {node.connection_pool.connection_kwargs["port"]} == holders(
            cluster, prefix, names.values())
    for node in cluster:
        assert [b"corral"] == [library[1] for library in  # (b"library_name", name, ...)
                               node.function_list(library="corral")]


@each_node
def test_lists_and_maps(a: RedisCorral, b: RedisCorral, names: dict[str, str]) -> None:
    """Every list and map command, on containers of one node, seen by another facade."""
    lst, other = a.list(names["list"]), b.list(names["list"])
    lst.push_back(1)
    lst.push_back({"two": [2]}, metadata="m")
    other.push_front(0)
    other.set(1, "one")
    lst.insert(1, "half")
    assert [0, "half", "one", {"two": [2]}] == [r.value for r in other.query()]
    assert "m" == lst.query(-1)[0].metadata and 4 == other.count() == len(lst)
    other.delete(0)
    assert "half" == lst.pop_front() and {"two": [2]} == other.pop_back()
    assert "one" == other.wait_pop_next(timeout=0)
    with pytest.raises(Empty):
        lst.pop_front()
    lst.set_property("owner", "a")
    assert "a" == other.get_property("owner")
    m, theirs = a.map(names["map"]), b.map(names["map"])
    m.set("b", 2)
    theirs.insert("a", 1, metadata={"k": 1})
    with pytest.raises(AlreadyExists):
        m.insert("a", 3)
    assert ["a", "b"] == theirs.keys() and 1 == m.get("a")
    assert 2 == theirs.wait_pop_key("b", timeout=0)
    theirs.clear()
    assert 0 == m.statistics().records


@each_node
def test_waits_are_served_by_another_process(a: RedisCorral, b: RedisCorral,
                                             names: dict[str, str]) -> None:
    """A list's, a map key's and a queue's parked caller, on one node, is served by the
    other facade's push; a wait nobody serves times out and leaves no waiter."""
    got: list[Any] = []
    lst, m, q = a.list(names["list"]), a.map(names["map"]), a.queue(names["queue"])
    threads = [start(lambda: got.append(lst.wait_pop_next(timeout=10))),
               start(lambda: got.append(m.wait_pop_key("k", timeout=10))),
               start(lambda: got.append(q.get(timeout=10)))]
    theirs = b.list(names["list"]), b.map(names["map"]), b.queue(names["queue"])
    wait_until(lambda: [1, 1, 1] == [c.statistics().waiters for c in theirs])
    theirs[0].push_back("to the list's")
    theirs[1].set("k", "to the map's")
    theirs[2].put("to the queue's")
    for thread in threads:
        thread.join(10)
    assert {"to the list's", "to the map's", "to the queue's"} == set(got)
    with pytest.raises(Empty):
        lst.wait_pop_next(timeout=0.05)
    assert 0 == theirs[0].statistics().waiters


@each_node
def test_queues_feeds_and_sorted_feeds(a: RedisCorral, b: RedisCorral,
                                       names: dict[str, str]) -> None:
    """Queues keep priority order, feeds publish order, sorted feeds the order set by
    hand, on containers of one node."""
    q = a.queue(names["queue"])
    q.put("low")
    b.queue(names["queue"]).put("high", priority=5)
    assert ["high", "low"] == [b.queue(names["queue"]).get(timeout=0), q.get_nowait()]
    feed = a.feed(names["feed"], max_length=2)
    first = feed.publish({"n": 1})
    b.feed(names["feed"]).publish({"n": 2}, id="two")
    feed.publish({"n": 3})
    assert ["two"] == b.feed(names["feed"]).ids()[:1] and 2 == len(feed.ids())
    with pytest.raises(NotFound):
        feed.get(first)
    sorted_feed, theirs = a.sorted_feed(names["sorted"]), b.sorted_feed(
        names["sorted"])
    one = sorted_feed.append("one")
    three = theirs.append("three")
    two = sorted_feed.insert_after(one, "two")
    theirs.move_first(three)
    theirs.edit(two, "TWO")
    assert [(three, "three"), (one, "one"), (two, "TWO")] == theirs.items()
    sorted_feed.retract(one)
    assert [three, two] == theirs.ids()


def test_a_command_costs_one_round_trip(cluster: list[redis.Redis], a: RedisCorral) -> None:
    """The facade's cluster client finds each call's node from its keys, without asking
    a server which arguments are keys (redis-py's COMMAND GETKEYS)."""
    lists = [a.list(names["list"]) for names in ON_NODE]
    for node in cluster:
        node.config_resetstat()
    for lst in lists:
        lst.push_back(1)
        assert 1 == lst.pop_front()
    stats = [node.info("commandstats") for node in cluster]
    assert [2, 2, 2] == [s["cmdstat_fcall"]["calls"] for s in stats]
    assert not any("cmdstat_command|getkeys" in s for s in stats)


def test_a_primary_that_lost_the_library_gets_it_back(cluster: list[redis.Redis],
                                                      url: str, prefix: str) -> None:
    """After every primary lost the library (a restart without persistence, a new
    node), the next call loads it on all of them and runs."""
    with connect(url):
        pass
    for node in cluster:
        node.function_flush()
    client = _library.Cluster.from_url(url.replace("redis+cluster", "redis").split("?")[0])
    try:
        with pytest.raises(ResponseError, match="corral:NotFound"):  # it ran: no container
            _library.fcall(client, [f"{prefix}:{{la}}:meta"], "count", "server")
    finally:
        client.close()
    for node in cluster:
        assert 1 == len(node.function_list(library="corral"))


def test_cluster_urls_that_cannot_work_fail_clearly(url: str) -> None:
    """A cluster has no databases; a cluster nobody answers for is a ConnectionError
    that does not show the password."""
    with pytest.raises(ValueError, match="no databases"):
        connect(url.replace("?", "/1?"))
    port = _free_ports(1)[0]
    with pytest.raises(ConnectionError, match="cannot reach Redis") as caught:
        connect(f"redis+cluster://:secret@127.0.0.1:{port}", connect_timeout=2)
    assert isinstance(caught.value, OSError) and "secret" not in str(caught.value)


@pytest.mark.parametrize(("example", "ran"), [
    (["tio_factorial.py", "all", "--items", "200"], "every item processed exactly once"),
    (["alma_fibonacci.py", "all", "--base", "16"], "all clients answered"),
    (["powerhose_square.py", "all", "--jobs", "20"], "5 workers running"),
    (["ppyqueue_tasks.py", "all"], "every task ran"),
    (["thoonk_feeds.py"], "all of Thoonk's examples ran"),
], ids=["tio_factorial", "alma_fibonacci", "powerhose_square", "ppyqueue_tasks",
        "thoonk_feeds"])
def test_the_examples_run_on_the_cluster(example: list[str], ran: str, url: str) -> None:
    """Each example's roles, in processes of their own, share the cluster through
    ``--url`` (and no node answers CROSSSLOT: the autouse check)."""
    assert ran in run(*example, "--url", url)


@pytest.fixture(scope="module")
def sentinel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A primary and one Sentinel monitoring it as "mymaster" (quorum 1), on
    127.0.0.1: the Sentinel's port."""
    server = _binary("redis-server")
    directory = tmp_path_factory.mktemp("sentinel")
    primary, port = _free_ports(2)
    config = directory / "sentinel.conf"
    config.write_text(f"port {port}\nbind 127.0.0.1\ndir {directory}\n"
                      f"sentinel monitor mymaster 127.0.0.1 {primary} 1\n")
    with _servers([server, "--port", str(primary), "--bind", "127.0.0.1", "--save", "",
                   "--appendonly", "no", "--dir", str(directory)],
                  [server, str(config), "--sentinel", "--port", str(port)]) as (_, watch):
        wait_until(lambda: not cast(dict[str, Any], watch.sentinel_master("mymaster"))[
            "is_disconnected"])
        yield port


def test_sentinel_url_gives_the_facade_on_the_primary(sentinel: int, prefix: str) -> None:
    """Through the Sentinel's name for it, the facade runs commands and waits on the
    primary, with a database number too."""
    url = f"redis+sentinel://127.0.0.1:{sentinel}/mymaster?prefix={prefix}"
    with connect(url) as one, connect(url.replace("mymaster", "mymaster/0")) as two:
        got: list[Any] = []
        thread = start(lambda: got.append(one.list("l").wait_pop_next(timeout=10)))
        wait_until(lambda: 1 == two.list("l").statistics().waiters)
        two.list("l").push_back("handed over")
        thread.join(10)
        assert ["handed over"] == got
        one.queue("q").put(1)
        assert 1 == two.queue("q").get(timeout=0)
    with pytest.raises(ValueError, match="service"):
        connect(f"redis+sentinel://127.0.0.1:{sentinel}")
