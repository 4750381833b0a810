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


def serve(loop, factory, client) -> bytes:
    """A server of `factory` on an ephemeral port, `await client(port)` against it, then closed."""

    async def main():
        server = await loop.create_server(factory, "127.0.0.1", 0)
        try:
            return await client(server.sockets[0].getsockname()[1])
        finally:
            server.close()
            await server.wait_closed()

    return loop.run_until_complete(main())


def run_echo(loop):
    async def client(port):
        done = loop.create_future()
        transport, _ = await loop.create_connection(lambda: Client(done), "127.0.0.1", port)
        reply = await asyncio.wait_for(done, 5)
        transport.close()
        return reply

    return serve(loop, SlowEcho, client)


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


def serve_once(loop, factory) -> bytes:
    """One connection to a server of `factory` that echoes one byte."""

    async def client(port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"x")
        data = await reader.read(1)
        writer.close()
        return data

    return serve(loop, factory, client)


def test_protocol_with_slots_is_timed_too(loop):
    class Slotted(asyncio.Protocol):
        __slots__ = ("transport",)

        def connection_made(self, transport):
            self.transport = transport

        def data_received(self, data):
            time.sleep(0.02)
            self.transport.write(data)
            self.transport.close()

    assert serve_once(loop, Slotted) == b"x"
    slow = [s for s in recorded(loop) if s.name.endswith("Slotted.data_received")]
    assert len(slow) == 1 and slow[0].duration >= 0.02 and slow[0].kind == "io"


def test_protocol_class_is_patched_once_and_instances_are_left_alone(loop):
    from loopwatch import _shim

    made = []

    class Base(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport = transport

        def data_received(self, data):
            time.sleep(0.05)
            self.transport.write(data)

    class Counted(Base):
        def __init__(self):
            made.append(self)

    assert serve_once(loop, Counted) == b"x"
    assert serve_once(loop, Counted) == b"x"
    assert len(made) == 2
    # Nothing on the instances; the protocol's class holds one TimedMethod per callback.
    assert all(not vars(p).keys() - {"transport"} for p in made)
    timed = vars(Counted)["data_received"]
    assert type(timed) is _shim.TimedMethod and timed.__wrapped__ is vars(Base)["data_received"]
    assert type(vars(Base)["data_received"]) is not _shim.TimedMethod  # the base class is left as it was
    # A bound method of it, whose instance is the protocol: what stock's references, no more.
    bound = made[0].data_received
    assert bound.__self__ is made[0] and bound.__func__ is timed
    assert bound.__name__ == "data_received" and bound.__qualname__.endswith("Base.data_received")
    slow = [s.name for s in recorded(loop) if s.duration >= 0.05]
    assert len(slow) == 2 and all(name.endswith("Base.data_received") for name in slow)


def test_protocol_whose_callbacks_are_instance_attributes_runs_and_is_counted_unattributed(loop):
    import loopwatch

    class Shadowing(asyncio.Protocol):
        def __init__(self):
            self.connection_made = self._made  # instance attributes shadow the class's callbacks
            self.data_received = self._data

        def _made(self, transport):
            self.transport = transport

        def _data(self, data):
            self.transport.write(data)
            self.transport.close()

    before = loopwatch.status()["unattributed_protocols"]
    assert serve_once(loop, Shadowing) == b"x"
    assert loopwatch.status()["unattributed_protocols"] == before + 1
