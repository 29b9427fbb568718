-- The history database, version 1. Runs unchanged on SQLite and PostgreSQL.
--
-- Integers are the engine's units: prices in ticks, quantities in lots, amounts and
-- fees in the asset's smallest unit. Values that can exceed 2**63 (notionals
-- sum(ticks * lots), quote volumes, amounts of an asset with up to 18 decimals) are
-- TEXT holding the decimal integer: exact on both engines (SQLite's NUMERIC would turn
-- a large one into a float). No query filters or sorts on them.
-- "stream" is a market symbol ("BTC-USD") or a risk shard's tag ("acct-0").

-- Per :out stream: the last entry id and event seq written, updated in the same
-- transaction as the rows (the exactly-once guarantee of streamex history).
CREATE TABLE stream_positions (
    stream TEXT NOT NULL PRIMARY KEY,
    last_id TEXT NOT NULL,
    last_seq BIGINT NOT NULL
);

-- Each order's latest state, upserted from every execution report (the market's, and the
-- risk stage's answers for orders it never forwarded). created_ts is the time of the
-- order id (when the order was received); order_number is contract.ids.order_number of
-- order_id (REST's integer orderId; NULL for an id without one): it orders like
-- (created_ts, id), so time ranges of an account's orders are order_number ranges.
CREATE TABLE orders (
    symbol TEXT NOT NULL,
    order_id TEXT NOT NULL,
    order_number BIGINT,
    account TEXT NOT NULL,
    client_order_id TEXT,
    side TEXT NOT NULL,
    type TEXT NOT NULL,
    tif TEXT NOT NULL,
    price BIGINT NOT NULL,
    qty BIGINT NOT NULL,
    quote_qty TEXT,
    status TEXT NOT NULL,
    cum_qty BIGINT NOT NULL,
    cum_notional TEXT NOT NULL,
    fee TEXT NOT NULL,
    reason TEXT,
    created_ts BIGINT NOT NULL,
    working_ts BIGINT,
    updated_ts BIGINT NOT NULL,
    last_seq BIGINT NOT NULL,
    PRIMARY KEY (symbol, order_id)
);
CREATE INDEX orders_by_number ON orders (account, symbol, order_number);
CREATE INDEX orders_by_client_id ON orders (account, symbol, client_order_id, order_number)
    WHERE client_order_id IS NOT NULL;
CREATE INDEX orders_open ON orders (account, symbol, order_number)
    WHERE status IN ('new', 'partially_filled');

-- Every execution report and cancel reject, keyed by the stream that published it and
-- its seq there (the risk stage's answers live in their shard's key space).
CREATE TABLE executions (
    stream TEXT NOT NULL,
    seq BIGINT NOT NULL,
    symbol TEXT NOT NULL,
    ts BIGINT NOT NULL,
    account TEXT NOT NULL,
    order_id TEXT,
    client_order_id TEXT,
    exec_type TEXT NOT NULL,
    status TEXT,
    side TEXT,
    price BIGINT NOT NULL,
    qty BIGINT NOT NULL,
    last_qty BIGINT NOT NULL,
    last_price BIGINT NOT NULL,
    cum_qty BIGINT NOT NULL,
    leaves_qty BIGINT NOT NULL,
    cum_notional TEXT NOT NULL,
    liquidity TEXT,
    trade_id BIGINT,
    fee TEXT NOT NULL,
    reason TEXT,
    PRIMARY KEY (stream, seq)
);
CREATE INDEX executions_my_trades ON executions (account, symbol, trade_id, seq)
    WHERE trade_id IS NOT NULL;

-- Public trades; within a market ts never decreases as trade_id grows.
CREATE TABLE trades (
    symbol TEXT NOT NULL,
    trade_id BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    ts BIGINT NOT NULL,
    price BIGINT NOT NULL,
    qty BIGINT NOT NULL,
    taker_side TEXT NOT NULL,
    maker_order_id TEXT NOT NULL,
    taker_order_id TEXT NOT NULL,
    PRIMARY KEY (symbol, trade_id)
);
CREATE INDEX trades_by_time ON trades (symbol, ts, trade_id);

-- candles.core over each market's trades, for every interval of candles.core.INTERVALS;
-- closed is 1 once a trade of a later interval arrived.
CREATE TABLE candles (
    symbol TEXT NOT NULL,
    interval TEXT NOT NULL,
    open_time BIGINT NOT NULL,
    close_time BIGINT NOT NULL,
    open BIGINT NOT NULL,
    high BIGINT NOT NULL,
    low BIGINT NOT NULL,
    close BIGINT NOT NULL,
    volume BIGINT NOT NULL,
    quote_volume TEXT NOT NULL,
    trades BIGINT NOT NULL,
    closed INTEGER NOT NULL,
    PRIMARY KEY (symbol, interval, open_time)
);

-- The latest balance of each account and asset in each risk shard, and every change (risk
-- :out Balance). An account lives in one shard, except the fee account: every shard credits
-- its own row.
CREATE TABLE balances (
    shard BIGINT NOT NULL,
    account TEXT NOT NULL,
    asset TEXT NOT NULL,
    available TEXT NOT NULL,
    held TEXT NOT NULL,
    seq BIGINT NOT NULL,
    ts BIGINT NOT NULL,
    PRIMARY KEY (account, asset, shard)
);
CREATE TABLE balance_changes (
    shard BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    account TEXT NOT NULL,
    asset TEXT NOT NULL,
    available TEXT NOT NULL,
    held TEXT NOT NULL,
    ts BIGINT NOT NULL,
    PRIMARY KEY (shard, seq)
);

-- Deposits and withdrawals as the risk stage answered them (risk :out Transfer).
CREATE TABLE transfers (
    shard BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    ts BIGINT NOT NULL,
    direction TEXT NOT NULL,
    account TEXT NOT NULL,
    asset TEXT NOT NULL,
    amount TEXT NOT NULL,
    ref TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT,
    PRIMARY KEY (shard, seq)
);

-- What retention trimmed from a stream before history read it: events
-- lost_from_seq..lost_to_seq, between entry after_id (the last read) and first_id.
CREATE TABLE gaps (
    stream TEXT NOT NULL,
    after_id TEXT NOT NULL,
    first_id TEXT NOT NULL,
    lost_from_seq BIGINT NOT NULL,
    lost_to_seq BIGINT NOT NULL,
    noted_ts BIGINT NOT NULL,
    PRIMARY KEY (stream, lost_from_seq)
);
