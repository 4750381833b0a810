"""I/O coverage on asyncio and uvloop: protocol callbacks of servers and clients the loop creates are
timed and named after the protocol method, and the time is attributed once (asyncio runs
data_received inside its selector's _read_ready handle; that sample takes the protocol's name)."""
from __future__ import annotations

import asyncio
import time

from conftest import recorded


class SlowEcho(asyncio.Protocol):
    """A server whose data_received blocks the loop for 50 ms."""

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        time.sleep(0.05)
        self.transport.write(data)


class Client(asyncio.Protocol):
    def __init__(self, done):
        self.done = done

    def connection_made(self, transport):
        transport.write(b"ping")

    def data_received(self, data):
        if not self.done.done():
            self.done.set_result(data)


def run_echo(loop):
    async def main():
        server = await loop.create_server(SlowEcho, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        done = loop.create_future()
        transport, _ = await loop.create_connection(lambda: Client(done), "127.0.0.1", port)
        reply = await asyncio.wait_for(done, 5)
        transport.close()
        server.close()
        await server.wait_closed()
        return reply

    return loop.run_until_complete(main())


def test_blocking_data_received_is_one_io_sample_named_after_the_method(loop):
    assert run_echo(loop) == b"ping"
    samples = recorded(loop)
    server_side = [s for s in samples if s.name == "test_io.SlowEcho.data_received"]
    assert len(server_side) == 1
    assert server_side[0].kind == "io"
    assert 0.05 <= server_side[0].duration < 0.5
    # Attributed once: no other sample of >= 50 ms covers the same blocking call.
    assert [s.name for s in samples if s.duration >= 0.05] == ["test_io.SlowEcho.data_received"]


def test_client_protocol_callbacks_are_named_too(loop):
    run_echo(loop)
    names = {s.name for s in recorded(loop)}
    assert "test_io.Client.data_received" in names
    assert "test_io.Client.connection_made" in names
    assert "test_io.SlowEcho.connection_made" in names


def test_protocol_with_slots_still_works_and_is_counted_unattributed(loop):
    import loopwatch

    class Slotted(asyncio.Protocol):
        __slots__ = ("transport",)

        def connection_made(self, transport):
            self.transport = transport

        def data_received(self, data):
            self.transport.write(data)
            self.transport.close()

    before = loopwatch.status()["unattributed_protocols"]

    async def main():
        server = await loop.create_server(Slotted, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"x")
        data = await reader.read(1)
        writer.close()
        server.close()
        await server.wait_closed()
        return data

    assert loop.run_until_complete(main()) == b"x"
    assert loopwatch.status()["unattributed_protocols"] == before + 1
