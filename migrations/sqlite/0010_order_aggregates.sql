-- Aggregates of the orders kept by triggers (issue #13, the console's speed), so the overview
-- and the counts read a few rows instead of scanning the orders, whatever path writes an order
-- (the store, a bulk seed, a hand-made fix). Keep in step with
-- ../postgres/0010_order_aggregates.sql: the same tables there; there the triggers append
-- deltas (many writers, no row every writer waits on) that a compaction folds into the totals,
-- here the one writer updates the totals directly and the delta tables stay empty. Readers
-- add both.
--
-- order_counts: orders by (status, forward_state).
-- order_days: per UTC day of placement (created_at / 86400000): orders, charges, refunds.
-- order_provider_days: per UTC day of placement and provider, the orders sent there
--   (forward_state 'sent') and their upstream cost in 1e-8 of the provider's currency
--   (upstream_cost truncated to 8 decimals), in full and net of the refunded share
--   (cost - cost * refunded / charge, rounded down). Costs are never negative. Orders are never
--   deleted, so only inserts and updates are followed.
CREATE TABLE order_counts (
    status        TEXT    NOT NULL,
    forward_state TEXT    NOT NULL,
    orders        INTEGER NOT NULL,
    PRIMARY KEY (status, forward_state)
);

CREATE TABLE order_days (
    day      INTEGER NOT NULL PRIMARY KEY,
    orders   INTEGER NOT NULL,
    charged  INTEGER NOT NULL,
    refunded INTEGER NOT NULL
);

CREATE TABLE order_provider_days (
    day             INTEGER NOT NULL,
    provider        TEXT    NOT NULL,
    orders          INTEGER NOT NULL,
    cost_nanos      INTEGER NOT NULL,
    kept_cost_nanos INTEGER NOT NULL,
    PRIMARY KEY (day, provider)
);

-- An order's upstream cost in nanos: the decimal text split at its point, exactly, capped at
-- 1e15 (10 million of the provider's money) like PostgreSQL's; text that is not a number
-- counts 0.
CREATE VIEW order_costs AS
SELECT id, created_at / 86400000 AS day, provider, charge, refunded,
    CAST(MIN(MAX(
    CASE WHEN instr(upstream_cost, '.') = 0 THEN CAST(upstream_cost AS INTEGER) * 100000000
         ELSE CAST(substr(upstream_cost, 1, instr(upstream_cost, '.') - 1) AS INTEGER) * 100000000
              + CAST(substr(substr(upstream_cost, instr(upstream_cost, '.') + 1) || '00000000', 1, 8)
                     AS INTEGER)
    END, 0), 1000000000000000) AS INTEGER) AS cost_nanos
FROM orders
WHERE forward_state = 'sent' AND provider IS NOT NULL AND upstream_cost IS NOT NULL;

-- What the orders already placed add up to.
INSERT INTO order_counts (status, forward_state, orders)
SELECT status, forward_state, COUNT(*) FROM orders GROUP BY 1, 2;
INSERT INTO order_days (day, orders, charged, refunded)
SELECT created_at / 86400000, COUNT(*), SUM(charge), SUM(refunded) FROM orders GROUP BY 1;
INSERT INTO order_provider_days (day, provider, orders, cost_nanos, kept_cost_nanos)
SELECT day, provider, COUNT(*), SUM(cost_nanos),
    SUM(cost_nanos - CASE WHEN charge > 0 THEN CAST(cost_nanos * refunded / charge AS INTEGER) ELSE 0 END)
FROM order_costs GROUP BY 1, 2;

CREATE TRIGGER order_aggregates_insert AFTER INSERT ON orders
BEGIN
    INSERT INTO order_counts (status, forward_state, orders)
    VALUES (NEW.status, NEW.forward_state, 1)
    ON CONFLICT (status, forward_state) DO UPDATE SET orders = orders + 1;
    INSERT INTO order_days (day, orders, charged, refunded)
    VALUES (NEW.created_at / 86400000, 1, NEW.charge, NEW.refunded)
    ON CONFLICT (day) DO UPDATE SET orders = orders + 1,
        charged = charged + excluded.charged, refunded = refunded + excluded.refunded;
    INSERT INTO order_provider_days (day, provider, orders, cost_nanos, kept_cost_nanos)
    SELECT day, provider, 1, cost_nanos,
        cost_nanos - CASE WHEN charge > 0 THEN CAST(cost_nanos * refunded / charge AS INTEGER) ELSE 0 END
    FROM order_costs WHERE id = NEW.id
    ON CONFLICT (day, provider) DO UPDATE SET orders = orders + 1,
        cost_nanos = cost_nanos + excluded.cost_nanos,
        kept_cost_nanos = kept_cost_nanos + excluded.kept_cost_nanos;
END;

-- Only when a column the aggregates read changed: a status poll that changes nothing costs
-- nothing.
-- The old row's share comes off, the new row's goes on (the new one read back through the
-- view after the update; the old one computed from OLD the same way).
CREATE TRIGGER order_aggregates_update
AFTER UPDATE OF status, forward_state, charge, refunded, provider, upstream_cost, created_at ON orders
WHEN OLD.status IS NOT NEW.status OR OLD.forward_state IS NOT NEW.forward_state
    OR OLD.charge IS NOT NEW.charge OR OLD.refunded IS NOT NEW.refunded
    OR OLD.provider IS NOT NEW.provider OR OLD.upstream_cost IS NOT NEW.upstream_cost
    OR OLD.created_at IS NOT NEW.created_at
BEGIN
    UPDATE order_counts SET orders = orders - 1
    WHERE status = OLD.status AND forward_state = OLD.forward_state;
    INSERT INTO order_counts (status, forward_state, orders)
    VALUES (NEW.status, NEW.forward_state, 1)
    ON CONFLICT (status, forward_state) DO UPDATE SET orders = orders + 1;

    UPDATE order_days SET orders = orders - 1, charged = charged - OLD.charge,
        refunded = refunded - OLD.refunded
    WHERE day = OLD.created_at / 86400000;
    INSERT INTO order_days (day, orders, charged, refunded)
    VALUES (NEW.created_at / 86400000, 1, NEW.charge, NEW.refunded)
    ON CONFLICT (day) DO UPDATE SET orders = orders + 1,
        charged = charged + excluded.charged, refunded = refunded + excluded.refunded;

    -- The old row's cost, computed once (the view reads the new row only).
    UPDATE order_provider_days SET (orders, cost_nanos, kept_cost_nanos) = (
        SELECT order_provider_days.orders - 1, order_provider_days.cost_nanos - c,
            order_provider_days.kept_cost_nanos - c
                + CASE WHEN OLD.charge > 0 THEN CAST(c * OLD.refunded / OLD.charge AS INTEGER)
                       ELSE 0 END
        FROM (SELECT CAST(MIN(MAX(
            CASE WHEN instr(OLD.upstream_cost, '.') = 0
                 THEN CAST(OLD.upstream_cost AS INTEGER) * 100000000
                 ELSE CAST(substr(OLD.upstream_cost, 1, instr(OLD.upstream_cost, '.') - 1) AS INTEGER)
                          * 100000000
                      + CAST(substr(substr(OLD.upstream_cost, instr(OLD.upstream_cost, '.') + 1)
                                    || '00000000', 1, 8) AS INTEGER)
            END, 0), 1000000000000000) AS INTEGER) AS c))
    WHERE OLD.forward_state = 'sent' AND OLD.provider IS NOT NULL
        AND OLD.upstream_cost IS NOT NULL
        AND day = OLD.created_at / 86400000 AND provider = OLD.provider;
    INSERT INTO order_provider_days (day, provider, orders, cost_nanos, kept_cost_nanos)
    SELECT day, provider, 1, cost_nanos,
        cost_nanos - CASE WHEN charge > 0 THEN CAST(cost_nanos * refunded / charge AS INTEGER) ELSE 0 END
    FROM order_costs WHERE id = NEW.id
    ON CONFLICT (day, provider) DO UPDATE SET orders = orders + 1,
        cost_nanos = cost_nanos + excluded.cost_nanos,
        kept_cost_nanos = kept_cost_nanos + excluded.kept_cost_nanos;
END;

-- Written by PostgreSQL's triggers only; empty here (the readers add them everywhere).
CREATE TABLE order_count_deltas (
    status        TEXT    NOT NULL,
    forward_state TEXT    NOT NULL,
    orders        INTEGER NOT NULL
);
CREATE TABLE order_day_deltas (
    day      INTEGER NOT NULL,
    orders   INTEGER NOT NULL,
    charged  INTEGER NOT NULL,
    refunded INTEGER NOT NULL
);
CREATE TABLE order_provider_day_deltas (
    day             INTEGER NOT NULL,
    provider        TEXT    NOT NULL,
    orders          INTEGER NOT NULL,
    cost_nanos      INTEGER NOT NULL,
    kept_cost_nanos INTEGER NOT NULL
);

-- The console's order search, newest first, by each filter it offers.
CREATE INDEX orders_status ON orders (status, id);
CREATE INDEX orders_provider ON orders (provider, id) WHERE provider IS NOT NULL;
CREATE INDEX orders_link ON orders (link, id) WHERE link IS NOT NULL;
CREATE INDEX orders_forward_state ON orders (forward_state, id);
CREATE INDEX orders_service ON orders (service_id, id);
