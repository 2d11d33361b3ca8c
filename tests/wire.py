"""A raw protocol client for tests: bytes out, lines and payloads in."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

from corral.transports.tcp import Limits, Server, serve_tcp


class Wire:
    """Talks to a server byte for byte, as a transcript does."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buffer = bytearray()

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def _fill(self) -> None:
        with trio.fail_after(10):
            data = await self.stream.receive_some(65536)
        if not data:
            raise EOFError("the server closed the connection")
        self.buffer += data

    async def line(self) -> str:
        while b"\r\n" not in self.buffer:
            await self._fill()
        end = self.buffer.index(b"\r\n")
        text = self.buffer[:end].decode()
        del self.buffer[:end + 2]
        return text

    async def block(self, size: int) -> bytes:
        while len(self.buffer) < size + 2:
            await self._fill()
        data = bytes(self.buffer[:size])
        del self.buffer[:size + 2]
        return data

    async def message(self) -> list[str]:
        """One line with the payloads its trailing specs announce, as text."""
        line = await self.line()
        words = line.split(" ")
        out = [line]
        for i, word in enumerate(words):
            if word in ("key", "value", "metadata") and i + 2 < len(words) and (
                    words[i + 2].isdigit()):
                out.append((await self.block(int(words[i + 2]))).decode())
        return out

    async def closed(self) -> bool:
        """Whether the server has closed this connection (reads what is left)."""
        try:
            while True:
                await self._fill()
        except (EOFError, trio.BrokenResourceError):
            return True


@asynccontextmanager
async def running_server(token: str | None = None, limits: Limits | None = None
                         ) -> AsyncIterator[tuple[Server, int]]:
    """A server on 127.0.0.1 and an ephemeral port, stopped afterwards."""
    server = Server(token=token, limits=limits)
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(serve_tcp, server, "127.0.0.1", 0)
        port = listeners[0].socket.getsockname()[1]
        yield server, port
        nursery.cancel_scope.cancel()


@asynccontextmanager
async def wire(port: int) -> AsyncIterator[Wire]:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        yield Wire(stream)
