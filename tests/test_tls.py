"""Secrets and transport security: TLS for TCP (corrals://) with a self-signed
certificate made at test time by openssl, and the token from a file or CORRAL_TOKEN."""

from __future__ import annotations

import io
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import trio
from conftest import serving, start, wait_until

from corral.adapters.cli import main, run_cli
from corral.adapters.client import connect, open_client
from corral.adapters.workers import push_task
from corral.kernel import Empty, InvalidArgument
from corral.transports.codec import ProtocolError
from corral.transports.tcp import Limits, server_tls


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1 and localhost, and its key (EC: quick)."""
    where = tmp_path_factory.mktemp("tls")
    cert, key = str(where / "cert.pem"), str(where / "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "2", "-subj", "/CN=localhost", "-addext",
                    "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                   check=True, capture_output=True, timeout=60)
    return cert, key


@contextmanager
def tls_server(cert: tuple[str, str], **server: object) -> Iterator[str]:
    """A background server speaking TLS only; yields its corrals:// URL."""
    with serving(zmq=False, tls_cert=cert[0], tls_key=cert[1], **server) as urls:
        assert urls.tcp.startswith("corrals://127.0.0.1:")
        yield urls.tcp


@contextmanager
def serve_process(*options: str, env: dict[str, str] | None = None) -> Iterator[str]:
    """`corral serve --port 0 OPTIONS` as a child process; yields its URL."""
    proc = subprocess.Popen([sys.executable, "-m", "corral.adapters.cli", "serve",
                             "--port", "0", *options], stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})
    assert proc.stderr is not None
    with proc:
        try:
            lines = []
            while not (match := re.search(r"listening on 127\.0\.0\.1:(\d+)( \(TLS\))?",
                                          line := proc.stderr.readline())):
                assert line, lines  # it exited before it listened
                lines.append(line)
            scheme = "corrals" if match.group(2) else "corral"
            yield f"{scheme}://127.0.0.1:{match.group(1)}"
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(10)


def test_the_thread_client_over_tls(cert: tuple[str, str]) -> None:
    """put/claim/finish, a parked wait served by another client, an interrupted wait."""
    with tls_server(cert) as url, connect(url, tls_ca=cert[0]) as a, \
            connect(url, tls_ca=cert[0]) as b:
        jobs = a.jobs("q")
        id = jobs.put({"n": 1})
        job = b.jobs("q").claim(timeout=5)
        assert (id, {"n": 1}) == (job.id, job.item)
        job.finish("done")
        assert "done" == jobs.result(id, timeout=5)

        got: list[object] = []
        waiter = start(lambda: got.append(a.list("l").wait_pop_next(timeout=30)))
        wait_until(lambda: b.list("l").statistics().waiters == 1)
        b.list("l").push_back("x" * 100_000)  # several TLS records
        waiter.join(10)
        assert ["x" * 100_000] == got

        errors: list[BaseException] = []

        def wait() -> None:
            try:
                a.list("m").wait_pop_next(timeout=30)
            except Empty as error:
                errors.append(error)

        waiter = start(wait)
        wait_until(lambda: b.list("m").statistics().waiters == 1)
        a.interrupt(waiter)
        waiter.join(10)
        assert ["interrupted"] == [str(e) for e in errors]
        assert 0 == b.list("m").statistics().waiters


def test_the_trio_client_over_tls(cert: tuple[str, str]) -> None:
    """The trio client: put/claim/finish, a parked wait served, a cancelled wait
    withdrawn (what comes later is not lost to it)."""
    async def main() -> None:
        async with open_client(url, tls_ca=cert[0]) as a, \
                open_client(url, tls_ca=cert[0]) as b:
            id = await (await a.jobs("q")).put(7)
            job = await (await b.jobs("q")).claim(timeout=5)
            await job.finish(8)
            assert (id, 8) == (job.id, await (await a.jobs("q")).result(id, timeout=5))

            mine, theirs = await a.list("l"), await b.list("l")

            async def parked() -> None:
                while (await theirs.statistics()).waiters != 1:
                    await trio.sleep(0.01)

            got: list[object] = []
            async with trio.open_nursery() as nursery:
                async def take() -> None:
                    got.append(await mine.wait_pop_next(timeout=30))

                nursery.start_soon(take)
                await parked()
                await theirs.push_back("y")
            assert ["y"] == got

            with trio.CancelScope() as scope:
                async def cancel_once_parked() -> None:
                    await parked()
                    scope.cancel()

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(cancel_once_parked)
                    await mine.wait_pop_next(timeout=30)
            assert scope.cancelled_caught
            await theirs.push_back("z")  # not taken by the withdrawn wait
            assert "z" == await theirs.wait_pop_next(timeout=5)

    with tls_server(cert) as url:
        trio.run(main)


