"""A TCP proxy on 127.0.0.1 that can break what goes through it, for fault tests.

The client (the bot) connects to the proxy's port instead of the server's. The proxy can:
- `cut_all()`: reset every open connection at once, as a server that went away does;
- `refuse_for(seconds)`: reset every new connection as soon as it is accepted, as a server
  that is restarting does (a TCP connect to it succeeds or fails depending on timing; either
  way nothing gets through);
- `cut_when(pattern)`: reset a connection the moment the server's side of it contains
  `pattern` (once), so a reply is cut in the middle: an IMAP FETCH mid-transfer, say.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field


@dataclass(eq=False)  # each pair is itself: hashed by identity
class _Pair:
    client: asyncio.StreamWriter
    server: asyncio.StreamWriter
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def abort(self) -> None:
        for writer in (self.client, self.server):
            writer.transport.abort()


class TcpProxy:
    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target_host, self.target_port = target_host, target_port
        self.port = 0
        self.cuts = 0
        self.refused = 0
        self._pairs: set[_Pair] = set()
        self._refuse_until = 0.0
        self._patterns: list[bytes] = []
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        self.cut_all(count=False)
        await self._server.wait_closed()

    # Faults

    def cut_all(self, *, count: bool = True) -> None:
        for pair in list(self._pairs):
            pair.abort()
            self.cuts += count
        self._pairs.clear()

    def refuse_for(self, seconds: float) -> None:
        self._refuse_until = time.monotonic() + seconds

    def cut_when(self, pattern: bytes) -> None:
        self._patterns.append(pattern)

    @property
    def connections(self) -> int:
        return len(self._pairs)

    # Forwarding

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if time.monotonic() < self._refuse_until:
            self.refused += 1
            writer.transport.abort()
            return
        try:
            upstream_reader, upstream = await asyncio.open_connection(
                self.target_host, self.target_port
            )
        except OSError:
            writer.transport.abort()
            return
        pair = _Pair(writer, upstream)
        self._pairs.add(pair)
        pair.tasks = [
            asyncio.create_task(self._pump(reader, upstream, pair, watch=False)),
            asyncio.create_task(self._pump(upstream_reader, writer, pair, watch=True)),
        ]
        await asyncio.gather(*pair.tasks, return_exceptions=True)
        self._pairs.discard(pair)

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        pair: _Pair,
        *,
        watch: bool,
    ) -> None:
        try:
            while chunk := await reader.read(65536):
                if watch and self._patterns:
                    found = next((p for p in self._patterns if p in chunk), None)
                    if found is not None:
                        self._patterns.remove(found)
                        cut_at = chunk.index(found) + len(found)
                        writer.write(chunk[:cut_at])  # part of the reply, then the reset
                        with contextlib.suppress(ConnectionError):
                            await writer.drain()
                        self.cuts += 1
                        pair.abort()
                        return
                writer.write(chunk)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            pair.abort()
