"""The risk stage's streams: ``sx:{acct-K}:in`` commands, ``sx:{acct-K}:out`` events, snapshot.

Accounts are sharded: account ``A`` belongs to risk shard
``K = crc32(A) mod shards`` (:func:`risk_shard`), whose keys carry the hash
tag ``{acct-K}`` (:func:`risk_keys`). Everything an account does passes
through its shard's input stream, in order:

- :class:`ToMarket`: an order command (place, cancel, amend, cancel_all) for
  one market, XADDed by the gateway. The risk engine takes the hold of a
  place (or of an amend's difference); what fits is forwarded to the market's
  ``sx:{SYM}:in`` with the shard and a per-shard ``risk_seq``
  (``contract.streams.forward_entry``), which the market engine applies once
  however often it arrives; what does not fit is answered on ``:out`` with a
  ``rejected`` (or ``cancel_rejected``) report, reason ``INSUFFICIENT_FUNDS``.
  The input entry id (:func:`contract.ids.stage_order_id`) is the order's id.
- :class:`Deposit` / :class:`Withdraw`: operator transfers, idempotent by
  ``ref`` per account (a second entry of the account with the same ref
  changes nothing and says so).
- :class:`Settle`: the shard's own accounts' reports of one market ``:out``
  entry, copied into ``:in`` by the risk process together with the position
  it has read that market's ``:out`` up to (one script on ``{acct-K}``, so
  each ``:out`` entry is copied exactly once). Settlement is thus replayed
  from ``:in`` like every other command: the risk engine's state is a pure
  function of its input stream.

``:out`` entries have the market engine's shape (``e`` = msgpack
``list[RiskEvent]``, ``in`` = last input id); ``:snap`` holds a
:class:`RiskSnapshot`. Amounts are integers in each asset's smallest unit.
No I/O.
"""

from __future__ import annotations

import zlib
from typing import Literal

import msgspec

from contract.commands import Message, OrderCommand, Place
from contract.events import CancelRejected, InputRejected, Report
from contract.keys import KEY_PREFIX, MarketKeys

FEE_ACCOUNT = "fees"
"""Default account credited with every fee (``[risk] fee_account``)."""


def risk_shard(account: str, shards: int) -> int:
    """The risk shard of ``account``: ``crc32(account) mod shards``. O(len)."""
    return zlib.crc32(account.encode()) % shards


def risk_tag(shard: int) -> str:
    """Hash tag (without braces) of risk shard ``shard``: ``acct-K``."""
    return f"acct-{shard}"


def risk_keys(shard: int) -> MarketKeys:
    """Every stream/lease/snapshot key of risk shard ``shard``, all tagged ``{acct-K}``.

    The same names as a market's (``sx:{acct-K}:in``, ``:out``, ``:snap``,
    ``:epoch``, ``:lease``, ``:applied``): the engine machinery serves both.
    """
    return MarketKeys.of(risk_tag(shard))


def positions_key(shard: int) -> str:
    """Hash market symbol -> the last ``sx:{SYM}:out`` id settled by shard ``shard``."""
    return f"{KEY_PREFIX}:{{{risk_tag(shard)}}}:positions"


# -- input: sx:{acct-K}:in -----------------------------------------------------------


class ToMarket(Message, tag="to_market", frozen=True):
    """An order command of ``command.account`` for market ``symbol``."""

    symbol: str
    command: OrderCommand


class Deposit(Message, tag="deposit", frozen=True):
    """Credit ``amount`` units of ``asset`` to ``account`` (once per ``ref``)."""

    account: str
    asset: str
    amount: int
    ref: str


class Withdraw(Message, tag="withdraw", frozen=True):
    """Debit ``amount`` units of ``asset`` from ``account``'s available (once per ``ref``)."""

    account: str
    asset: str
    amount: int
    ref: str


class Settle(Message, tag="settle", frozen=True):
    """The shard's accounts' events of ``symbol``'s ``:out`` entry ``out_id``, in seq order."""

    symbol: str
    out_id: str
    events: list[Report | CancelRejected]


RiskCommand = ToMarket | Deposit | Withdraw | Settle


# -- output: sx:{acct-K}:out ------------------------------------------------------------


