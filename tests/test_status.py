"""The status page, /metrics and /healthz over real HTTP (hypercorn on 127.0.0.1): for a
server, an embedded thread corral and an embedded trio corral."""

from __future__ import annotations

import http.client
import json
import re
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import trio
from conftest import wait_until
from prometheus_client.parser import text_string_to_metric_families

from corral.adapters import web
from corral.adapters.client import connect
from corral.adapters.threads import Corral
from corral.adapters.trio import open_corral
from corral.kernel import Empty, InvalidArgument
from corral.transports.background import background_server
from corral.transports.journal import Journal
from corral.transports.server import Server

FAST = {"interval": 0.05}  # streams look for changes every 50 ms


def request(base: str, path: str, *, method: str = "GET", token: str | None = None
            ) -> tuple[int, Any]:
    """One HTTP request: its status and its JSON (or text) body."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    req = urllib.request.Request(base + path, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as answer:
            status, body = answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        status, body = error.code, error.read().decode()
    try:
        return status, json.loads(body)
    except ValueError:
        return status, body


def get(base: str, path: str, **kwargs: Any) -> Any:
    status, body = request(base, path, **kwargs)
    assert 200 == status, body
    return body


class Stream:
    """A Server-Sent Events stream, read one event at a time."""

    def __init__(self, base: str, query: str) -> None:
        url = urlsplit(base)
        self.conn = http.client.HTTPConnection(url.hostname or "", url.port, timeout=10)
        self.conn.request("GET", f"/api/stream?{query}")
        self.response = self.conn.getresponse()

    def next(self) -> tuple[str, Any]:
        event = ""
        while True:
            line = self.response.readline().decode()
            assert line, "the stream ended"
            if line.startswith("event: "):
                event = line[7:].strip()
            elif line.startswith("data: "):
                return event, json.loads(line[6:])

    def until(self, predicate: Any) -> Any:
        for _ in range(200):
            _, data = self.next()
            if predicate(data):
                return data
        raise AssertionError("no such update")

    def close(self) -> None:
        self.conn.close()


@contextmanager
def served(**server: Any) -> Iterator[tuple[str, str]]:
    """A server with its status page: (its corral:// URL, its http:// URL)."""
    http = server.pop("http", FAST)
    with background_server(zmq=False, http=http, **server) as urls:
        yield urls.tcp, urls.http


def row(overview: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(c for c in overview["containers"] if c["name"] == name)
    return found


# -- views ----------------------------------------------------------------------------


def test_the_overview_lists_every_container_with_its_counts() -> None:
    """Kind, depth, waiters and subscribers of each container; a job queue's states and
    the age of its oldest ready job; rates in and out once there is a history."""
    with served() as (url, page), connect(url) as client:
        jobs = client.jobs("render", max_attempts=1, backoff=0)
        jobs.put("a")
        jobs.put("b", delay=60)
        jobs.cancel(jobs.claim(timeout=1), reason="boom")
        jobs.put("c")
        client.list("inbox").push_back(1)
        client.queue("q").put("x")
        subscription = client.map("m").subscribe()
        overview = get(page, "/api/overview")
        assert "server" == overview["mode"]
        assert ["render", "inbox", "q", "m"] == [c["name"] for c in overview["containers"]]
        render = row(overview, "render")
        assert ("job", 3) == (render["kind"], render["depth"])
        assert {"ready": 1, "delayed": 1, "claimed": 0, "stalled": 1, "finished": 0,
                "retracted": 0} == {k: v for k, v in render["jobs"].items()
                                    if k != "oldest_ready_age"}
        assert render["jobs"]["oldest_ready_age"] >= 0
        assert (1, None) == (row(overview, "inbox")["depth"], row(overview, "inbox")["jobs"])
        assert 1 == row(overview, "m")["subscribers"]
        assert not overview["actions"] and not overview["token_set"]
        inbox = client.list("inbox")
        for n in range(20):
            inbox.push_back(n)
        wait_until(lambda: row(get(page, "/api/overview"), "inbox")["rate_in"] > 0)
        subscription.close()


def test_a_job_queues_page_shows_jobs_waiters_and_errors() -> None:
    """Stalled jobs first with their error; a claim's attempt, owner and lease left;
    a delayed job's time to ready; parked claimers in FIFO order with age and
    deadline; the job counters."""
    with served() as (url, page), connect(url) as client, connect(url) as other:
        jobs = client.jobs("render", max_attempts=1, lease=30)
        jobs.put("boom")
        jobs.cancel(jobs.claim(timeout=1), reason="Traceback (most recent call last):\n"
                    "ValueError: bad frame")
        jobs.put("held")
        held = jobs.claim(timeout=1)
        jobs.put("later", delay=60)
        idle = other.jobs("idle")
        parked: list[Any] = []
        waiting = [threading.Thread(target=lambda c=c, t=t: parked.append(
            _claim_or_empty(c.jobs("idle"), t))) for c, t in ((client, 30), (other, None))]
        waiting[0].start()
        wait_until(lambda: 1 == len(get(page, "/api/containers/idle")["waiters"]))
        waiting[1].start()
        wait_until(lambda: 2 == len(get(page, "/api/containers/idle")["waiters"]))
        view = get(page, "/api/containers/render")
        rows = view["jobs"]["rows"]
        assert ["stalled", "claimed", "delayed"] == [r["state"] for r in rows]
        assert rows[0]["error"].endswith("ValueError: bad frame")
        assert (held.id, 1) == (rows[1]["id"], rows[1]["attempt"])
        assert rows[1]["owner"] is not None and rows[1]["who"].startswith("127.0.0.1:")
        assert 0 < rows[1]["lease_left"] <= 30
        assert 0 < rows[2]["ready_in"] <= 60
        assert {"put": 3, "claimed": 2, "finished": 0, "failed": 1, "expired": 0,
                "stalled": 1} == view["jobs"]["metrics"]
        waiters = get(page, "/api/containers/idle")["waiters"]
        assert ["claim", "claim"] == [w["op"] for w in waiters]
        assert waiters[0]["session"] != waiters[1]["session"]
        assert 0 < waiters[0]["deadline_in"] <= 30 and waiters[1]["deadline_in"] is None
        assert waiters[0]["age"] >= waiters[1]["age"] >= 0
        idle.put(1)
        idle.put(2)
        for thread in waiting:
            thread.join(10)
        assert 2 == len(parked)


def _claim_or_empty(jobs: Any, timeout: float | None) -> Any:
    try:
        return jobs.claim(timeout=timeout)
    except Empty:
        return None


def test_items_are_paged_for_every_kind() -> None:
    """A container's items, ``limit`` at a time from ``start``: a list by index, a
    queue in the order it will be taken (key: the priority), a feed by id."""
    with served() as (url, page), connect(url) as client:
        inbox = client.list("inbox")
        for n in range(120):
            inbox.push_back(f"item {n}")
        view = get(page, "/api/containers/inbox?start=100&limit=50")
        assert (120, 20) == (view["items"]["total"], len(view["items"]["rows"]))
        assert {"key": "100", "value": "item 100", "metadata": None} == \
            view["items"]["rows"][0]
        queue = client.queue("q")
        queue.put("low")
        queue.put("high", priority=5)
        rows = get(page, "/api/containers/q")["items"]["rows"]
        assert [("5", "high"), ("0", "low")] == [(r["key"], r["value"]) for r in rows]
        feed = client.feed("news")
        feed.publish({"title": "x"}, id="first")
        assert [("first", "{'title': 'x'}")] == [
            (r["key"], r["value"]) for r in get(page, "/api/containers/news")["items"]["rows"]]


def test_the_sessions_page_shows_claims_waits_and_subscriptions() -> None:
    with served() as (url, page), connect(url) as client:
        jobs = client.jobs("render")
        jobs.put("a")
        job = jobs.claim(timeout=1)
        subscription = client.list("inbox").subscribe()
        waiter = threading.Thread(target=_pop_or_empty, args=(client.list("empty"),))
        waiter.start()

        def mine() -> dict[str, Any] | None:
            for session in get(page, "/api/sessions")["sessions"]:
                if session["claims"] and session["waits"]:
                    found: dict[str, Any] = session
                    return found
            return None

        wait_until(lambda: mine() is not None)
        session = mine()
        assert session is not None
        assert [("render", job.id, 1)] == [(c["container"], c["id"], c["attempt"])
                                           for c in session["claims"]]
        assert [("empty", "wait_pop_next")] == [(w["container"], w["op"])
                                                for w in session["waits"]]
        assert ["inbox"] == [s["container"] for s in session["subscriptions"]]
        assert session["who"].startswith("127.0.0.1:")
        client.list("empty").push_back("go")
        waiter.join(10)
        subscription.close()


def _pop_or_empty(handle: Any) -> None:
    with suppress(Empty):
        handle.wait_pop_next(timeout=30)


def test_the_server_page_shows_limits_and_the_journal(tmp_path: Path) -> None:
    journal = Journal(tmp_path, fsync="always")
    with served(journal=journal) as (url, page), connect(url) as client:
        client.list("inbox").push_back("x")
        view = get(page, "/api/server")
        assert (1, "server") == (view["connections"], view["mode"])
        assert view["commands"] > 0 and view["uptime"] >= 0
        assert 4096 == view["limits"]["max_waiters"]
        shown = view["journal"]
        assert (str(tmp_path), "always") == (shown["path"], shown["fsync"])
        assert shown["size"] > 0 and shown["last_fsync_age"] >= 0
        assert {"clients": 0, "max_clients": 16} == view["http"]
    journal.close()


def test_metrics_in_the_prometheus_text_format() -> None:
    """Counters, gauges and histograms per container, parsed by prometheus_client."""
    with served() as (url, page), connect(url) as client:
        jobs = client.jobs("render", max_attempts=1)
        for n in range(3):
            jobs.put(n)
        jobs.finish(jobs.claim(timeout=1))
        jobs.cancel(jobs.claim(timeout=1), reason="boom")
        client.list("inbox").push_back(1)
        status, text = request(page, "/metrics")
        assert 200 == status
        samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
                   for family in text_string_to_metric_families(text)
                   for s in family.samples}
        render = (("container", "render"),)
        assert 3 == samples[("corral_jobs_put_total", render)]
        assert 2 == samples[("corral_jobs_claimed_total", render)]
        assert 1 == samples[("corral_jobs_finished_total", render)]
        assert 1 == samples[("corral_jobs_failed_total", render)]
        assert 1 == samples[("corral_jobs_stalled_total", render)]
        assert 1 == samples[("corral_jobs", (("container", "render"), ("state", "ready")))]
        assert 2 == samples[("corral_job_wait_seconds_count", render)]
        assert 2 == samples[("corral_job_run_seconds_count", render)]
        assert 2 == samples[("corral_job_run_seconds_bucket",
                             (("container", "render"), ("le", "+Inf")))]
        inbox = (("container", "inbox"), ("kind", "volatile_list"))
        assert 1 == samples[("corral_depth", inbox)]
        assert 1 == samples[("corral_records_added_total", inbox)]
        assert 1 == samples[("corral_connections", ())]
        assert 200 == request(page, "/healthz")[0]


# -- live updates ---------------------------------------------------------------------


def test_a_stream_pushes_each_change_without_a_reload() -> None:
    with served() as (url, page), connect(url) as client:
        inbox = client.list("inbox")
        stream = Stream(page, "view=container&name=inbox")
        try:
            event, first = stream.next()
            assert ("container", 0) == (event, first["depth"])
            inbox.push_back("x")
            assert 1 == stream.until(lambda d: d["depth"] == 1)["depth"]
            overview = Stream(page, "view=overview")
            assert "inbox" == overview.next()[1]["containers"][0]["name"]
            overview.close()
        finally:
            stream.close()


def test_live_clients_are_bounded() -> None:
    """Past ``max_clients`` live streams a new one gets 503; a closed one frees its
    place."""
    with served(http={"interval": 0.05, "max_clients": 2}) as (_, page):
        streams = [Stream(page, "view=overview") for _ in range(2)]
        for stream in streams:
            stream.next()
        assert 503 == request(page, "/api/stream?view=server")[0]
        streams[0].close()
        wait_until(lambda: get(page, "/api/server")["http"]["clients"] == 1)
        third = Stream(page, "view=server")
        assert "server" == third.next()[0]
        third.close()
        streams[1].close()


# -- safety and actions -----------------------------------------------------------------


def stalled_job(client: Any, name: str = "render") -> str:
    jobs = client.jobs(name, max_attempts=1)
    id: str = jobs.put("payload")
    jobs.cancel(jobs.claim(timeout=1), reason="boom")
    return id


def test_without_a_token_the_page_is_read_only() -> None:
    with served() as (url, page), connect(url) as client:
        id = stalled_job(client)
        status, body = request(page, f"/api/containers/render/jobs/{id}/retry",
                               method="POST", token="anything")
        assert 403 == status and "read-only" in body["error"]
        assert "stalled" == client.jobs("render").state(id).value


def test_actions_need_the_token_in_a_header() -> None:
    """Retry wakes a parked claimer; retract, retry all and purge do as they say; a
    missing or wrong token, or one only in the query, changes nothing."""
    token = "s3cret"
    with served(token=token) as (url, page), connect(url, token=token) as client, \
            connect(url, token=token) as worker:
        id = stalled_job(client)
        path = f"/api/containers/render/jobs/{id}/retry"
        assert 401 == request(page, path, method="POST")[0]
        assert 401 == request(page, path, method="POST", token="wrong")[0]
        assert 401 == request(page, f"{path}?token={token}", method="POST")[0]
        assert "stalled" == client.jobs("render").state(id).value
        assert get(page, "/api/overview", token=token)["actions"]
        claimed: list[Any] = []
        parked = threading.Thread(target=lambda: claimed.append(
            worker.jobs("render").claim(timeout=30)))
        parked.start()
        wait_until(lambda: 1 == len(get(page, "/api/containers/render")["waiters"]))
        assert {"ok": True, "retried": 1} == get(page, path, method="POST", token=token)
        parked.join(10)
        assert [id] == [job.id for job in claimed]
        assert 409 == request(page, path, method="POST", token=token)[0]  # not stalled
        other = stalled_job(client, "render")
        assert {"ok": True, "retracted": 1} == get(
            page, f"/api/containers/render/jobs/{other}/retract", method="POST",
            token=token)
        assert "retracted" == client.jobs("render").state(other).value
        stalled_job(client, "render")
        stalled_job(client, "render")
        assert {"ok": True, "retried": 2} == get(
            page, "/api/containers/render/retry_all", method="POST", token=token)
        jobs = client.jobs("render")
        jobs.put("later", delay=60)
        assert 3 == get(page, "/api/containers/render/purge", method="POST",
                        token=token)["purged"]  # the 2 retried and the delayed one
        assert 0 == jobs.statistics().ready + jobs.statistics().delayed
        client.list("inbox").push_back(1)
        client.queue("q").put(1)
        client.queue("q").put(2)
        assert 1 == get(page, "/api/containers/inbox/purge", method="POST",
                        token=token)["purged"]
        assert 2 == get(page, "/api/containers/q/purge", method="POST",
                        token=token)["purged"]
        assert 0 == len(client.queue("q"))
        client.feed("news").publish("x")
        assert 409 == request(page, "/api/containers/news/purge", method="POST",
                              token=token)[0]


def test_bad_requests_get_a_4xx_and_the_page_goes_on() -> None:
    with served() as (url, page), connect(url) as client:
        client.jobs("render").put("a")
        assert 404 == request(page, "/api/containers/nothing")[0]
        assert 400 == request(page, "/api/containers/render?limit=0")[0]
        assert 400 == request(page, "/api/containers/render?start=abc")[0]
        assert 400 == request(page, "/api/stream?view=everything")[0]
        assert 400 == request(page, "/api/stream?view=container")[0]
        assert 404 == request(page, "/no/such/page")[0]
        # a GET of an action's path reads a container of that name: there is none
        assert 404 == request(page, "/api/containers/render/retry_all")[0]
        assert 403 == request(page, "/api/containers/render/jobs/1/retry", method="POST")[0]
        stream = Stream(page, "view=container&name=nothing")
        assert "NotFound" == stream.next()[1]["type"]
        stream.close()
        assert "ok" == get(page, "/healthz")["status"]


def test_beyond_loopback_every_read_needs_the_token(monkeypatch: pytest.MonkeyPatch
                                                   ) -> None:
    """A public address needs a token to serve at all; then every route but /healthz
    asks for it (checked on 127.0.0.1, with loopback taken for public)."""
    server = Server()
    with pytest.raises(InvalidArgument, match="needs a token"):
        trio.run(web.serve_http, server, "0.0.0.0", 0)
    monkeypatch.setattr(web, "is_loopback", lambda host: False)
    with served(token="s3cret") as (_, page):
        assert 401 == request(page, "/api/overview")[0]
        assert 401 == request(page, "/")[0]
        assert 401 == request(page, "/metrics")[0]
        assert 200 == request(page, "/api/overview?token=s3cret")[0]
        assert 200 == request(page, "/api/overview", token="s3cret")[0]
        assert 200 == request(page, "/healthz")[0]


# -- embedded ---------------------------------------------------------------------------


def test_an_embedded_thread_corral_serves_its_page_from_a_thread() -> None:
    with Corral() as corral, corral.serve_status(token="t", interval=0.05) as status:
        id = stalled_job(corral)
        overview = get(status.url, "/api/overview")
        assert ("embedded", 1) == (overview["mode"], row(overview, "render")["jobs"]["stalled"])
        assert "<html" in request(status.url, "/containers/render")[1].lower()
        claimed: list[Any] = []
        parked = threading.Thread(target=lambda: claimed.append(
            corral.jobs("render").claim(timeout=30)))
        parked.start()
        wait_until(lambda: 1 == len(get(status.url, "/api/containers/render")["waiters"]))
        get(status.url, f"/api/containers/render/jobs/{id}/retry", method="POST", token="t")
        parked.join(10)
        assert [id] == [job.id for job in claimed]
        assert "this corral" == get(status.url, "/api/sessions")["sessions"][0]["who"]
    with pytest.raises(OSError):
        urllib.request.urlopen(status.url + "/healthz", timeout=5)


def test_an_embedded_trio_corral_serves_its_page_as_a_task() -> None:
    async def main() -> None:
        async with open_corral() as corral, trio.open_nursery() as nursery:
            url = await nursery.start(corral.serve_status)
            jobs = await corral.jobs("render", max_attempts=1)
            await jobs.put("a")
            await jobs.cancel(await jobs.claim(), reason="boom")
            view = await trio.to_thread.run_sync(get, url, "/api/containers/render")
            assert ["stalled"] == [r["state"] for r in view["jobs"]["rows"]]
            assert "boom" == view["jobs"]["rows"][0]["error"]
            metrics = await trio.to_thread.run_sync(request, url, "/metrics")
            assert 'corral_jobs_stalled_total{container="render"} 1.0' in metrics[1]
            nursery.cancel_scope.cancel()

    trio.run(main)


# -- the command line -------------------------------------------------------------------


def test_corral_serve_http() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "corral.adapters.cli", "serve",
                             "--port", "0", "--http", "127.0.0.1:0"],
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        for _ in range(10):
            match = re.search(r"status page on (http://127\.0\.0\.1:\d+)",
                              proc.stderr.readline())
            if match:
                break
        assert match
        assert "server" == get(match.group(1), "/healthz")["mode"]
    finally:
        proc.terminate()
        assert 0 == proc.wait(10)
        assert proc.stderr is not None
        proc.stderr.close()


