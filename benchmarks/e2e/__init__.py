"""``streamex bench e2e``: end-to-end order latency under open-loop load.

Offers a fixed rate of orders to the gateway over raw websocket connections
(logged on, split over two accounts so trades happen between accounts) and
times, per order, request -> ``received`` reply, request -> ``new`` execution
report, request -> the taker's first ``trade`` report (marketable orders) and
request -> the public ``trades`` push of that trade from the market-data
service.

Open loop: request ``i`` is due at ``t0 + i / rate`` and every latency is
measured from that scheduled time, so a stall anywhere (exchange or load
generator) is counted, not hidden (no coordinated omission). The sender
sleeps on a Linux ``timerfd`` (microsecond precision; the event loop's own
timers have 1 ms resolution) and sends frames encoded before the run over
picows connections (:mod:`benchmarks.ws_client`): up to ``SPIN_MAX_RATE`` it
wakes ``SPIN_NS`` early and spins the event loop to the due time, above it
it wakes on a ``SEND_TICK_NS`` grid and sends everything due. The flow is
:func:`benchmarks.flow.realistic_flow` per market, generated before timing;
its synthetic order ids are mapped to the real ones from the ``received``
replies (a cancel or amend sent before that reply names the order by
``client_order_id``).

The floor is measured in the same run, on the idle exchange just before the
load: a websocket echo round trip (the load's own client, see
:mod:`benchmarks.ws_client`, against an echo server of the gateway's library
in this process, :mod:`benchmarks.echo_server`) and a Redis ``PING`` round
trip with redis-py's asyncio client (the exchange's own client library,
without a socket timeout, its fastest configuration; a raw-socket ``PING``
is reported too), over the URL the exchange's services use (the embedded
server's unix socket under ``streamex up``).
``floor = ws + 2 x redis`` at each percentile.

Latencies go into :class:`benchmarks.histogram.Histogram` (log-linear, 3
significant digits, exact max). Without ``--url`` the benchmark starts its
own exchange (``python -m streamex up`` on free ports with two bench
accounts) and stops it with SIGTERM at the end.

The modules, one job each: :mod:`~benchmarks.e2e.launch` (the exchange and
its endpoints), :mod:`~benchmarks.e2e.schedule` (the plan and the sender's
waker), :mod:`~benchmarks.e2e.load` (the run: connections, sending,
receiving, recording), :mod:`~benchmarks.e2e.floor` (the floor),
:mod:`~benchmarks.e2e.report` (summaries, text and JSON, CPU per process),
:mod:`~benchmarks.e2e.plot` (``--plot``) and :mod:`~benchmarks.e2e.cli`
(``add_arguments`` and ``run``, re-exported here for ``streamex bench``).
"""

from benchmarks.e2e.cli import add_arguments, run

__all__ = ["add_arguments", "run"]
