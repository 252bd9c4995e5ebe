-- Provider scorecards (issue #15): per route (provider, upstream service) and UTC day, kept by
-- triggers as orders, forwarding attempts and refills change. Keep in step with
-- ../sqlite/0013_scorecards.sql, whose header defines every column. Here many writers run at
-- once, so the triggers only append deltas (as 0010's); the store's compaction folds them into
-- the totals. Readers add both.
--
-- Each delta is a row's facts, computed from the row alone (the functions below): an update
-- takes the old row's facts off and puts the new row's on, so the totals always equal the sum
-- over the current rows, whichever path wrote them. A refill's facts are keyed by its order's
-- route and cohort day, so an order's change moves its refills with it.

LOCK TABLE orders IN SHARE ROW EXCLUSIVE MODE;
LOCK TABLE forward_attempts IN SHARE ROW EXCLUSIVE MODE;
LOCK TABLE refills IN SHARE ROW EXCLUSIVE MODE;

ALTER TABLE orders ADD COLUMN started_at BIGINT;
ALTER TABLE orders ADD COLUMN finished_at BIGINT;
-- Why the attempt went to its route: the routing policy's explanation.
ALTER TABLE forward_attempts ADD COLUMN why TEXT;
-- A route's last attempts (the quality policy's recent window).
CREATE INDEX forward_attempts_route ON forward_attempts (provider, upstream_service, id);

-- Orders from before: their first start and their end, from the timeline where it has them,
-- else from the last change for orders already in such a status.
UPDATE orders SET
    started_at = COALESCE((SELECT MIN(at) FROM order_events e WHERE e.order_id = orders.id
        AND e.status IN ('In progress', 'Processing', 'Completed', 'Partial', 'Active', 'Expired')),
        CASE WHEN status IN ('In progress', 'Processing', 'Completed', 'Partial', 'Active', 'Expired')
             THEN updated_at END),
    finished_at = COALESCE((SELECT MIN(at) FROM order_events e WHERE e.order_id = orders.id
        AND e.status IN ('Completed', 'Partial', 'Canceled', 'Refunded', 'Expired')),
        CASE WHEN status IN ('Completed', 'Partial', 'Canceled', 'Refunded', 'Expired')
             THEN updated_at END)
WHERE status <> 'Pending';

CREATE TABLE route_days (
    day              BIGINT NOT NULL,
    provider         TEXT   NOT NULL,
    upstream_service TEXT   NOT NULL,
    attempts         BIGINT NOT NULL DEFAULT 0,
    accepted         BIGINT NOT NULL DEFAULT 0,
    refused          BIGINT NOT NULL DEFAULT 0,
    not_sent         BIGINT NOT NULL DEFAULT 0,
    ambiguous        BIGINT NOT NULL DEFAULT 0,
    call_ms          BIGINT NOT NULL DEFAULT 0,
    orders           BIGINT NOT NULL DEFAULT 0,
    started          BIGINT NOT NULL DEFAULT 0,
    completed        BIGINT NOT NULL DEFAULT 0,
    partial          BIGINT NOT NULL DEFAULT 0,
    canceled         BIGINT NOT NULL DEFAULT 0,
    undelivered_ppm  BIGINT NOT NULL DEFAULT 0,
    cost_nanos       BIGINT NOT NULL DEFAULT 0,
    kept_cost_nanos  BIGINT NOT NULL DEFAULT 0,
    charged          BIGINT NOT NULL DEFAULT 0,
    refunded         BIGINT NOT NULL DEFAULT 0,
    refills          BIGINT NOT NULL DEFAULT 0,
    refills_done     BIGINT NOT NULL DEFAULT 0,
    refills_failed   BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (day, provider, upstream_service)
);

CREATE TABLE route_day_times (
    day              BIGINT NOT NULL,
    provider         TEXT   NOT NULL,
    upstream_service TEXT   NOT NULL,
    kind             TEXT   NOT NULL,
    bucket           BIGINT NOT NULL,
    n                BIGINT NOT NULL,
    PRIMARY KEY (day, provider, upstream_service, kind, bucket)
);

CREATE TABLE route_day_deltas (
    day              BIGINT NOT NULL,
    provider         TEXT   NOT NULL,
    upstream_service TEXT   NOT NULL,
    attempts         BIGINT NOT NULL DEFAULT 0,
    accepted         BIGINT NOT NULL DEFAULT 0,
    refused          BIGINT NOT NULL DEFAULT 0,
    not_sent         BIGINT NOT NULL DEFAULT 0,
    ambiguous        BIGINT NOT NULL DEFAULT 0,
    call_ms          BIGINT NOT NULL DEFAULT 0,
    orders           BIGINT NOT NULL DEFAULT 0,
    started          BIGINT NOT NULL DEFAULT 0,
    completed        BIGINT NOT NULL DEFAULT 0,
    partial          BIGINT NOT NULL DEFAULT 0,
    canceled         BIGINT NOT NULL DEFAULT 0,
    undelivered_ppm  BIGINT NOT NULL DEFAULT 0,
    cost_nanos       BIGINT NOT NULL DEFAULT 0,
    kept_cost_nanos  BIGINT NOT NULL DEFAULT 0,
    charged          BIGINT NOT NULL DEFAULT 0,
    refunded         BIGINT NOT NULL DEFAULT 0,
    refills          BIGINT NOT NULL DEFAULT 0,
    refills_done     BIGINT NOT NULL DEFAULT 0,
    refills_failed   BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE route_day_time_deltas (
    day              BIGINT NOT NULL,
    provider         TEXT   NOT NULL,
    upstream_service TEXT   NOT NULL,
    kind             TEXT   NOT NULL,
    bucket           BIGINT NOT NULL,
    n                BIGINT NOT NULL
);

ALTER TABLE route_day_deltas SET (autovacuum_vacuum_threshold = 1000,
    autovacuum_vacuum_scale_factor = 0);
ALTER TABLE route_day_time_deltas SET (autovacuum_vacuum_threshold = 1000,
    autovacuum_vacuum_scale_factor = 0);

-- A duration's bucket: truncated to two significant digits (SQLite's ladder, the same figures).
CREATE FUNCTION route_time_bucket(ms BIGINT) RETURNS BIGINT
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    p BIGINT := 1;
BEGIN
    IF ms IS NULL THEN
        RETURN NULL;
    END IF;
    ms := GREATEST(ms, 0);
    WHILE ms / p >= 100 AND p < 1000000000 LOOP
        p := p * 10;
    END LOOP;
    RETURN ms / p * p;
END
$$;

-- A refill's facts (keyed by its order's route and cohort), times s (1 or -1).
CREATE FUNCTION route_refill_delta(r refills, o orders, s INT) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    day BIGINT;
BEGIN
    IF r.id IS NULL OR o.id IS NULL OR o.forward_state <> 'sent' OR o.provider IS NULL
        OR o.upstream_service IS NULL OR o.forwarded_at IS NULL THEN
        RETURN;
    END IF;
    day := o.forwarded_at / 86400000;
    INSERT INTO route_day_deltas (day, provider, upstream_service, refills, refills_done,
        refills_failed)
    VALUES (day, o.provider, o.upstream_service, s,
        CASE WHEN r.status = 'Completed' THEN s ELSE 0 END,
        CASE WHEN r.status IN ('Rejected', 'Canceled') OR r.forward_state = 'rejected'
             THEN s ELSE 0 END);
    IF r.status = 'Completed' THEN
        INSERT INTO route_day_time_deltas
        VALUES (day, o.provider, o.upstream_service, 'refill',
            route_time_bucket(r.updated_at - r.created_at), s);
    END IF;