def test_an_untrusted_certificate_is_refused_naming_the_server(
        cert: tuple[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    """Verification is on by default (the system's trust store does not know a
    self-signed certificate): a typed error that names the address."""
    with tls_server(cert) as url:
        address = url.removeprefix("corrals://")
        with pytest.raises(ssl.SSLCertVerificationError, match=re.escape(address)):
            connect(url, reconnect=None)

        async def trio_client() -> None:
            async with open_client(url, reconnect=None):
                pass  # pragma: no cover - refused

        with pytest.raises(ssl.SSLCertVerificationError, match=re.escape(address)):
            trio.run(trio_client)
        assert 1 == main(["ping", "--url", url])
        assert "certificate of 127.0.0.1" in capsys.readouterr().err
        with connect(url, tls_ca=cert[0]) as client:  # and it still serves
            client.ping()


def test_plain_and_tls_mismatches_fail_clearly_and_the_server_goes_on(
        cert: tuple[str, str]) -> None:
    """A plain client of a TLS port is told so; a TLS client of a plain port is
    closed at once; a broken handshake is dropped; others are served throughout."""
    with tls_server(cert) as url, connect(url, tls_ca=cert[0]) as good:
        with connect(url.replace("corrals://", "corral://"), reconnect=None) as plain, \
                pytest.raises(ProtocolError, match="speaks TLS only"):
            plain.ping()
        host, port = url.removeprefix("corrals://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as raw:
            raw.sendall(b"\x16\x03\x01\x00\x05hello")  # a handshake record of garbage
            while raw.recv(100):  # an alert, then the end (a timeout fails the test)
                pass
        good.list("still").push_back(1)
        assert 1 == good.list("still").statistics().records
    with serving(zmq=False) as urls:
        tls_url = urls.tcp.replace("corral://", "corrals://")
        with pytest.raises(ConnectionError, match="does it serve TLS"):
            connect(tls_url, tls_ca=cert[0], reconnect=None)
        with connect(urls.tcp) as plain:
            plain.ping()


def test_a_silent_connection_to_a_tls_port_is_dropped_at_the_stall_timeout(
        cert: tuple[str, str]) -> None:
    """A handshake that never comes is bounded by Limits.stall_timeout."""
    with tls_server(cert, limits=Limits(stall_timeout=0.2)) as url:
        host, port = url.removeprefix("corrals://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as raw:
            assert b"" == raw.recv(100)  # closed by the server, well before 10 s


def test_the_token_from_a_file_and_the_environment(
        cert: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """corral serve --token-file, clients' --token-file and CORRAL_TOKEN (and
    CORRAL_TLS_CA), the library's CORRAL_TOKEN, the cli; a wrong token is refused."""
    secret = tmp_path / "token"
    secret.write_text("  s3cret  \nignored\n")
    with serve_process("--token-file", str(secret), "--tls-cert", cert[0],
                       "--tls-key", cert[1]) as url:
        assert url.startswith("corrals://")
        assert 0 == main(["ping", "--url", url, "--token-file", str(secret),
                          "--tls-ca", cert[0]])
        monkeypatch.setenv("CORRAL_TLS_CA", cert[0])
        assert 1 == main(["stats", "--url", url])  # no token
        assert "send auth TOKEN first" in capsys.readouterr().err
        monkeypatch.setenv("CORRAL_TOKEN", "wrong")
        assert 1 == main(["stats", "--url", url])
        with pytest.raises(ProtocolError):
            connect(url, reconnect=None)
        monkeypatch.setenv("CORRAL_TOKEN", "s3cret")
        with connect(url) as client:  # the library reads both too
            client.list("l").push_back("via env")
        assert 0 == main(["stats", "--url", url])
        out = io.StringIO()
        assert 0 == run_cli(url, "s3cret", io.StringIO("create l volatile_list\n"
                                                       "get 1 key:int=0\n"), out,
                            prompt=False)
        assert "value='via env'" in out.getvalue()
        id = push_task("t", 1, corral=url)  # the workers connect the same way
        with connect(url) as client:
            assert "ready" == client.jobs("tasks").info(id).state.value
    monkeypatch.delenv("CORRAL_TLS_CA")
    with serve_process(env={"CORRAL_TOKEN": "from-env"}) as url:
        with pytest.raises(ProtocolError):
            connect(url, reconnect=None)  # CORRAL_TOKEN is s3cret here
        with connect(url, token="from-env") as client:
            client.ping()


def test_bad_security_options_are_clear_errors(
        cert: tuple[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A certificate without its key, an empty or missing token file, TLS options on a
    plain URL: each a typed error that says what is wrong."""
    with pytest.raises(InvalidArgument, match="both"):
        server_tls(cert[0], None)
    with pytest.raises(InvalidArgument, match="cannot load"):
        server_tls(cert[1], cert[1])
    assert 1 == main(["serve", "--port", "0", "--tls-cert", cert[0]])
    assert "--tls-key" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.write_text("\n")
    assert 1 == main(["serve", "--port", "0", "--token-file", str(empty)])
    assert "no token on its first line" in capsys.readouterr().err
    assert 1 == main(["ping", "--token-file", str(tmp_path / "missing")])
    assert "cannot read the token file" in capsys.readouterr().err
    with pytest.raises(InvalidArgument, match="corrals://"):
        connect("corral://127.0.0.1:1", tls_ca=cert[0])
    with pytest.raises(InvalidArgument, match="cannot load the TLS CA"):
        connect("corrals://127.0.0.1:1", tls_ca=str(tmp_path / "missing"))
    with pytest.raises(SystemExit):
        main(["serve", "--token", "a", "--token-file", str(empty)])  # one or the other
    assert "not allowed with" in capsys.readouterr().err


def test_the_tls_scheme_is_read_as_the_url_parser_reads_it(cert: tuple[str, str]) -> None:
    """A scheme's case does not matter to URLs, so CORRALS:// is TLS too: never a plain
    connection that would send the token in clear."""
    with tls_server(cert) as url:
        upper = url.replace("corrals://", "CORRALS://")
        with connect(upper, tls_ca=cert[0], reconnect=None) as client:
            client.list("l").push_back(1)
        with pytest.raises(ssl.SSLCertVerificationError):
            connect(upper, reconnect=None)  # verified, so refused without the CA


def test_a_token_is_one_word_wherever_it_comes_from(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """`auth TOKEN` carries one word: a token with blanks could never match, so it is
    refused where it is given, on the server and on clients."""
    spaced = tmp_path / "token"
    spaced.write_text("my secret\n")
    assert 1 == main(["serve", "--port", "0", "--token-file", str(spaced)])
    assert "a token is one word" in capsys.readouterr().err
    assert 1 == main(["ping", "--url", "corral://127.0.0.1:1", "--token-file", str(spaced)])
    assert "a token is one word" in capsys.readouterr().err
    with pytest.raises(InvalidArgument, match="one word"):
        connect("corral://127.0.0.1:1", token="my secret")
    monkeypatch.setenv("CORRAL_TOKEN", "my secret")
    with pytest.raises(InvalidArgument, match="one word"):
        connect("corral://127.0.0.1:1")


def test_a_wrong_token_is_logged_with_the_address(caplog: pytest.LogCaptureFixture) -> None:
    """Each refused token is logged, for whoever watches for guessing; the connection
    may still send the right one."""
    with serving(zmq=False, token="s3cret") as urls:
        with pytest.raises(ProtocolError, match="wrong token"):
            connect(urls.tcp, token="guess", reconnect=None)
        with connect(urls.tcp, token="s3cret") as client:
            client.ping()
    assert any("wrong token" in r.getMessage() and "127.0.0.1" in r.getMessage()
               for r in caplog.records)


def test_an_encrypted_key_is_refused_without_prompting(tmp_path: Path) -> None:
    """A key with a passphrase would make OpenSSL ask on the terminal: refused, typed."""
    cert, key = str(tmp_path / "cert.pem"), str(tmp_path / "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-passout", "pass:word", "-keyout",
                    key, "-out", cert, "-days", "2", "-subj", "/CN=localhost"],
                   check=True, capture_output=True, timeout=60)
    with pytest.raises(InvalidArgument, match="encrypted"):
        server_tls(cert, key)


def test_redis_urls_take_none_of_the_servers_options(cert: tuple[str, str]) -> None:
    """A Redis URL refuses a corral token or TLS option rather than ignore it."""
    for options in ({"token": "t"}, {"tls_ca": cert[0]},
                    {"ssl_context": ssl.create_default_context()}):
        with pytest.raises(InvalidArgument, match="a Redis URL takes no"):
            connect("rediss://127.0.0.1:1/0", **options)  # type: ignore[arg-type]


def test_a_tls_client_shared_by_threads(cert: tuple[str, str]) -> None:
    """Threads sharing a TLS client pipeline their calls as over plain TCP."""
    with tls_server(cert) as url, connect(url, tls_ca=cert[0]) as client:
        def push(n: int) -> None:
            for i in range(50):
                client.list("t").push_back(n * 100 + i)

        threads = [threading.Thread(target=push, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert 200 == client.list("t").statistics().records
