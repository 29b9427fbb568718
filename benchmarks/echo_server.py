"""A websocket echo server of the gateway's library (``websockets``), for the floors.

The floor of a websocket hop is the round trip of a frame to a server that
does nothing but send it back: :func:`echo_server` serves that in the
calling event loop (``streamex bench e2e`` does so in its own process), and
``python -m benchmarks.echo_server`` runs it alone on uvloop, printing its
port on the first line of stdout (``streamex bench feed`` starts it so).
Per frame it costs what the gateway's library costs: a task wake-up, the
frame parser and a send.
"""

from __future__ import annotations

import asyncio

from websockets.asyncio.server import Server, ServerConnection, serve


async def echo(conn: ServerConnection) -> None:
    """Send every message received back on the same connection."""
    async for message in conn:
        await conn.send(message)


def echo_server(host: str = "127.0.0.1", port: int = 0) -> Server:
    """The echo server, to use as ``async with echo_server() as server`` (port 0: any free)."""
    return serve(echo, host, port, compression=None)


def port_of(server: Server) -> int:
    """The port ``server`` listens on."""
    return int(next(iter(server.sockets)).getsockname()[1])


async def _main() -> None:
    async with echo_server() as server:
        print(port_of(server), flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    import uvloop

    uvloop.run(_main())