END
$$;

-- An order's facts, its refills' with them, times s (1 or -1).
CREATE FUNCTION route_order_delta(o orders, s INT) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    day BIGINT;
    cost BIGINT;
    r refills;
BEGIN
    IF o.forward_state <> 'sent' OR o.provider IS NULL OR o.upstream_service IS NULL
        OR o.forwarded_at IS NULL THEN
        RETURN;
    END IF;
    day := o.forwarded_at / 86400000;
    cost := CASE WHEN o.upstream_cost IS NULL THEN 0 ELSE order_cost_nanos(o.upstream_cost) END;
    INSERT INTO route_day_deltas (day, provider, upstream_service, orders, started, completed,
        partial, canceled, undelivered_ppm, cost_nanos, kept_cost_nanos, charged, refunded)
    VALUES (day, o.provider, o.upstream_service, s,
        CASE WHEN o.started_at IS NOT NULL THEN s ELSE 0 END,
        CASE WHEN o.status IN ('Completed', 'Expired') THEN s ELSE 0 END,
        CASE WHEN o.status = 'Partial' THEN s ELSE 0 END,
        CASE WHEN o.status IN ('Canceled', 'Refunded') THEN s ELSE 0 END,
        CASE WHEN o.status = 'Partial' AND o.charge > 0
             THEN s * div(o.refunded::numeric * 1000000, o.charge)::bigint ELSE 0 END,
        s * cost,
        s * (cost - CASE WHEN o.charge > 0
            THEN div(cost::numeric * o.refunded, o.charge)::bigint ELSE 0 END),
        s * o.charge, s * o.refunded);
    IF o.started_at IS NOT NULL THEN
        INSERT INTO route_day_time_deltas
        VALUES (day, o.provider, o.upstream_service, 'start',
            route_time_bucket(o.started_at - o.forwarded_at), s);
    END IF;
    IF o.finished_at IS NOT NULL AND o.status IN ('Completed', 'Expired') THEN
        INSERT INTO route_day_time_deltas
        VALUES (day, o.provider, o.upstream_service, 'complete',
            route_time_bucket(o.finished_at - o.forwarded_at), s);
    END IF;
    FOR r IN SELECT * FROM refills WHERE order_id = o.id LOOP
        PERFORM route_refill_delta(r, o, s);
    END LOOP;
END
$$;

