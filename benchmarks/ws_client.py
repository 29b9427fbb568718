"""The load generators' websocket client: picows (C), one callback per received frame.

The one client of ``streamex bench e2e`` (order entry, market data, the
echo floor) and ``streamex bench feed`` (its subscribers and echo floor).
A generator shares the machine with the exchange it measures, so every
microsecond it spends is taken from the exchange. The ``websockets``
client costs ~25 us of Python per frame (a task wake-up per message, a
frame parser and a ``getrandom`` system call per sent mask); picows parses
and masks in C and calls :meth:`BenchConnection.on_ws_frame` straight from
the transport's ``data_received``, which also timestamps a frame when it
arrives rather than when a task gets round to it.

Only what the benchmark needs: unfragmented text frames, sends without
flow control (an open-loop load does not wait for a slow server; unsent
bytes queue in the transport and show up as latency).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

OnFrame = Callable[[bytes, int], None]
"""Called with each text frame's payload and ``time.monotonic_ns()`` at its arrival."""


class BenchConnection(WSListener):
    """One client connection; frames go to ``on_frame``, ``closed`` says why it ended."""

    def __init__(self, on_frame: OnFrame) -> None:
        self.on_frame = on_frame
        self.transport: WSTransport | None = None
        self.closed: str | None = None
        self._clock = time.monotonic_ns

    # -- picows callbacks

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        if kind is WSMsgType.TEXT or kind is WSMsgType.BINARY:
            if frame.fin:
                self.on_frame(frame.get_payload_as_bytes(), self._clock())
            else:  # the services never fragment: treat it as a protocol failure
                self.closed = "fragmented message received"
                transport.send_close(WSCloseCode.UNSUPPORTED_DATA)
                transport.disconnect()
        elif kind is WSMsgType.CLOSE:
            if self.closed is None:
                self.closed = (f"closed by the server: {frame.get_close_code()} "
                               f"{frame.get_close_reason()}")
            transport.send_close(frame.get_close_code())
            transport.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        if self.closed is None:
            self.closed = "connection lost"

    # -- use

    def send(self, text: bytes) -> None:
        """Queue one text frame (UTF-8 bytes); written at once unless the socket is full."""
        if self.transport is None or self.closed is not None:
            raise ConnectionError(self.closed or "not connected")
        self.transport.send(WSMsgType.TEXT, text)

    async def close(self) -> None:
        """Close handshake (normal closure), then wait for the disconnect."""
        transport = self.transport
        if transport is None:
            return
        if self.closed is None:
            self.closed = "closed by the client"
            transport.send_close(WSCloseCode.OK)
        transport.disconnect()
        await transport.wait_disconnected()


async def open_connection(url: str, on_frame: OnFrame, timeout_s: float = 10.0
                          ) -> BenchConnection:
    """Connect to ``url`` (ws://); frames received from now on go to ``on_frame``."""
    _, listener = await ws_connect(lambda: BenchConnection(on_frame), url,
                                   websocket_handshake_timeout=timeout_s,
                                   max_frame_size=2**24)
    assert isinstance(listener, BenchConnection)
    return listener