class Balance(Message, tag="balance", frozen=True):
    """An account's new balance of one asset after a committed change."""

    seq: int
    ts: int
    account: str
    asset: str
    available: int
    held: int


class MarketAnswer(Message, tag="market_answer", frozen=True):
    """A report the risk stage gives on a market's behalf (an order it did not forward:
    ``rejected``/``cancel_rejected`` with reason ``INSUFFICIENT_FUNDS``)."""

    seq: int
    ts: int
    symbol: str
    event: Report | CancelRejected


TransferStatus = Literal["applied", "duplicate", "rejected"]


class Transfer(Message, tag="transfer", frozen=True):
    """The outcome of a deposit or withdrawal (``reason`` set when ``rejected``)."""

    seq: int
    ts: int
    direction: Literal["deposit", "withdraw"]
    account: str
    asset: str
    amount: int
    ref: str
    status: TransferStatus
    reason: str | None


RiskEvent = Balance | MarketAnswer | Transfer | InputRejected


# -- snapshot: sx:{acct-K}:snap -----------------------------------------------------------

RISK_SNAPSHOT_VERSION = 1


class AccountBalance(msgspec.Struct, array_like=True, frozen=True, gc=False):
    account: str
    asset: str
    available: int
    held: int


class HeldOrder(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """An open order's hold as the risk stage tracks it (see ``ledger.core``).

    ``asset`` is what it holds (quote for a buy, base for a sell); ``price``/``qty``/
    ``cum_qty`` are as of its last settled report; ``fee_num`` its exact fees so far
    times ``Market.fee_den``; ``quote_qty`` the budget of a market buy (else 0).
    ``pending_amends`` are the request ids of forwarded amends not yet answered, and
    ``max_price``/``max_qty`` the highest price and quantity the order may have while
    they are pending (its current ones when none is).
    """

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


class RiskSnapshot(msgspec.Struct, array_like=True, frozen=True):
    """The whole state of one risk shard at ``last_input_id``."""

    version: int
    shard: int
    last_input_id: str
    last_out_id: str
    seq: int
    risk_seq: int
    balances: list[AccountBalance]
    orders: list[HeldOrder]
    refs: list[tuple[str, str]]
    """(account, ref) of every applied transfer, sorted."""
    positions: dict[str, str]
    net_transfers: dict[str, int] = {}
    """Per asset: deposits minus withdrawals applied (what ``Ledger._check`` audits)."""


_command_encoder = msgspec.msgpack.Encoder()
_command_decoder: msgspec.msgpack.Decoder[RiskCommand] = msgspec.msgpack.Decoder(RiskCommand)
_events_decoder: msgspec.msgpack.Decoder[list[RiskEvent]] = msgspec.msgpack.Decoder(
    list[RiskEvent])
_snapshot_decoder = msgspec.msgpack.Decoder(RiskSnapshot)


def encode_risk_command(cmd: RiskCommand) -> bytes:
    """msgpack bytes of ``cmd`` for the ``c`` field of an ``sx:{acct-K}:in`` entry."""
    if type(cmd) is ToMarket and type(cmd.command) is Place:
        reason = cmd.command.invalid_field()
        if reason is not None:
            raise ValueError(reason)
    return _command_encoder.encode(cmd)


decode_risk_command = _command_decoder.decode
"""Decode one ``sx:{acct-K}:in`` command; raises ``msgspec.DecodeError``/``ValidationError``."""


def encode_risk_events(events: list[RiskEvent]) -> bytes:
    return _command_encoder.encode(events)


decode_risk_events = _events_decoder.decode


def encode_risk_snapshot(snap: RiskSnapshot) -> bytes:
    return _command_encoder.encode(snap)


def decode_risk_snapshot(data: bytes) -> RiskSnapshot:
    """Decode a risk snapshot; raises ``msgspec.DecodeError`` or ``ValueError`` if foreign."""
    snap = _snapshot_decoder.decode(data)
    if snap.version != RISK_SNAPSHOT_VERSION:
        raise ValueError(f"risk snapshot version {snap.version} is not {RISK_SNAPSHOT_VERSION}")
    return snap