-- A finished attempt's facts, times s (1 or -1).
CREATE FUNCTION route_attempt_delta(a forward_attempts, s INT) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    ms BIGINT;
BEGIN
    IF a.outcome = 'pending' THEN
        RETURN;
    END IF;
    ms := GREATEST(COALESCE(a.finished_at, a.started_at) - a.started_at, 0);
    INSERT INTO route_day_deltas (day, provider, upstream_service, attempts, accepted, refused,
        not_sent, ambiguous, call_ms)
    VALUES (a.started_at / 86400000, a.provider, a.upstream_service, s,
        CASE WHEN a.outcome = 'sent' THEN s ELSE 0 END,
        CASE WHEN a.outcome = 'rejected' THEN s ELSE 0 END,
        CASE WHEN a.outcome = 'not_sent' THEN s ELSE 0 END,
        CASE WHEN a.outcome = 'ambiguous' THEN s ELSE 0 END,
        s * ms);
    INSERT INTO route_day_time_deltas
    VALUES (a.started_at / 86400000, a.provider, a.upstream_service, 'call',
        route_time_bucket(ms), s);
END
$$;

-- What the rows already there add up to (folded by the first compaction).
SELECT route_order_delta(o, 1) FROM orders o WHERE forward_state = 'sent';
SELECT route_attempt_delta(a, 1) FROM forward_attempts a WHERE outcome <> 'pending';

CREATE FUNCTION route_orders_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        PERFORM route_order_delta(OLD, -1);
    END IF;
    PERFORM route_order_delta(NEW, 1);
    RETURN NULL;
END
$$;

CREATE TRIGGER route_orders_insert AFTER INSERT ON orders
FOR EACH ROW WHEN (NEW.forward_state = 'sent')
EXECUTE FUNCTION route_orders_changed();

-- Only the columns the facts read wake the trigger: a poll that changes nothing costs nothing.
CREATE TRIGGER route_orders_update
AFTER UPDATE OF status, forward_state, provider, upstream_service, upstream_cost, forwarded_at,
    started_at, finished_at, charge, refunded ON orders
FOR EACH ROW
WHEN (OLD.status IS DISTINCT FROM NEW.status OR OLD.forward_state IS DISTINCT FROM NEW.forward_state
    OR OLD.provider IS DISTINCT FROM NEW.provider
    OR OLD.upstream_service IS DISTINCT FROM NEW.upstream_service
    OR OLD.upstream_cost IS DISTINCT FROM NEW.upstream_cost
    OR OLD.forwarded_at IS DISTINCT FROM NEW.forwarded_at
    OR OLD.started_at IS DISTINCT FROM NEW.started_at
    OR OLD.finished_at IS DISTINCT FROM NEW.finished_at
    OR OLD.charge IS DISTINCT FROM NEW.charge OR OLD.refunded IS DISTINCT FROM NEW.refunded)
EXECUTE FUNCTION route_orders_changed();

CREATE FUNCTION route_attempts_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM route_attempt_delta(OLD, -1);
    PERFORM route_attempt_delta(NEW, 1);
    RETURN NULL;
END
$$;

CREATE TRIGGER route_attempts_update
AFTER UPDATE OF outcome, started_at, finished_at, provider, upstream_service ON forward_attempts
FOR EACH ROW
WHEN (OLD.outcome IS DISTINCT FROM NEW.outcome OR OLD.started_at IS DISTINCT FROM NEW.started_at
    OR OLD.finished_at IS DISTINCT FROM NEW.finished_at OR OLD.provider IS DISTINCT FROM NEW.provider
    OR OLD.upstream_service IS DISTINCT FROM NEW.upstream_service)
EXECUTE FUNCTION route_attempts_changed();

CREATE FUNCTION route_refills_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    o orders;
BEGIN
    SELECT * INTO o FROM orders WHERE id = NEW.order_id;
    IF TG_OP = 'UPDATE' THEN
        IF OLD.order_id IS DISTINCT FROM NEW.order_id THEN
            DECLARE
                old_order orders;
            BEGIN
                SELECT * INTO old_order FROM orders WHERE id = OLD.order_id;
                PERFORM route_refill_delta(OLD, old_order, -1);
            END;
        ELSE
            PERFORM route_refill_delta(OLD, o, -1);
        END IF;
    END IF;
    PERFORM route_refill_delta(NEW, o, 1);
    RETURN NULL;
END
$$;

CREATE TRIGGER route_refills_insert AFTER INSERT ON refills
FOR EACH ROW EXECUTE FUNCTION route_refills_changed();

CREATE TRIGGER route_refills_update
AFTER UPDATE OF status, forward_state, created_at, updated_at, order_id ON refills
FOR EACH ROW
WHEN (OLD.status IS DISTINCT FROM NEW.status OR OLD.forward_state IS DISTINCT FROM NEW.forward_state
    OR OLD.order_id IS DISTINCT FROM NEW.order_id OR OLD.created_at IS DISTINCT FROM NEW.created_at
    OR (NEW.status = 'Completed' AND OLD.updated_at IS DISTINCT FROM NEW.updated_at))
EXECUTE FUNCTION route_refills_changed();