@pytest.mark.parametrize(("bind", "error"), [
    ("10.1.2.3:80", "needs --token"), ("127.0.0.1:99999", "port 0-65535"),
    ("nonsense", "HOST:PORT")])
def test_corral_serve_http_refuses_a_bad_bind(bind: str, error: str) -> None:
    done = subprocess.run([sys.executable, "-m", "corral.adapters.cli", "serve",
                           "--port", "0", "--http", bind], capture_output=True, text=True,
                          timeout=30)
    assert done.returncode != 0 and error in done.stderr


def test_corral_stats_prints_a_table_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    """One row per container with depth, waiters and subscribers, and for job queues
    the jobs in each state; --json gives the same for machines."""
    from corral.adapters.cli import main

    with served() as (url, _), connect(url) as client:
        stalled_job(client)
        client.jobs("render").put("ready")
        client.list("inbox").push_back(1)
        assert 0 == main(["stats", "--url", url])
        lines = capsys.readouterr().out.splitlines()
        assert lines[0].startswith(f"{url}: protocol ")
        assert ["NAME", "KIND", "DEPTH", "WAITERS", "SUBSCRIBERS", "READY", "DELAYED",
                "CLAIMED", "STALLED", "FINISHED", "RETRACTED"] == lines[1].split()
        assert ["render", "job", "2", "0", "0", "1", "0", "0", "1", "0", "0"] == \
            lines[2].split()
        assert ["inbox", "volatile_list", "1", "0", "0"] == lines[3].split()
        assert 0 == main(["stats", "--url", url, "--json"])
        shown = json.loads(capsys.readouterr().out)
        assert [("render", "job", 2, 1), ("inbox", "volatile_list", 1, None)] == [
            (c["name"], c["kind"], c["records"], c.get("stalled"))
            for c in shown["containers"]]
        assert 1 <= shown["connections"]
