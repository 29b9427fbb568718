-- The history database, version 2: the order types of PROTOCOL.md section B. Runs
-- unchanged on SQLite and PostgreSQL; rows written before it keep the defaults (no stop,
-- no expiry, the whole order shown, never triggered).
--
-- stop_price (ticks) is a stop or take-profit's trigger, 0 for other orders; expire_time
-- (ms) a GTD order's end, 0 otherwise; display_qty (lots) an iceberg's shown slice, 0
-- when the whole order shows; trigger_ts the time of the stop's "triggered" report (NULL
-- until it triggers, and for every other order).
ALTER TABLE orders ADD COLUMN stop_price BIGINT NOT NULL DEFAULT 0;
ALTER TABLE orders ADD COLUMN expire_time BIGINT NOT NULL DEFAULT 0;
ALTER TABLE orders ADD COLUMN display_qty BIGINT NOT NULL DEFAULT 0;
ALTER TABLE orders ADD COLUMN trigger_ts BIGINT;

-- An untriggered stop is an open order: the partial index of open orders covers it.
DROP INDEX orders_open;
CREATE INDEX orders_open ON orders (account, symbol, order_number)
    WHERE status IN ('new', 'partially_filled', 'untriggered');
