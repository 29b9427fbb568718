"""Send many websocket text messages with one socket write.

``Connection.send`` costs a context manager, a frame and a transport write
(a system call) per message. :func:`send_texts` frames a whole batch with the
sans-I/O protocol (``send_text``) and hands the bytes to the transport in one
``writelines`` (one ``writev`` on uvloop), inside websockets' own
``send_context`` so closing and flow control behave as with ``send``.
"""

from __future__ import annotations

from collections.abc import Iterable

from websockets.asyncio.connection import Connection


async def send_texts(ws: Connection, frames: Iterable[bytes]) -> None:
    """Send each of ``frames`` (UTF-8 bytes, e.g. JSON) as its own text message, in order.

    Cost: one frame header per message and one transport write for the lot.
    Returns once the data is handed to the transport; waits first while the
    transport's buffer is above its high-water mark (the peer reads slowly).
    Raises :exc:`~websockets.exceptions.ConnectionClosed` like ``send``; the
    caller then stops sending.
    """
    async with ws.send_context():
        protocol = ws.protocol
        for frame in frames:
            protocol.send_text(frame)
        writes = protocol.data_to_send()
        if b"" in writes:  # end of stream (never after send_text): websockets writes it
            cut = writes.index(b"")
            protocol.writes[:0] = writes[cut:]
            writes = writes[:cut]
        if writes:
            ws.transport.writelines(writes)
