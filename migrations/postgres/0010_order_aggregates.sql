-- Aggregates of the orders kept by a trigger (issue #13, the console's speed), so the overview
-- and the counts read a few rows instead of scanning the orders, whatever path writes an order
-- (the store, a bulk seed, a hand-made fix). Keep in step with
-- ../sqlite/0010_order_aggregates.sql: the same tables there. Here many writers run at once,
-- so the trigger only appends deltas (no row that every placement would wait on, no lock order
-- to deadlock on); the store's compaction (`Store::compact_aggregates`, every reconciler
-- round) folds them into the totals in one statement per table. Readers add both.
--
-- order_counts: orders by (status, forward_state).
-- order_days: per UTC day of placement (created_at / 86400000): orders, charges, refunds.
-- order_provider_days: per UTC day of placement and provider, the orders sent there
--   (forward_state 'sent') and their upstream cost in 1e-8 of the provider's currency
--   (upstream_cost truncated to 8 decimals), in full and net of the refunded share
--   (cost - cost * refunded / charge, rounded down). Costs are never negative. Orders are never
--   deleted, so only inserts and updates are followed.

-- No order changes between the fill below and the trigger taking over (a rolling deploy's
-- old instances wait for this migration's transaction).
LOCK TABLE orders IN SHARE ROW EXCLUSIVE MODE;

CREATE TABLE order_counts (
    status        TEXT   NOT NULL,
    forward_state TEXT   NOT NULL,
    orders        BIGINT NOT NULL,
    PRIMARY KEY (status, forward_state)
);

CREATE TABLE order_days (
    day      BIGINT NOT NULL PRIMARY KEY,
    orders   BIGINT NOT NULL,
    charged  BIGINT NOT NULL,
    refunded BIGINT NOT NULL
);

CREATE TABLE order_provider_days (
    day             BIGINT NOT NULL,
    provider        TEXT   NOT NULL,
    orders          BIGINT NOT NULL,
    cost_nanos      BIGINT NOT NULL,
    kept_cost_nanos BIGINT NOT NULL,
    PRIMARY KEY (day, provider)
);

CREATE TABLE order_count_deltas (
    status        TEXT   NOT NULL,
    forward_state TEXT   NOT NULL,
    orders        BIGINT NOT NULL
);

CREATE TABLE order_day_deltas (
    day      BIGINT NOT NULL,
    orders   BIGINT NOT NULL,
    charged  BIGINT NOT NULL,
    refunded BIGINT NOT NULL
);

CREATE TABLE order_provider_day_deltas (
    day             BIGINT NOT NULL,
    provider        TEXT   NOT NULL,
    orders          BIGINT NOT NULL,
    cost_nanos      BIGINT NOT NULL,
    kept_cost_nanos BIGINT NOT NULL
);

-- Readers scan the delta tables whole: vacuum them after every thousand dead rows, whatever
-- their size (the compaction deletes what it folds).
ALTER TABLE order_count_deltas SET (autovacuum_vacuum_threshold = 1000,
    autovacuum_vacuum_scale_factor = 0);
ALTER TABLE order_day_deltas SET (autovacuum_vacuum_threshold = 1000,
    autovacuum_vacuum_scale_factor = 0);
ALTER TABLE order_provider_day_deltas SET (autovacuum_vacuum_threshold = 1000,
    autovacuum_vacuum_scale_factor = 0);

-- An order's cost in nanos, capped at 1e15 (10 million of the provider's money) so no sum can
-- overflow; text that is not a number counts 0. Never raises: the aggregates must not fail
-- the write of an order.
CREATE FUNCTION order_cost_nanos(cost TEXT) RETURNS BIGINT
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    RETURN LEAST(GREATEST(trunc(cost::numeric * 100000000), 0), 1000000000000000)::bigint;
EXCEPTION WHEN others THEN
    RETURN 0;
END
$$;

-- Net of the refunded share, rounded down exactly (div: integer division of numerics).
CREATE FUNCTION order_kept_cost_nanos(cost TEXT, charge BIGINT, refunded BIGINT) RETURNS BIGINT
LANGUAGE sql IMMUTABLE AS $$
    SELECT order_cost_nanos(cost) - CASE WHEN charge > 0
        THEN div(order_cost_nanos(cost)::numeric * refunded, charge)::bigint ELSE 0 END
