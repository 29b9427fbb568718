"""One risk shard's balances, holds, settlement and fees: sans-I/O, deterministic.

Feed the shard's input entries with :meth:`Ledger.apply_entries` (or one
decoded command with :meth:`Ledger.apply`) and get back the ``sx:{acct-K}:out``
events; then drain :meth:`Ledger.take_outbox` and XADD each ``(symbol, fields)``
to that market's ``sx:{SYM}:in``. Nothing here reads a clock: time is the
input entry id's milliseconds, order ids are ``contract.ids.stage_order_id``
of it, and ``seq``/``risk_seq`` are counters kept in the state, so the same
input always gives the same events and the same forwards. Save and restore
the state with ``ledger.snapshot``.

Holds (PROTOCOL.md, section A). Every open order holds at least what the
market may still charge it: a buy limit ``notional(price, leaves)`` plus the
taker fee on it with the order's cumulative rounding (:meth:`Market.fee`), a
sell the base of its leaves, a market buy its ``quote_qty``; a stop or
take-profit holds, from its acceptance, what the order it becomes would (its
limit price, or its budget), so a triggered stop is always covered, and a
GTD order's hold is released by its ``expired`` report. A forwarded amend
may be applied after fills at the old price, so while amends are pending the
hold covers the worst of every order they may leave (``max_price``/``max_qty``);
it only ever grows at amend time and is trimmed back once every forwarded
amend has been answered. Costs: a place, cancel or amend O(1) plus its
forwarded bytes (from ``apply_entries`` a slice of its input entry, from
``apply`` one encoding); a settled report O(1); O(k log k) for the k
balances a command changes (one ``Balance`` event each, sorted).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

import msgspec

from contract import errors
from contract.commands import (
    LIMIT_TYPES,
    MARKET_TYPES,
    Amend,
    Cancel,
    Command,
    Place,
    encode_command,
    report_tif,
)
from contract.events import CancelRejected, InputRejected, Report
from contract.ids import parse_id
from contract.market import Market
from contract.risk import (
    FEE_ACCOUNT,
    Balance,
    Deposit,
    MarketAnswer,
    RiskCommand,
    RiskEvent,
    Settle,
    ToMarket,
    Transfer,
    Withdraw,
    decode_risk_command,
)
from contract.streams import FORWARD_ID_FIELD, FORWARD_SEQ_FIELD, IN_FIELD, RawEntry

log = logging.getLogger("streamex.risk")

INSUFFICIENT_FUNDS = errors.INSUFFICIENT_FUNDS
"""Reason of an order, amend or withdrawal that does not fit in ``available``."""

TERMINAL = frozenset({"filled", "canceled", "expired", "rejected"})

Outbox = list[tuple[str, list[bytes]]]
"""``(symbol, flat fields)`` of each command to forward, in order (``forward_entry``)."""


class Hold(msgspec.Struct, gc=False):
    """An open order as the ledger tracks it (mutable; ``contract.risk.HeldOrder`` in a
    snapshot, same fields)."""

    order_id: str
    account: str
    symbol: str
    client_order_id: str | None
    side: str
    type: str
    asset: str
    hold: int
    price: int
    qty: int
    cum_qty: int
    fee_num: int
    quote_qty: int
    pending_amends: list[str]
    max_price: int
    max_qty: int


class Ledger:
    """The state of one risk shard and the only code that changes it.

    ``apply_entries`` / ``apply`` are the mutators; the caller publishes the
    events in order and forwards :meth:`take_outbox`. ``_check()`` asserts
    every invariant (tests; O(accounts x assets + orders)).
    """

    def __init__(self, shard: int, markets: Mapping[str, Market],
                 fee_account: str = FEE_ACCOUNT) -> None:
        self.shard = shard
        self.markets = dict(markets)
        self.fee_account = fee_account
        self.accounts: dict[str, dict[str, list[int]]] = {}  # account -> asset -> [avail, held]
        self.orders: dict[str, Hold] = {}  # order id -> hold, in placement order
        self.client_ids: dict[tuple[str, str], list[str]] = {}  # (account, coid) -> order ids
        self.amends: dict[str, list[str]] = {}  # pending amend request id -> order ids it holds
        self.refs: set[tuple[str, str]] = set()  # (account, ref) of applied transfers
        self.net_transfers: dict[str, int] = {}  # asset -> deposits - withdrawals
        self.net_trades: dict[str, int] = {}  # asset -> settled into the shard minus out of it
        self.positions: dict[str, str] = {}  # symbol -> last market :out id settled
        self._settled: dict[str, tuple[int, int]] = {}  # positions, parsed
        self.seq = 0
        self.risk_seq = 0
        self.outbox: Outbox = []
        # Per-command scratch: (account, asset) -> balance before the command.
        self._touched: dict[tuple[str, str], tuple[int, int]] = {}
        self._ts_text = ""
        self._ts = 0
        # The msgpack ``c`` value the command being applied was decoded from, if any.
        self._input: bytes | None = None
        self._heads = {symbol: to_market_head(symbol) for symbol in self.markets}
        self._seq_prefix = b"%d:" % shard

    # -- queries --------------------------------------------------------------

    def balance(self, account: str, asset: str) -> tuple[int, int]:
        """``(available, held)`` of one account and asset (0, 0 if never touched). O(1)."""
        row = self.accounts.get(account, {}).get(asset)
        return (0, 0) if row is None else (row[0], row[1])

    def balances(self, account: str) -> dict[str, tuple[int, int]]:
        """Every asset the account has touched -> ``(available, held)``. O(assets)."""
        return {asset: (r[0], r[1]) for asset, r in self.accounts.get(account, {}).items()}

    def totals(self) -> dict[str, int]:
        """Per asset, ``available + held`` summed over every account. O(accounts x assets)."""
        out: dict[str, int] = {}
        for assets in self.accounts.values():
            for asset, r in assets.items():
                out[asset] = out.get(asset, 0) + r[0] + r[1]
        return out

    def take_outbox(self) -> Outbox:
        """The commands accepted for forwarding since the last call, in order; clears them.

        XADD each ``fields`` to ``sx:{symbol}:in`` (before or with the commit:
        the market drops what it has already applied by ``(shard, risk_seq)``).
        """
        out, self.outbox = self.outbox, []
        return out

    # -- the mutators ---------------------------------------------------------

    def apply_entries(self, entries: Iterable[RawEntry], events: list[RiskEvent]) -> None:
        """Apply raw ``sx:{acct-K}:in`` entries in order, appending their events to ``events``.

        An entry that cannot be decoded is answered with ``InputRejected``
        (``BAD_REQUEST``) and otherwise skipped; a command the ledger fails on
        (a bug) with ``InputRejected`` (``INTERNAL``), so replay does the same.
        Both live serving and replay take this path. Cost: ~0.5 us of decoding
        per entry plus the command.
        """
        decode = decode_risk_command
        shard = self.shard
        dispatch = self._dispatch
        for entry_id, fields in entries:
            text = entry_id.decode() if type(entry_id) is bytes else str(entry_id)
            input_id = text if shard == 0 else f"{text}-{shard}"  # stage_order_id, inlined
            ms = text.partition("-")[0]
            if ms == self._ts_text:
                ts = self._ts
            else:
                ts = self._ts = int(ms)
                self._ts_text = ms
            try:
                data = (fields[1] if len(fields) == 2 and fields[0] == IN_FIELD
                        else _command_field(fields))
                cmd = decode(data)
            except (msgspec.DecodeError, ValueError, TypeError):
                self.seq += 1
                events.append(InputRejected(self.seq, ts, input_id, errors.BAD_REQUEST))
                continue
            self._input = data if type(data) is bytes else None  # (else: re-encode)
            seq, risk_seq, mark, out_mark = self.seq, self.risk_seq, len(events), len(self.outbox)
            try:
                dispatch(input_id, ts, cmd, events)
            except Exception:  # a ledger bug must not crash-loop the shard; replay does the same
                log.exception("event=apply_failed shard=%d input_id=%s", shard, input_id)
                del events[mark:]
                del self.outbox[out_mark:]
                self._touched.clear()
                self.seq, self.risk_seq = seq, risk_seq
                self.seq += 1
                events.append(InputRejected(self.seq, ts, input_id, errors.INTERNAL))
        self._input = None

    def apply(self, input_id: str, ts: int, cmd: RiskCommand, events: list[RiskEvent]) -> None:
        """Apply one command with order/request id ``input_id`` at ``ts`` (ms).

        Appends its events (answers first, then one ``Balance`` per changed
        account and asset, sorted) and appends what it forwards to the outbox
        (``cmd``'s command re-encoded: there are no input bytes to pass on).
        """
        self._input = None
        self._dispatch(input_id, ts, cmd, events)

    def _dispatch(self, input_id: str, ts: int, cmd: RiskCommand,
                  events: list[RiskEvent]) -> None:
        """:meth:`apply` of a command decoded from ``self._input`` (or None: re-encode)."""
        t = type(cmd)
        if t is ToMarket:
            symbol = cmd.symbol  # type: ignore[union-attr]
            c = cmd.command  # type: ignore[union-attr]
            tc = type(c)
            if tc is Place:
                self._place(input_id, ts, symbol, c, events)  # type: ignore[arg-type]
            elif tc is Amend:
                self._amend(input_id, ts, symbol, c, events)  # type: ignore[arg-type]
            else:
                self._cancel(input_id, ts, symbol, c, events)
        elif t is Settle:
            self._settle(cmd, events)  # type: ignore[arg-type]
        elif t is Deposit or t is Withdraw:
            self._transfer(ts, cmd, events)  # type: ignore[arg-type]
        else:  # pragma: no cover - the decoder only produces the four commands
            raise TypeError(f"not a risk command: {cmd!r}")
        if self._touched:
            self._emit_balances(ts, events)

    # -- balances -------------------------------------------------------------

    def _row(self, account: str, asset: str) -> list[int]:
        """The mutable ``[available, held]`` row, remembered as touched by this command."""
        assets = self.accounts.get(account)
        if assets is None:
            assets = self.accounts[account] = {}
        row = assets.get(asset)
        if row is None:
            row = assets[asset] = [0, 0]
        key = (account, asset)
        if key not in self._touched:
            self._touched[key] = (row[0], row[1])
        return row

    def _available(self, account: str, asset: str) -> int:
        assets = self.accounts.get(account)
        row = None if assets is None else assets.get(asset)
        return 0 if row is None else row[0]

    def _emit_balances(self, ts: int, events: list[RiskEvent]) -> None:
        """One ``Balance`` per touched row that changed, by (account, asset). O(k log k)."""
        touched = self._touched
        accounts = self.accounts
        # The keys are unique: sorting the items compares keys only.
        for (account, asset), (was_available, was_held) in (
                sorted(touched.items()) if len(touched) > 1 else touched.items()):
            available, held = accounts[account][asset]
            if available != was_available or held != was_held:
                self.seq += 1
                events.append(Balance(self.seq, ts, account, asset, available, held))
        touched.clear()

    # -- orders ---------------------------------------------------------------

    def _forward(self, symbol: str, cmd: Command, input_id: str) -> None:
        """Queue ``cmd`` for its market: ``contract.streams.forward_entry``'s fields, inlined.

        The command's bytes are the ones it arrived in when its entry starts as
        msgspec writes a ``ToMarket`` of ``symbol`` (``self._heads``): the rest
        of the entry, sliced (~0.1 us; the same bytes ``encode_command`` gives
        for what msgspec wrote, in any case bytes the market decodes to ``cmd``).
        Otherwise, or for :meth:`apply`, re-encoded (~0.6 us).
        """
        self.risk_seq += 1
        data = self._input
        head = self._heads.get(symbol)
        command = (data[len(head):] if data is not None and head is not None
                   and data.startswith(head) else encode_command(cmd))
        self.outbox.append((symbol, [
            IN_FIELD, command, FORWARD_SEQ_FIELD, self._seq_prefix + b"%d" % self.risk_seq,
            FORWARD_ID_FIELD, input_id.encode()]))

    def _reject_place(self, input_id: str, ts: int, symbol: str, cmd: Place, reason: str,
                      events: list[RiskEvent]) -> None:
        """Answer a place the ledger does not forward with the market's ``rejected`` report."""
        limit = cmd.type in LIMIT_TYPES
        self.seq += 1
        events.append(MarketAnswer(self.seq, ts, symbol, Report(
            self.seq, ts, cmd.account, input_id, cmd.client_order_id, cmd.side, cmd.type,
            report_tif(cmd.type, cmd.tif), cmd.price if limit else 0,  # type: ignore[arg-type]
            cmd.qty, "rejected", "rejected", 0, 0, 0, 0, 0, None, None, reason, 0,
            cmd.stop_price, cmd.expire_time, cmd.display_qty)))

    def _reject_request(self, input_id: str, ts: int, symbol: str, cmd: Cancel | Amend,
                        reason: str, events: list[RiskEvent]) -> None:
        self.seq += 1
        events.append(MarketAnswer(self.seq, ts, symbol, CancelRejected(
            self.seq, ts, cmd.account, cmd.order_id, cmd.client_order_id, input_id, reason)))

    def _place(self, input_id: str, ts: int, symbol: str, cmd: Place,
               events: list[RiskEvent]) -> None:
        # Only a Place built in Python (``apply``) may hold a wrong value: the decoder
        # refuses them. Rejected as the book does.
        if self._input is None and cmd.invalid_field() is not None:
            self.seq += 1
            events.append(InputRejected(self.seq, ts, input_id, errors.BAD_REQUEST))
            return
        market = self.markets.get(symbol)
        if market is None:
            self._reject_place(input_id, ts, symbol, cmd, errors.UNKNOWN_SYMBOL, events)
            return
        buy = cmd.side == "buy"
        qty = cmd.qty
        limit = cmd.type in LIMIT_TYPES
        reason = None
        # A stop holds what the order it becomes may cost: it is always affordable then.
        if cmd.type in MARKET_TYPES and buy:  # by budget: quote_qty, never qty
            hold = cmd.quote_qty
            if qty != 0 or hold <= 0:
                reason = errors.BAD_REQUEST
        elif cmd.quote_qty != 0:
            reason = errors.BAD_REQUEST
        elif not market.min_lots <= qty <= market.max_lots:
            reason = errors.INVALID_QTY
        elif limit and not market.min_ticks <= cmd.price <= market.max_ticks:
            reason = errors.INVALID_PRICE
        else:
            hold = market.buy_hold(cmd.price, qty) if buy else market.base_amount(qty)
        if reason is None and input_id in self.orders:
            reason = errors.BAD_REQUEST  # an input entry can only be one order
        if reason is not None:
            self._reject_place(input_id, ts, symbol, cmd, reason, events)
            return
        asset = market.quote if buy else market.base
        account = cmd.account
        if self._available(account, asset) < hold:
            self._reject_place(input_id, ts, symbol, cmd, INSUFFICIENT_FUNDS, events)
            return
        row = self._row(account, asset)
        row[0] -= hold
        row[1] += hold
        price = cmd.price if limit else 0
        coid = cmd.client_order_id
        self.orders[input_id] = Hold(input_id, account, symbol, coid, cmd.side, cmd.type,
                                     asset, hold, price, qty, 0, 0, cmd.quote_qty, [],
                                     price, qty)
        if coid is not None:
            ids = self.client_ids.get((account, coid))
            if ids is None:
                self.client_ids[(account, coid)] = [input_id]
            else:
                ids.append(input_id)
        self._forward(symbol, cmd, input_id)

    def _cancel(self, input_id: str, ts: int, symbol: str, cmd: Command,
                events: list[RiskEvent]) -> None:
        """Cancel / CancelAll: no hold changes until the market answers; forwarded as is."""
        if symbol not in self.markets:
            if type(cmd) is Cancel:
                self._reject_request(input_id, ts, symbol, cmd, errors.UNKNOWN_SYMBOL, events)
            return  # a cancel_all of an unknown market cancels nothing
        self._forward(symbol, cmd, input_id)

    def _amend_targets(self, symbol: str, cmd: Amend) -> list[Hold]:
        """Every held order that may rest the market may find for ``cmd`` (limit orders and
        stops; a superset: by client order id, an order the market has already finished
        may share it)."""
        coid = cmd.client_order_id
        if cmd.order_id is not None:
            o = self.orders.get(cmd.order_id)
            if (o is None or o.account != cmd.account or o.symbol != symbol
                    or o.type == "market" or (coid is not None and o.client_order_id != coid)):
                return []
            return [o]
        if coid is None:
            return []
        ids = self.client_ids.get((cmd.account, coid))
        if ids is None:
            return []
        orders = self.orders
        return [orders[i] for i in ids
                if orders[i].symbol == symbol and orders[i].type != "market"]

    def _amend(self, input_id: str, ts: int, symbol: str, cmd: Amend,
               events: list[RiskEvent]) -> None:
        market = self.markets.get(symbol)
        if market is None:
            self._reject_request(input_id, ts, symbol, cmd, errors.UNKNOWN_SYMBOL, events)
            return
        new_qty, new_price = cmd.qty, cmd.price
        targets = self._amend_targets(symbol, cmd)
        stop_price = cmd.stop_price
        if (not targets or (new_qty is None and new_price is None and stop_price is None)
                or (new_qty is not None and not market.min_lots <= new_qty <= market.max_lots)
                or (new_price is not None
                    and not market.min_ticks <= new_price <= market.max_ticks)
                or (stop_price is not None
                    and not market.min_ticks <= stop_price <= market.max_ticks)):
            # The market surely rejects it (or finds no order): nothing to hold.
            self._forward(symbol, cmd, input_id)
            return
        increases: list[int] = []
        need: dict[str, int] = {}
        for o in targets:
            inc = max(0, _amend_bound(market, o, new_price, new_qty) - o.hold)
            increases.append(inc)
            if inc:
                need[o.asset] = need.get(o.asset, 0) + inc
        account = cmd.account
        for asset, amount in need.items():
            if self._available(account, asset) < amount:
                self._reject_request(input_id, ts, symbol, cmd, INSUFFICIENT_FUNDS, events)
                return
        for o, inc in zip(targets, increases, strict=True):
            if inc:
                row = self._row(account, o.asset)
                row[0] -= inc
                row[1] += inc
                o.hold += inc
            o.pending_amends.append(input_id)
            if new_price is not None and new_price > o.max_price:
                o.max_price = new_price
            if new_qty is not None and new_qty > o.max_qty:
                o.max_qty = new_qty
        self.amends[input_id] = [o.order_id for o in targets]
        self._forward(symbol, cmd, input_id)

    # -- settlement -----------------------------------------------------------

    def _settle(self, cmd: Settle, events: list[RiskEvent]) -> None:
        symbol = cmd.symbol
        out_id = parse_id(cmd.out_id)
        last = self._settled.get(symbol)
        if last is not None and out_id <= last:
            return  # that :out entry is settled already
        self.positions[symbol] = cmd.out_id
        self._settled[symbol] = out_id
        market = self.markets.get(symbol)
        if market is None:
            return
        orders = self.orders
        for e in cmd.events:
            if type(e) is Report:
                o = orders.get(e.order_id)
                if o is not None and o.symbol == symbol:
                    self._on_report(market, o, e)
            elif type(e) is CancelRejected and e.request_id in self.amends:
                self._resolve_amend(market, e.request_id)

    def _on_report(self, market: Market, o: Hold, r: Report) -> None:
        exec_type = r.exec_type
        if exec_type == "trade":
            self._fill(market, o, r)
        o.price = r.price
        o.qty = r.qty
        o.cum_qty = r.cum_qty
        if exec_type == "replaced" and o.pending_amends:
            self._resolve_amend(market, o.pending_amends[0])
        if r.status in TERMINAL:
            self._release(o, o.hold)
            self._forget(o)
        elif not o.pending_amends:
            self._trim(market, o)

    def _fill(self, market: Market, o: Hold, r: Report) -> None:
        notional = market.notional(r.last_price, r.last_qty)
        fee = r.fee
        o.fee_num = market.fee(o.fee_num, notional, r.liquidity == "maker")[1]
        base_units = market.base_amount(r.last_qty)
        base, quote = market.base, market.quote
        account = o.account
        flows = self.net_trades
        if o.side == "buy":
            paid = notional + fee
            o.hold -= paid
            self._row(account, quote)[1] -= paid
            self._row(account, base)[0] += base_units
            flows[base] = flows.get(base, 0) + base_units
            flows[quote] = flows.get(quote, 0) - notional
        else:
            o.hold -= base_units
            self._row(account, base)[1] -= base_units
            self._row(account, quote)[0] += notional - fee
            flows[base] = flows.get(base, 0) - base_units
            flows[quote] = flows.get(quote, 0) + notional
        if fee:
            self._row(self.fee_account, quote)[0] += fee

    def _resolve_amend(self, market: Market, request_id: str) -> None:
        """A forwarded amend was answered: drop it everywhere; trim what it held."""
        orders = self.orders
        for oid in self.amends.pop(request_id):
            o = orders[oid]
            o.pending_amends.remove(request_id)
            if not o.pending_amends:
                self._trim(market, o)

    def _trim(self, market: Market, o: Hold) -> None:
        """No amend pending: release what ``o``'s leaves can no longer cost."""
        o.max_price = o.price
        o.max_qty = o.qty
        excess = o.hold - _required(market, o)
        if excess > 0:
            self._release(o, excess)

    def _release(self, o: Hold, amount: int) -> None:
        if amount:
            row = self._row(o.account, o.asset)
            row[0] += amount
            row[1] -= amount
            o.hold -= amount

    def _forget(self, o: Hold) -> None:
        oid = o.order_id
        del self.orders[oid]
        if o.client_order_id is not None:
            key = (o.account, o.client_order_id)
            ids = self.client_ids[key]
            ids.remove(oid)
            if not ids:
                del self.client_ids[key]
        for request_id in o.pending_amends:
            ids = self.amends[request_id]
            ids.remove(oid)
            if not ids:
                del self.amends[request_id]

    # -- transfers ------------------------------------------------------------

    def _transfer(self, ts: int, cmd: Deposit | Withdraw, events: list[RiskEvent]) -> None:
        deposit = type(cmd) is Deposit
        amount, asset, account, ref = cmd.amount, cmd.asset, cmd.account, cmd.ref
        status = "applied"
        reason = None
        if amount <= 0:
            status, reason = "rejected", errors.BAD_REQUEST
        elif (account, ref) in self.refs:  # a ref is the account's: others may reuse it
            status = "duplicate"
        elif not deposit and self._available(account, asset) < amount:
            status, reason = "rejected", INSUFFICIENT_FUNDS
        else:
            self.refs.add((account, ref))
            delta = amount if deposit else -amount
            self._row(account, asset)[0] += delta
            self.net_transfers[asset] = self.net_transfers.get(asset, 0) + delta
        self.seq += 1
        events.append(Transfer(self.seq, ts, "deposit" if deposit else "withdraw", account,
                               asset, amount, ref, status, reason))  # type: ignore[arg-type]

    # -- invariants -----------------------------------------------------------

    def _check(self) -> None:
        """Assert every invariant of the shard. O(accounts x assets + orders)."""
        held: dict[tuple[str, str], int] = {}
        for oid, o in self.orders.items():
            assert oid == o.order_id
            assert o.hold >= 0, f"negative hold {oid}"
            market = self.markets[o.symbol]
            if o.pending_amends:
                assert o.max_price >= o.price and o.max_qty >= o.qty
            else:
                assert (o.max_price, o.max_qty) == (o.price, o.qty), f"stale envelope {oid}"
            assert o.hold >= _required(market, o), f"hold below what {oid} may cost"
            assert o.asset == (market.quote if o.side == "buy" else market.base)
            for request_id in o.pending_amends:
                assert oid in self.amends[request_id], f"amend index misses {oid}"
            key = (o.account, o.asset)
            held[key] = held.get(key, 0) + o.hold
        for request_id, ids in self.amends.items():
            assert ids, f"empty amend entry {request_id}"
            assert all(request_id in self.orders[i].pending_amends for i in ids)
        coids: dict[tuple[str, str], list[str]] = {}
        for oid, o in self.orders.items():
            if o.client_order_id is not None:
                coids.setdefault((o.account, o.client_order_id), []).append(oid)
        assert coids == self.client_ids, "client order id index != orders"
        totals: dict[str, int] = {}
        for account, assets in self.accounts.items():
            for asset, (available, on_hold) in assets.items():
                assert available >= 0 and on_hold >= 0, f"negative balance {account} {asset}"
                assert on_hold == held.pop((account, asset), 0), \
                    f"held != open orders' holds: {account} {asset}"
                totals[asset] = totals.get(asset, 0) + available + on_hold
        assert not {k: v for k, v in held.items() if v}, f"holds without a balance: {held}"
        for asset in set(totals) | set(self.net_transfers) | set(self.net_trades):
            assert totals.get(asset, 0) == (self.net_transfers.get(asset, 0)
                                            + self.net_trades.get(asset, 0)), \
                f"{asset}: balances != deposits - withdrawals + settled trades"
        assert not self._touched


def _required(market: Market, o: Hold) -> int:
    """What ``o`` may still cost at its current price and quantity (no amend pending)."""
    if o.side == "sell":
        return market.base_amount(o.qty - o.cum_qty)
    if o.type in MARKET_TYPES:
        return o.hold  # a budget: the market never spends more than is left of it
    notional = market.notional(o.price, o.qty - o.cum_qty)
    return notional + market.fee(o.fee_num, notional, False)[0]


def _amend_bound(market: Market, o: Hold, new_price: int | None, new_qty: int | None) -> int:
    """The most ``o`` may cost from now if this amend is applied after everything pending.

    Before it applies, up to ``max_qty - cum_qty`` may fill at up to ``max_price``;
    after, ``new_qty - cum_qty`` in all, at up to the new price. O(1).
    """
    top_price, top_qty, cum = o.max_price, o.max_qty, o.cum_qty
    qty = top_qty if new_qty is None else new_qty
    if o.side == "sell":
        return market.base_amount(max(top_qty, qty) - cum)
    if o.type in MARKET_TYPES:
        return o.hold  # a stop's budget: an amend never changes it
    if qty <= cum:
        return 0  # the market rejects it: the order keeps what it holds now
    price = top_price if new_price is None else new_price
    before = min(top_qty, qty) - cum
    notional = (market.notional(max(top_price, price), before)
                + market.notional(price, qty - cum - before))
    return notional + market.fee(o.fee_num, notional, False)[0]


def to_market_head(symbol: str) -> bytes:
    """msgpack of a ``ToMarket`` of ``symbol`` up to its ``command``, as msgspec writes it:
    ``Message`` is tagged and ``array_like``, so ``[kind, symbol, command]`` (msgpack is
    prefix-free: an entry that starts with these bytes has its command in the rest)."""
    return b"\x93" + _head_encoder.encode("to_market") + _head_encoder.encode(symbol)


_head_encoder = msgspec.msgpack.Encoder()


def _command_field(fields: list[bytes]) -> bytes:
    """The ``c`` value of an entry's flat field list; raises ``ValueError`` if absent."""
    for i in range(0, len(fields) - 1, 2):
        if fields[i] == IN_FIELD:
            return fields[i + 1]
    raise ValueError("no command field")
