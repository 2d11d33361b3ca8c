"""corral on Redis against the kernel, its oracle: a hypothesis state machine drives a
``Kernel`` and a ``RedisKernel`` (on a real redis-server) with the same commands and
the same clock, and after every step compares results or error types, the effects
(FIFO delivery order included), statistics and contents, and Redis's own invariants."""

from __future__ import annotations

import itertools
from typing import Any

import hypothesis.strategies as st
import pytest
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from corral.kernel import (
    Cancelled,
    CorralError,
    Delivered,
    Event,
    Job,
    JobState,
    Kernel,
    Kind,
    NotFound,
    Notified,
    Unsubscribed,
    Waiting,
)
from corral.transports import redis_backend

_prefixes = itertools.count()
VALUES = st.one_of(st.integers(-5, 5), st.text(max_size=3), st.none(),
                   st.lists(st.integers(0, 3), max_size=2),
                   st.dictionaries(st.text(max_size=2), st.booleans(), max_size=2))
INDEXES = st.integers(-4, 4)
LISTS = ("a", "b{x}")  # a brace in a name must not break its hash tag
MAPS = ("m", "n|o")
QUEUES = ("q", "r")  # r holds at most 2 items
FEEDS = ("f", "g")  # g keeps 3 items
SORTED = "s"
SORTED_IDS = st.integers(0, 6) | st.just("1")
IDS = st.sampled_from(["1", "2", "x", "y|z"]) | st.none()
KEYS = st.sampled_from(["k", "l", "a|b", "é"])
# Job queues: "j" retries with a jittered backoff and stalls after 3 claims; "k" retries
# at once, forever, keeps no results and lets a closed session's leases run out. Only
# "j" draws from the jitter generator, which is the kernel's one and Redis's per queue.
JOBS = ("j", "k")
JOB_IDS = st.sampled_from(["1", "2", "3", "x", "a|b"])
PRIORITIES = st.integers(-1, 1)
EVERY = (*LISTS, *MAPS, *QUEUES, *FEEDS, SORTED, *JOBS, "nothing")
MADE: dict[str, tuple[Kind, dict[str, Any]]] = {  # every container the machines make
    **{name: (Kind.LIST, {}) for name in LISTS}, **{name: (Kind.MAP, {}) for name in MAPS},
    "q": (Kind.QUEUE, {}), "r": (Kind.QUEUE, {"max_length": 2}), "f": (Kind.FEED, {}),
    "g": (Kind.FEED, {"max_length": 3}), SORTED: (Kind.SORTED_FEED, {}),
    "j": (Kind.JOBS, {"lease": 2.0, "max_attempts": 3, "result_ttl": 3, "backoff": 0.5,
                      "backoff_max": 2.0}),
    "k": (Kind.JOBS, {"max_attempts": 0, "backoff": 0, "release_on_close": False,
                      "result_ttl": 0})}