$$;

-- What the orders already placed add up to.
INSERT INTO order_counts (status, forward_state, orders)
SELECT status, forward_state, COUNT(*) FROM orders GROUP BY 1, 2;
INSERT INTO order_days (day, orders, charged, refunded)
SELECT created_at / 86400000, COUNT(*), SUM(charge), SUM(refunded) FROM orders GROUP BY 1;
INSERT INTO order_provider_days (day, provider, orders, cost_nanos, kept_cost_nanos)
SELECT created_at / 86400000, provider, COUNT(*), SUM(order_cost_nanos(upstream_cost)),
    SUM(order_kept_cost_nanos(upstream_cost, charge, refunded))
FROM orders
WHERE forward_state = 'sent' AND provider IS NOT NULL AND upstream_cost IS NOT NULL
GROUP BY 1, 2;

-- The old row's share comes off, the new row's goes on; a table is only touched when a column
-- it sums changed.
CREATE FUNCTION order_aggregates() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    was_sent boolean := TG_OP = 'UPDATE' AND OLD.forward_state = 'sent'
        AND OLD.provider IS NOT NULL AND OLD.upstream_cost IS NOT NULL;
    is_sent boolean := NEW.forward_state = 'sent' AND NEW.provider IS NOT NULL
        AND NEW.upstream_cost IS NOT NULL;
BEGIN
    IF TG_OP = 'INSERT' OR OLD.status IS DISTINCT FROM NEW.status
        OR OLD.forward_state IS DISTINCT FROM NEW.forward_state THEN
        IF TG_OP = 'UPDATE' THEN
            INSERT INTO order_count_deltas VALUES (OLD.status, OLD.forward_state, -1);
        END IF;
        INSERT INTO order_count_deltas VALUES (NEW.status, NEW.forward_state, 1);
    END IF;
    IF TG_OP = 'INSERT' OR OLD.charge IS DISTINCT FROM NEW.charge
        OR OLD.refunded IS DISTINCT FROM NEW.refunded
        OR OLD.created_at IS DISTINCT FROM NEW.created_at THEN
        IF TG_OP = 'UPDATE' THEN
            INSERT INTO order_day_deltas
            VALUES (OLD.created_at / 86400000, -1, -OLD.charge, -OLD.refunded);
        END IF;
        INSERT INTO order_day_deltas
        VALUES (NEW.created_at / 86400000, 1, NEW.charge, NEW.refunded);
    END IF;
    IF was_sent IS DISTINCT FROM is_sent OR (is_sent AND (
        OLD.provider IS DISTINCT FROM NEW.provider
        OR OLD.upstream_cost IS DISTINCT FROM NEW.upstream_cost
        OR OLD.charge IS DISTINCT FROM NEW.charge OR OLD.refunded IS DISTINCT FROM NEW.refunded
        OR OLD.created_at IS DISTINCT FROM NEW.created_at)) THEN
        IF was_sent THEN
            INSERT INTO order_provider_day_deltas
            VALUES (OLD.created_at / 86400000, OLD.provider, -1,
                -order_cost_nanos(OLD.upstream_cost),
                -order_kept_cost_nanos(OLD.upstream_cost, OLD.charge, OLD.refunded));
        END IF;
        IF is_sent THEN
            INSERT INTO order_provider_day_deltas
            VALUES (NEW.created_at / 86400000, NEW.provider, 1,
                order_cost_nanos(NEW.upstream_cost),
                order_kept_cost_nanos(NEW.upstream_cost, NEW.charge, NEW.refunded));
        END IF;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER order_aggregates
AFTER INSERT OR UPDATE OF status, forward_state, charge, refunded, provider, upstream_cost,
    created_at ON orders
FOR EACH ROW EXECUTE FUNCTION order_aggregates();

-- The console's order search, newest first, by each filter it offers.
CREATE INDEX orders_status ON orders (status, id);
CREATE INDEX orders_provider ON orders (provider, id) WHERE provider IS NOT NULL;
CREATE INDEX orders_link ON orders (link, id) WHERE link IS NOT NULL;
CREATE INDEX orders_forward_state ON orders (forward_state, id);
CREATE INDEX orders_service ON orders (service_id, id);
