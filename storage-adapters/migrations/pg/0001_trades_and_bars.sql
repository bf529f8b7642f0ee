-- tickcore's PostgreSQL schema, version 1: trades and closed bars, partitioned by session date.
-- Prices are numeric with four decimals (ITCH Price(4)); feed times are nanoseconds since
-- midnight of the session date. Natural keys make every write idempotent.
CREATE SCHEMA IF NOT EXISTS tickcore;

CREATE TABLE IF NOT EXISTS tickcore.trades (
    session_date date           NOT NULL,
    match_number bigint         NOT NULL,
    symbol       text           NOT NULL,
    ts_ns        bigint         NOT NULL,
    price        numeric(18, 4) NOT NULL,
    shares       bigint         NOT NULL,
    side         text           NOT NULL,  -- B or S (the resting order's side), blank for a cross
    printable    boolean        NOT NULL,
    kind         text           NOT NULL,  -- E, C, P or Q: the message that printed it
    PRIMARY KEY (session_date, match_number)
) PARTITION BY LIST (session_date);

CREATE TABLE IF NOT EXISTS tickcore.bars (
    session_date date           NOT NULL,
    symbol       text           NOT NULL,
    interval_s   integer        NOT NULL,  -- 1 or 60
    start_ns     bigint         NOT NULL,
    open         numeric(18, 4) NOT NULL,
    high         numeric(18, 4) NOT NULL,
    low          numeric(18, 4) NOT NULL,
    close        numeric(18, 4) NOT NULL,
    volume       bigint         NOT NULL,
    vwap         numeric(18, 4) NOT NULL,
    trades       integer        NOT NULL,
    PRIMARY KEY (session_date, symbol, interval_s, start_ns)
) PARTITION BY LIST (session_date);