class KernelAndRedis(RuleBasedStateMachine):
    """Both, driven alike; ``client`` is set by the test (the session's redis-server)."""

    client: Any = None
    reached: dict[str, int] = {}  # what the runs did, so the test can say it got there

    def __init__(self) -> None:
        super().__init__()
        self.kernel = Kernel()
        self.redis = redis_backend.RedisKernel(
            self.client, prefix=f"t{next(_prefixes)}", clock="caller")
        self.now = 0.0
        self.sessions: list[tuple[int, int]] = []  # (kernel's, redis's)
        self.waits: list[tuple[int, int, int]] = []  # (session index, kernel's, redis's)
        self.tokens: list[tuple[str, Job]] = []  # every claim granted, current or stale
        self.subs: list[tuple[int, int, int]] = []  # (session index, kernel's, redis's)

    def both(self, method: str, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
        """Call ``method`` on both; their results, or their errors' types."""
        outcomes = []
        for target in (self.kernel, self.redis):
            try:
                outcomes.append(("ok", getattr(target, method)(*args, **kwargs)))
            except CorralError as error:
                outcomes.append(("error", type(error).__name__))
        return outcomes[0], outcomes[1]

    def same(self, method: str, *args: Any, **kwargs: Any) -> Any:
        here, there = self.both(method, *args, **kwargs)
        assert here == there, (method, args, kwargs)
        return here

    @initialize()
    def setup(self) -> None:
        for name, (kind, options) in MADE.items():
            self.same("create", name, kind, **options)
        self.same("create", "a", Kind.MAP)  # WrongKind
        self.same("create", "r", Kind.QUEUE, max_length=3)  # InvalidArgument
        self.same("create", "j", Kind.JOBS, lease=2)  # the same options: fine
        self.same("create", "j", Kind.JOBS, lease=3.0)  # InvalidArgument
        self.same("create", "z", Kind.LIST, lease=1.0)  # InvalidArgument: no such option
        self.same("create", "z", Kind.JOBS, lease=-1.0)  # InvalidArgument: bad value
        self.same("create", "q", Kind.JOBS, lease=-1.0)  # WrongKind first
        for _ in range(3):
            self.sessions.append((self.kernel.open_session(), self.redis.open_session()))
        for name in EVERY[:-1]:  # session 1 hears every event from the start
            self.subscribe(1, name, None)


    def wait(self, who: int, op: str, name: str, timeout: float | None, *key: Any,
             **options: Any) -> tuple[str, Any]:
        """A wait on both, from session ``who``; the kernel's outcome."""
        outcomes = []
        for target, session in zip((self.kernel, self.redis), self.sessions[who],
                                   strict=True):
            try:
                outcomes.append(("ok", getattr(target, op)(session, name, *key,
                                                           timeout=timeout, now=self.now,
                                                           **options)))
            except CorralError as error:
                outcomes.append(("error", type(error).__name__))
        here, there = outcomes
        if here[0] == "ok" and isinstance(here[1], Job):
            self.tokens.append((name, here[1]))
        if here[0] == "ok" and isinstance(here[1], list):  # claim_many's jobs
            self.tokens += [(name, job) for job in here[1]]
        if here[0] == "ok" and isinstance(here[1], Waiting):
            assert there[0] == "ok" and isinstance(there[1], Waiting)
            self.waits.append((who, here[1].waiter, there[1].waiter))
            self.reached["parked"] = self.reached.get("parked", 0) + 1
        else:
            assert here == there
        return here


    @rule(who=st.integers(0, 2), name=st.sampled_from(EVERY), start=st.none() | INDEXES)
    def subscribe(self, who: int, name: str, start: int | None) -> None:
        outcomes = []
        for target, session in zip((self.kernel, self.redis), self.sessions[who],
                                   strict=True):
            try:
                outcomes.append(("ok", target.subscribe(session, name, start=start)))
            except CorralError as error:
                outcomes.append(("error", type(error).__name__))
        here, there = outcomes
        assert here[0] == there[0] and (here[0] == "ok" or here == there)
        if here[0] == "ok":
            self.subs.append((who, here[1], there[1]))
            self.reached["subscribed"] = self.reached.get("subscribed", 0) + 1

    @rule(data=st.data())
    def unsubscribe(self, data: st.DataObject) -> None:
        if not self.subs:
            return
        who, mine, theirs = data.draw(st.sampled_from(self.subs))
        self.kernel.unsubscribe(self.sessions[who][0], mine)
        self.redis.unsubscribe(self.sessions[who][1], theirs)
        self.subs.remove((who, mine, theirs))
        for sub in (mine, theirs):  # again: NotFound on both
            with pytest.raises(NotFound):
                (self.kernel if sub == mine else self.redis).unsubscribe(
                    self.sessions[who][0 if sub == mine else 1], sub)

    @rule(name=st.sampled_from([name for name in EVERY if name != "j"]))
    def delete_container(self, name: str) -> None:
        """Delete a container (its waiters told NotFound, its subscriptions ended) and
        make it again, empty. Not "j": its jitter generator, the kernel's one, is the
        queue's own on Redis, and starts again with the queue made again."""
        self.same("delete_container", name)
        if name in MADE:
            kind, options = MADE[name]
            self.same("create", name, kind, **options)
            self.reached["deleted"] = self.reached.get("deleted", 0) + 1

    @rule(data=st.data())
    def cancel_wait(self, data: st.DataObject) -> None:
        if not self.waits:
            return
        who, mine, theirs = data.draw(st.sampled_from(self.waits))
        here = self.kernel.cancel_wait(self.sessions[who][0], mine)
        there = self.redis.cancel_wait(self.sessions[who][1], theirs)
        assert here == there
        if here:
            self.reached["withdrawn"] = self.reached.get("withdrawn", 0) + 1

    @rule(who=st.integers(0, 2))
    def close_session(self, who: int) -> None:
        mine, theirs = self.sessions[who]
        self.kernel.close_session(mine, now=self.now)
        self.redis.close_session(theirs, now=self.now)
        self.sessions[who] = (self.kernel.open_session(), self.redis.open_session())
        self.waits = [w for w in self.waits if w[0] != who]
        self.subs = [s for s in self.subs if s[0] != who]

    @rule(dt=st.sampled_from([0.25, 0.5, 1.0, 2.5]))
    def advance(self, dt: float) -> None:
        self.now += dt
        self.kernel.advance(self.now)
        self.redis.advance(self.now)

    # -- after every step ------------------------------------------------------------

    @invariant()
    def effects_agree(self) -> None:
        """The same outcomes to the same waiters: each waiter served the same record
        (which waiter got which record is the FIFO check: a session reads its own
        mailbox, so the order across sessions is not seen), timeouts alike."""
        to_redis = {mine: theirs for _, mine, theirs in self.waits}

        to_redis_sub = {mine: theirs for _, mine, theirs in self.subs}

        def normal(effects: list[Any], mine: bool) -> tuple[Any, ...]:
            delivered: dict[str, list[Any]] = {}
            cancelled = []
            notified: dict[int, list[Any]] = {}  # each subscription's events, in order
            for effect in effects:
                assert isinstance(effect, (Delivered, Cancelled, Notified, Unsubscribed))
                if isinstance(effect, Unsubscribed):
                    notified.setdefault(to_redis_sub[effect.subscription] if mine else
                                        effect.subscription, []).append(effect.reason)
                    continue
                if isinstance(effect, Notified):
                    event = effect.event
                    notified.setdefault(to_redis_sub[effect.subscription] if mine else
                                        effect.subscription, []).append(
                        (event.container, event.name, event.key, event.value,
                         event.metadata))
                    continue
                waiter = to_redis[effect.waiter] if mine else effect.waiter
                if isinstance(effect, Delivered):
                    event = effect.event
                    delivered.setdefault(event.container, []).append(
                        (waiter, event.name, event.key, event.value, event.metadata))
                else:
                    cancelled.append((waiter, type(effect.error).__name__))
            return ({name: sorted(items, key=repr) for name, items in delivered.items()},
                    sorted(cancelled), notified)

        here = list(self.kernel.take_effects())
        assert normal(here, True) == normal(self.redis.take_effects(), False)
        for effect in here:
            kind = type(effect).__name__
            if isinstance(effect, Notified):
                kind = "notified"
            elif isinstance(effect, Delivered) and isinstance(effect.event.value, Job):
                self.tokens.append((effect.event.container, effect.event.value))
                kind = "claim served"
            elif isinstance(effect, Delivered) and effect.event.name == "finished":
                kind = "result served"
            self.reached[kind] = self.reached.get(kind, 0) + 1
        ended = {effect.waiter for effect in here
                 if isinstance(effect, (Delivered, Cancelled))}
        unsubscribed = {effect.subscription for effect in here
                        if isinstance(effect, Unsubscribed)}
        self.subs = [sub for sub in self.subs if sub[1] not in unsubscribed]
        self.waits = [w for w in self.waits if w[1] not in ended]

    @invariant()
    def contents_agree(self) -> None:
        if not self.sessions:
            return
        for name in LISTS + MAPS:
            assert self.kernel.query(name) == self.redis.query(name)
        for name in (*FEEDS, SORTED):
            assert self.kernel.items(name) == self.redis.items(name)
            assert self.kernel.ids(name) == self.redis.ids(name)
        for name in (*LISTS, *MAPS, *QUEUES, *FEEDS, SORTED, *JOBS):
            assert self.kernel.statistics(name) == self.redis.statistics(name)
        for name in JOBS:
            assert self.kernel.ids(name) == self.redis.ids(name)
            for state in JobState:
                ids = self.kernel.ids(name, state=state)
                assert ids == self.redis.ids(name, state=state.value)
                for id in ids:
                    assert self.kernel.info(name, id) == self.redis.info(name, id)
                    assert self.kernel.get(name, id) == self.redis.get(name, id)
                    self.reached[state.value] = self.reached.get(state.value, 0) + 1
            self.same("count", name)
            self.same("state", name, "gone")
        self.kernel._check()
        self.redis._check()




class Containers(KernelAndRedis):
    """Lists, maps, feeds, sorted feeds and queues, with their waits."""

    reached: dict[str, int] = {}

    @rule(name=st.sampled_from(LISTS), value=VALUES, metadata=VALUES,
          front=st.booleans())
    def push(self, name: str, value: Any, metadata: Any, front: bool) -> None:
        self.same("push_front" if front else "push_back", name, value, metadata)

    @rule(name=st.sampled_from(LISTS), front=st.booleans())
    def pop(self, name: str, front: bool) -> None:
        self.same("pop_front" if front else "pop_back", name)

    @rule(name=st.sampled_from(LISTS), index=INDEXES)
    def get(self, name: str, index: int) -> None:
        self.same("get", name, index)

    @rule(name=st.sampled_from(LISTS), index=INDEXES, value=VALUES)
    def set(self, name: str, index: int, value: Any) -> None:
        self.same("set", name, index, value)

    @rule(name=st.sampled_from(LISTS), index=INDEXES, value=VALUES)
    def insert(self, name: str, index: int, value: Any) -> None:
        self.same("insert", name, index, value)

    @rule(name=st.sampled_from(LISTS), index=INDEXES)
    def delete(self, name: str, index: int) -> None:
        self.same("delete", name, index)

    @rule(name=st.sampled_from(LISTS), start=INDEXES, end=st.none() | INDEXES)
    def query(self, name: str, start: int, end: int | None) -> None:
        self.same("query", name, start, end)

    @rule(name=st.sampled_from(LISTS))
    def clear(self, name: str) -> None:
        self.same("clear", name)

    # -- maps --------------------------------------------------------------------------

    @rule(name=st.sampled_from(MAPS), key=KEYS, value=VALUES, metadata=VALUES,
          insert=st.booleans())
    def store(self, name: str, key: str, value: Any, metadata: Any, insert: bool) -> None:
        self.same("insert" if insert else "set", name, key, value, metadata)

    @rule(name=st.sampled_from(MAPS), key=KEYS | INDEXES | st.just(b"k"))
    def map_get(self, name: str, key: Any) -> None:
        self.same("get", name, key)

    @rule(name=st.sampled_from(MAPS), key=KEYS | st.just(3))
    def map_delete(self, name: str, key: Any) -> None:
        self.same("delete", name, key)

    @rule(name=st.sampled_from(MAPS + LISTS))
    def keys(self, name: str) -> None:
        self.same("keys", name)

    @rule(who=st.integers(0, 2), name=st.sampled_from(MAPS), key=KEYS,
          timeout=st.sampled_from([None, 0, 0.5, 2.0]))
    def wait_pop_key(self, who: int, name: str, key: str, timeout: float | None) -> None:
        self.wait(who, "wait_pop_key", name, timeout, key)

    @rule(name=st.sampled_from(MAPS), key=KEYS,
          waits=st.lists(st.tuples(st.integers(0, 2), st.sampled_from([None, 0.5, 2.0])),
                         min_size=1, max_size=4),
          values=st.lists(VALUES, max_size=3), dt=st.sampled_from([0, 0.5, 2.5]))
    def contend_for_a_key(self, name: str, key: str, waits: list[tuple[int, float | None]],
                          values: list[Any], dt: float) -> None:
        self.same("delete", name, key)
        for who, timeout in waits:
            self.wait(who, "wait_pop_key", name, timeout, key)
        for value in values:
            self.same("set", name, key, value)
        if dt:
            self.advance(dt)

    # -- feeds -------------------------------------------------------------------------

    @rule(name=st.sampled_from(FEEDS), item=VALUES, id=IDS, fresh=st.integers(0, 4))
    def publish(self, name: str, item: Any, id: str | None, fresh: int) -> None:
        """Publish (or edit) one item, then ``fresh`` more under new ids: past a
        bounded feed's max_length."""
        self.same("publish", name, item, id)
        for n in range(fresh):
            self.same("publish", name, n)

    @rule(name=st.sampled_from(FEEDS), id=IDS | st.just(3))
    def retract(self, name: str, id: Any) -> None:
        self.same("retract", name, id)
        self.same("get", name, id)

    @rule(name=st.sampled_from(FEEDS + LISTS), start=INDEXES, end=st.none() | INDEXES,
          state=st.sampled_from([None, None, "ready"]))
    def ids(self, name: str, start: int, end: int | None, state: str | None) -> None:
        self.same("ids", name, start=start, end=end, state=state)
        self.same("items", name)

    # -- sorted feeds ------------------------------------------------------------------

    @rule(places=st.lists(st.tuples(
              st.sampled_from(["append", "prepend", "insert_before", "insert_after"]),
              SORTED_IDS), min_size=1, max_size=4), item=VALUES)
    def sorted_publish(self, places: list[tuple[str, Any]], item: Any) -> None:
        for place, rel in places:
            if place.startswith("insert"):
                self.same(place, SORTED, rel, item)
            else:
                self.same(place, SORTED, item)

    @rule(moves=st.lists(st.tuples(
              st.sampled_from(["move_before", "move_after", "move_first", "move_last"]),
              st.integers(0, 9), st.integers(0, 9)), min_size=1, max_size=4))
    def sorted_move(self, moves: list[tuple[str, int, int]]) -> None:
        """Moves of items that are there (mostly), or not, or of the wrong type."""
        for op, i, j in moves:
            known = [*self.kernel.ids(SORTED), 0, "1"]
            id, rel = known[i % len(known)], known[j % len(known)]
            if op in ("move_before", "move_after"):
                self.same(op, SORTED, rel, id)
            else:
                self.same(op, SORTED, id)

    @rule(id=SORTED_IDS, item=VALUES)
    def sorted_edit_retract_get(self, id: Any, item: Any) -> None:
        self.same("edit", SORTED, id, item)
        self.same("get", SORTED, id)
        self.same("retract", SORTED, id)

    # -- queues ------------------------------------------------------------------------

    @rule(who=st.integers(0, 2), name=st.sampled_from(QUEUES), item=VALUES,
          priority=st.integers(-2, 2), timeout=st.sampled_from([None, 0, 0.5, 2.0]))
    def queue_put(self, who: int, name: str, item: Any, priority: int,
                  timeout: float | None) -> None:
        self.wait(who, "queue_put", name, timeout, item, priority=priority)

    @rule(who=st.integers(0, 2), name=st.sampled_from(QUEUES),
          timeout=st.sampled_from([None, 0, 0.5, 2.0]), receipt=st.booleans())
    def queue_get(self, who: int, name: str, timeout: float | None, receipt: bool) -> None:
        self.wait(who, "queue_get", name, timeout, receipt=receipt)

    @rule(who=st.integers(0, 2), name=st.sampled_from(QUEUES + LISTS + MAPS), key=KEYS,
          puts=st.integers(0, 2))
    def give_back(self, who: int, name: str, key: str, puts: int) -> None:
        """Take at once, let more come, give back: the kernel's exact inverse of the
        hand-off (a queue item at its old place, a list record first, a map key only if
        still absent)."""
        mine, theirs = self.sessions[who]
        if name in QUEUES:
            op, args, kw, event = "queue_get", (), {"receipt": True}, "get"
        elif name in LISTS:
            op, args, kw, event = "wait_pop_next", (), {}, "wnp_next"
        else:
            op, args, kw, event = "wait_pop_key", (key,), {}, "wnp_key"
        try:
            here = getattr(self.kernel, op)(mine, name, *args, timeout=0, now=self.now, **kw)
        except CorralError:
            return
        there = getattr(self.redis, op)(theirs, name, *args, timeout=0, now=self.now, **kw)
        assert here == there
        value, metadata = here
        for n in range(puts):
            if name in QUEUES:
                self.wait(who, "queue_put", name, 0, f"later {n}")
            elif name in LISTS:
                self.same("push_back", name, f"later {n}")
            else:
                self.same("set", name, key, f"later {n}")
        delivery = Event(name, event, key if name in MAPS else (metadata[0] if name in QUEUES
                                                                 else 0), value, metadata)
        self.kernel.give_back(mine, name, delivery, now=self.now)
        self.redis.give_back(theirs, name, delivery, now=self.now)

    @rule(name=st.sampled_from(QUEUES),
          waits=st.lists(st.tuples(st.integers(0, 2), st.sampled_from([None, 0.5, 2.0]),
                                   st.booleans(), st.integers(-1, 1)),
                         min_size=1, max_size=5),
          dt=st.sampled_from([0, 0.5, 2.5]))
    def contend_on_a_queue(self, name: str, waits: list[tuple[int, float | None, bool, int]],
                           dt: float) -> None:
        """Getters and putters, parked and served in turn; a full bounded queue parks
        its putters."""
        for n, (who, timeout, get, priority) in enumerate(waits):
            if get:
                self.wait(who, "queue_get", name, timeout, receipt=True)
            else:
                self.wait(who, "queue_put", name, timeout, n, priority=priority)
        if dt:
            self.advance(dt)

    @rule(putters=st.lists(st.tuples(st.integers(0, 2), st.sampled_from([None, 0.5]),
                                     st.integers(-1, 1)), min_size=1, max_size=3),
          gets=st.integers(1, 4), dt=st.sampled_from([0, 0.5, 2.5]))
    def overfill(self, putters: list[tuple[int, float | None, int]], gets: int,
                 dt: float) -> None:
        """Fill the bounded queue, park putters on it, then take: each get admits the
        oldest putter's item."""
        for n in range(2):
            self.wait(0, "queue_put", "r", 0, f"fill {n}")
        for n, (who, timeout, priority) in enumerate(putters):
            self.wait(who, "queue_put", "r", timeout, f"put {n}", priority=priority)
        for _ in range(gets):
            self.wait(0, "queue_get", "r", 0, receipt=True)
        if dt:
            self.advance(dt)

    @rule(name=st.sampled_from(LISTS + MAPS + QUEUES), key=st.sampled_from(["p", "q"]),
          value=st.text(max_size=3))
    def properties(self, name: str, key: str, value: str) -> None:
        self.same("set_property", name, key, value)
        self.same("get_property", name, "q")

    @rule(who=st.integers(0, 2), name=st.sampled_from(LISTS),
          timeout=st.sampled_from([None, 0, 0.5, 0.5, 2.0, 2.0]))
    def wait_pop_next(self, who: int, name: str, timeout: float | None) -> None:
        self.wait(who, "wait_pop_next", name, timeout)


    @rule(name=st.sampled_from(LISTS),
          waits=st.lists(st.tuples(st.integers(0, 2), st.sampled_from([None, 0.5, 2.0])),
                         min_size=1, max_size=4),
          pushes=st.lists(VALUES, max_size=5), dt=st.sampled_from([0, 0.5, 2.5]))
    def contend(self, name: str, waits: list[tuple[int, float | None]],
                pushes: list[Any], dt: float) -> None:
        """Empty the list, park waiters from several sessions on it, push, let time
        pass: who is served which record, who times out, who is left parked."""
        self.same("clear", name)
        for who, timeout in waits:
            self.wait_pop_next(who, name, timeout)
        for value in pushes:
            self.same("push_back", name, value)
        if dt:
            self.advance(dt)



class Jobs(KernelAndRedis):
    """Job queues: claims, leases, failures, backoff with jitter, results."""

    reached: dict[str, int] = {}

    # -- job queues --------------------------------------------------------------------

    @rule(name=st.sampled_from(JOBS), item=VALUES, priority=PRIORITIES,
          delay=st.sampled_from([0, 0, 0.5, 2.0]), id=JOB_IDS | st.none())
    def put(self, name: str, item: Any, priority: int, delay: float, id: str | None) -> None:
        self.same("put", name, item, priority=priority, delay=delay, id=id, now=self.now)

    @rule(who=st.integers(0, 2), name=st.sampled_from(JOBS),
          timeout=st.sampled_from([None, 0, 0, 0.5, 2.0]), lease=st.sampled_from([None, 1.0]))
    def claim(self, who: int, name: str, timeout: float | None, lease: float | None) -> None:
        self.wait(who, "claim", name, timeout, lease=lease)

    @rule(name=st.sampled_from(JOBS), steps=st.lists(st.tuples(
              st.sampled_from(["put", "put", "claim", "claim", "finish", "finish",
                               "cancel", "stall", "touch", "retry", "retract", "retry_all",
                               "result", "advance", "give_back", "put_many", "claim_many",
                               "finish_claim"]),
              st.integers(0, 2), st.integers(0, 7), VALUES), min_size=3, max_size=12))
    def job_life(self, name: str, steps: list[tuple[str, int, int, Any]]) -> None:
        """Jobs through their lives: put, claimed, and each claim token (the latest or
        a stale one) finished, failed, stalled or renewed; retried, retracted, read."""
        for op, who, n, value in steps:
            tokens = [job for held, job in self.tokens if held == name]
            ids = self.kernel.ids(name, state=None) + ["x"]
            id = ids[n % len(ids)]
            seconds = (None, 0, 0.5, 3.0, -1)[n % 5]
            if op == "put":
                self.same("put", name, value, priority=n % 3 - 1, delay=(0, 0, 0.5)[n % 3],
                          now=self.now)
            elif op == "claim":
                self.wait(who, "claim", name, (0, None, 1.0)[n % 3],
                          lease=(None, 1.0)[n % 2])
            elif op == "put_many":
                self.same("put_many", name, [value] * (n % 4), priority=n % 3 - 1,
                          delay=(0, 0, 0.5)[n % 3], now=self.now)
            elif op == "claim_many":
                self.wait(who, "claim_many", name, (0, 0, None, 1.0)[n % 4], n % 5,
                          lease=(None, 1.0)[n % 2])
            elif op == "result":
                self.wait(who, "result", name, (0, None, 1.0)[n % 3], id)
            elif op == "advance":
                self.advance((0.25, 1.0, 2.5)[n % 3])
            elif op in ("retry", "retract"):
                self.same(op, name, id, **({"now": self.now} if op == "retry" else {}))
            elif op == "retry_all":
                self.same("retry_all", name, now=self.now)
            elif op == "give_back":
                self.give_back_a_claim(who, name, n % 3)
            elif tokens:
                job = tokens[-1 - max(0, n - 4) % len(tokens)]  # mostly the latest
                if op == "finish":
                    self.same("finish", name, job, value, result_ttl=seconds, now=self.now)
                elif op == "finish_claim":
                    self.wait(who, "finish_claim", name, (0, 0, None, 1.0)[n % 4], job,
                              value, result_ttl=seconds, lease=(None, 1.0)[n % 2])
                elif op == "cancel":
                    self.same("cancel", name, job, delay=seconds,
                              reason=(None, "", "boom")[n % 3], now=self.now)
                elif op == "stall":
                    self.same("stall", name, job, (None, "", "boom")[n % 3])
                else:
                    self.same("touch", name, job, lease=seconds or None, now=self.now)

    @rule(who=st.integers(0, 2), name=st.sampled_from(JOBS), id=JOB_IDS,
          timeout=st.sampled_from([None, 0, 0.5, 2.0]))
    def result(self, who: int, name: str, id: str, timeout: float | None) -> None:
        self.wait(who, "result", name, timeout, id)

    @rule(who=st.integers(0, 2), name=st.sampled_from(JOBS), puts=st.integers(0, 2))
    def give_back_a_claim(self, who: int, name: str, puts: int) -> None:
        """Claim at once, let more come, give the claim back: ready again at its old
        place with its attempt restored (or the oldest claimer's)."""
        mine, theirs = self.sessions[who]
        try:
            here = self.kernel.claim(mine, name, timeout=0, now=self.now)
        except CorralError:
            return
        there = self.redis.claim(theirs, name, timeout=0, now=self.now)
        assert here == there
        self.reached["given back"] = self.reached.get("given back", 0) + 1
        for n in range(puts):
            self.same("put", name, f"later {n}", now=self.now)
        delivery = Event(name, "claimed", here.id, here, None)
        self.kernel.give_back(mine, name, delivery, now=self.now)
        self.redis.give_back(theirs, name, delivery, now=self.now)

    @rule(name=st.sampled_from(JOBS), readers=st.lists(st.tuples(
              st.integers(0, 2), st.sampled_from([None, 0.5, 2.0])), min_size=1, max_size=3),
          end=st.sampled_from(["finish", "stall", "retract", "cancel"]), result=VALUES)
    def await_result(self, name: str, readers: list[tuple[int, float | None]], end: str,
                     result: Any) -> None:
        """Readers parked on a job's result hear how it ended: its result, JobFailed
        (stalled), NotFound (retracted); a cancelled claim leaves them parked."""
        id = self.same("put", name, "awaited", priority=2, now=self.now)[1]
        for who, timeout in readers:
            self.wait(who, "result", name, timeout, id)
        if end == "retract":
            self.same("retract", name, id)
            return
        self.wait(0, "claim", name, 0)
        name_, job = self.tokens[-1] if self.tokens else (None, None)
        if name_ == name and job.id == id:
            if end == "finish":
                self.same("finish", name, job, result, now=self.now)
            elif end == "stall":
                self.same("stall", name, job, "boom")
            else:
                self.same("cancel", name, job, now=self.now)

    @rule(name=st.sampled_from(JOBS),
          waits=st.lists(st.tuples(st.integers(0, 2), st.sampled_from([None, 0.5, 2.0])),
                         min_size=1, max_size=4),
          puts=st.lists(PRIORITIES, max_size=4), dt=st.sampled_from([0, 0.5, 2.5]))
    def contend_for_jobs(self, name: str, waits: list[tuple[int, float | None]],
                         puts: list[int], dt: float) -> None:
        """Park claimers from several sessions, put jobs, let time pass: who gets which
        job, who times out, which leases expire."""
        for who, timeout in waits:
            self.wait(who, "claim", name, timeout)
        for n, priority in enumerate(puts):
            self.same("put", name, n, priority=priority, now=self.now)
        if dt:
            self.advance(dt)


class JobBatches(Jobs):
    """The job machine with the batch commands beside the rest: put_many, claim_many
    and finish_claim, each one call on Redis, held to the kernel."""

    reached: dict[str, int] = {}

    def count(self, what: str) -> None:
        self.reached[what] = self.reached.get(what, 0) + 1

    @rule(name=st.sampled_from(JOBS), items=st.lists(VALUES, max_size=4) | st.lists(
              VALUES, max_size=2).map(tuple), priority=PRIORITIES,
          delay=st.sampled_from([0, 0, 0.5, 2.0]),
          bad=st.sampled_from(["items", "priority", "delay"]), order=st.permutations(range(3)))
    def put_many(self, name: str, items: Any, priority: Any, delay: float, bad: str,
                 order: list[int]) -> None:
        """Jobs put in one command: in order; an empty list puts nothing and says so;
        all or none (a non-list, a bad priority or delay puts nothing)."""
        for case in order:
            given = {"items": [] if case == 1 else items, "priority": priority,
                     "delay": delay}
            if case == 2:
                given[bad] = {"items": "ab", "priority": 1.5, "delay": -1}[bad]
            here = self.same("put_many", name, given.pop("items"), now=self.now, **given)
            self.count("put_many " + (here[0] if here[0] == "error" or here[1] else "empty"))

    @rule(name=st.sampled_from(JOBS),
          waits=st.lists(st.tuples(st.integers(0, 2), st.sampled_from([None, 0.5]),
                                   st.integers(1, 3)), min_size=1, max_size=4),
          items=st.integers(0, 5), priority=PRIORITIES, dt=st.sampled_from([0, 0.5, 2.5]))
    def contend_for_many(self, name: str, waits: list[tuple[int, float | None, int]],
                         items: int, priority: int, dt: float) -> None:
        """Claimers parked (by claim and claim_many) from several sessions, then one
        put_many: the oldest claimers get the first jobs, one each, the rest is ready."""
        self.wait(0, "claim_many", name, 0, 100)  # none ready, so the claimers park
        for who, timeout, n in waits:
            if n == 1:
                self.wait(who, "claim", name, timeout)
            else:
                self.wait(who, "claim_many", name, timeout, n)
        parked = self.kernel.statistics(name).waiters
        self.same("put_many", name, [f"many {i}" for i in range(items)],
                  priority=priority, now=self.now)
        if parked and items:
            self.count("put_many served" if items <= parked else "put_many served, rest ready")
        if dt:
            self.advance(dt)

    @rule(who=st.integers(0, 2), name=st.sampled_from(JOBS), puts=st.integers(0, 3),
          n=st.integers(1, 4), timeout=st.sampled_from([0, 0, 0, None, 0.5]),
          lease=st.sampled_from([None, 1.0]))
    def claim_many(self, who: int, name: str, puts: int, n: int, timeout: float | None,
                   lease: float | None) -> None:
        """Up to n ready jobs in one command (after ``puts`` more were put), each its
        own lease and "claimed" event; none ready: Empty, or parked as a claim is
        (served with one job)."""
        if puts:
            self.same("put_many", name, [f"put {i}" for i in range(puts)], now=self.now)
        here = self.wait(who, "claim_many", name, timeout, n, lease=lease)
        if here[0] == "ok" and isinstance(here[1], list):
            self.count("claimed many" if len(here[1]) > 1 else "claimed one")

    @rule(who=st.integers(0, 2), name=st.sampled_from(JOBS), n=st.integers(0, 7),
          result=VALUES, cases=st.permutations(["next", "parks", "none", "stale", "bad"]),
          timeout=st.sampled_from([0, None, 0.5]),
          result_ttl=st.sampled_from([None, None, 0, 1.0]), lease=st.sampled_from([None, 1.0]),
          bad=st.sampled_from(["timeout", "result_ttl", "lease"]))
    def finish_claim(self, who: int, name: str, n: int, result: Any, cases: list[str],
                     timeout: Any, result_ttl: Any, lease: Any, bad: str) -> None:
        """Finish a claim and claim the next in one command, set up for each way it
        goes, in turn: a job put first (the next comes at once, unless a parked
        claimer had it); every ready job claimed first, so that it parks (the finish
        done) or, with a timeout of 0, raises Empty with not even the finish done; a
        stale token (LeaseLost, nothing done); a bad option, said after the lease
        check as the kernel says it."""
        def held() -> list[Job]:  # the claims that are current
            claimed = set(self.kernel.ids(name, state=JobState.CLAIMED))
            return [job for where, job in self.tokens if where == name
                    and job.id in claimed
                    and self.kernel.info(name, job.id).attempt == job.attempt]

        for i, case in enumerate(cases):
            if not held():  # one to finish (a parked claimer may have it first)
                self.same("put", name, "to finish", now=self.now)
                self.wait(who, "claim", name, 0)
            current = held()
            stale = [job for where, job in self.tokens
                     if where == name and job not in current]
            tokens = stale if case == "stale" else current
            if not tokens:
                continue
            job = tokens[(n + i) % len(tokens)]
            options = {"timeout": timeout, "result_ttl": result_ttl, "lease": lease}
            if case == "next":
                self.same("put", name, "next", now=self.now)
            elif case in ("parks", "none"):
                self.wait((who + 1) % 3, "claim_many", name, 0, 100)
                options["timeout"] = 0 if case == "none" else timeout or None
            elif case == "bad":
                options[bad] = {"timeout": -1, "result_ttl": -1, "lease": 0}[bad]
            here = self.wait(who, "finish_claim", name, options.pop("timeout"), job,
                             result, **options)
            self.count("finish_claim " + (type(here[1]).__name__ if here[0] == "ok"
                                          else here[1]))


def run(machine: type[KernelAndRedis], client: Any, examples: int) -> dict[str, int]:
    machine.client = client
    test = machine.TestCase
    test.settings = settings(max_examples=examples, stateful_step_count=50,
                             derandomize=True)
    test().runTest()
    return machine.reached


def test_containers_on_redis_behave_as_the_kernel(redis_server: Any) -> None:
    reached = run(Containers, redis_server, 80)
    # the runs got where the comparisons matter: waits parked, served, timed out and
    # withdrawn, many times each
    rare = [what for what in ("parked", "Delivered", "Cancelled", "withdrawn", "notified")
            if reached.get(what, 0) < 20]
    assert not rare, reached


def test_job_queues_on_redis_behave_as_the_kernel(redis_server: Any) -> None:
    reached = run(Jobs, redis_server, 60)
    # claims served to parked claimers and given back; jobs seen in every state
    rare = [what for what in ("parked", "result served", "Cancelled", "withdrawn", "notified",
                              "claim served", "given back", *(s.value for s in JobState))
            if reached.get(what, 0) < 20]

    assert not rare, reached


def test_job_batches_on_redis_behave_as_the_kernel(redis_server: Any) -> None:
    reached = run(JobBatches, redis_server, 60)
    # each batch command's every way: jobs put (or none, or refused), several claimed
    # at once, a finish with the next claim at once or parked, and one that did
    # nothing: stale (LeaseLost), none ready with a timeout of 0 (Empty), bad options
    rare = [what for what in ("put_many ok", "put_many empty", "put_many error",
                              "put_many served", "put_many served, rest ready",
                              "claimed many", "finish_claim Job",
                              "finish_claim Waiting", "finish_claim LeaseLost",
                              "finish_claim Empty", "finish_claim InvalidArgument")
            if reached.get(what, 0) < 5]
    rare += [what for what in ("parked", "claim served", "Cancelled")
             if reached.get(what, 0) < 20]
    assert not rare, reached
