-- Provider scorecards (issue #15): per route (provider, upstream service) and UTC day, kept by
-- triggers as orders, forwarding attempts and refills change, so a scorecard reads a few rows
-- per day and route, never the orders. Keep in step with ../postgres/0013_scorecards.sql: the
-- same tables there, where the triggers append deltas that the compaction folds (as 0010's).
--
-- Each table holds, per key, the sum over rows of a "fact" computed from the row alone (the
-- views below). A trigger takes the old row's facts off before an update and puts the new
-- row's on after it, so the totals always equal the sum over the current rows, whichever path
-- wrote them, and whatever the order of the updates.
--
-- route_days, by the day of the attempt (forward_attempts.started_at):
--   attempts, accepted (outcome 'sent'), refused ('rejected'), not_sent, ambiguous, and
--   call_ms: the attempts' summed duration (finished_at - started_at, the upstream add call);
-- by the day the order was accepted upstream (orders.forwarded_at, its cohort):
--   orders (sent), started (a start seen: started_at), completed ('Completed', 'Expired'),
--   partial, canceled ('Canceled', 'Refunded'), undelivered_ppm (Partial orders' refunded share
--   of their charge in millionths, rounded down), cost_nanos and kept_cost_nanos (as 0010's),
--   charged and refunded (the customer's side, in minor units),
--   refills (requested), refills_done (Completed), refills_failed (Rejected, Canceled, or
--   refused upstream).
-- route_day_times: how many durations fell in each bucket, per kind: 'start' (forwarded_at to
--   started_at), 'complete' (forwarded_at to finished_at, Completed orders), 'refill' (a
--   Completed refill's created_at to updated_at), 'call' (an attempt's duration); in
--   milliseconds truncated to two significant digits (1234 ms -> 1200 ms), so medians and p90s
--   are exact figures of the truncated durations.

ALTER TABLE orders ADD COLUMN started_at INTEGER;
ALTER TABLE orders ADD COLUMN finished_at INTEGER;
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
    day              INTEGER NOT NULL,
    provider         TEXT    NOT NULL,
    upstream_service TEXT    NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    accepted         INTEGER NOT NULL DEFAULT 0,
    refused          INTEGER NOT NULL DEFAULT 0,
    not_sent         INTEGER NOT NULL DEFAULT 0,
    ambiguous        INTEGER NOT NULL DEFAULT 0,
    call_ms          INTEGER NOT NULL DEFAULT 0,
    orders           INTEGER NOT NULL DEFAULT 0,
    started          INTEGER NOT NULL DEFAULT 0,
    completed        INTEGER NOT NULL DEFAULT 0,
    partial          INTEGER NOT NULL DEFAULT 0,
    canceled         INTEGER NOT NULL DEFAULT 0,
    undelivered_ppm  INTEGER NOT NULL DEFAULT 0,
    cost_nanos       INTEGER NOT NULL DEFAULT 0,
    kept_cost_nanos  INTEGER NOT NULL DEFAULT 0,
    charged          INTEGER NOT NULL DEFAULT 0,
    refunded         INTEGER NOT NULL DEFAULT 0,
    refills          INTEGER NOT NULL DEFAULT 0,
    refills_done     INTEGER NOT NULL DEFAULT 0,
    refills_failed   INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (day, provider, upstream_service)
);

CREATE TABLE route_day_times (
    day              INTEGER NOT NULL,
    provider         TEXT    NOT NULL,
    upstream_service TEXT    NOT NULL,
    kind             TEXT    NOT NULL,
    bucket           INTEGER NOT NULL,
    n                INTEGER NOT NULL,
    PRIMARY KEY (day, provider, upstream_service, kind, bucket)
);

-- Written by PostgreSQL's triggers only; empty here (the readers add them everywhere).
CREATE TABLE route_day_deltas (
    day              INTEGER NOT NULL,
    provider         TEXT    NOT NULL,
    upstream_service TEXT    NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    accepted         INTEGER NOT NULL DEFAULT 0,
    refused          INTEGER NOT NULL DEFAULT 0,
    not_sent         INTEGER NOT NULL DEFAULT 0,
    ambiguous        INTEGER NOT NULL DEFAULT 0,
    call_ms          INTEGER NOT NULL DEFAULT 0,
    orders           INTEGER NOT NULL DEFAULT 0,
    started          INTEGER NOT NULL DEFAULT 0,
    completed        INTEGER NOT NULL DEFAULT 0,
    partial          INTEGER NOT NULL DEFAULT 0,
    canceled         INTEGER NOT NULL DEFAULT 0,
    undelivered_ppm  INTEGER NOT NULL DEFAULT 0,
    cost_nanos       INTEGER NOT NULL DEFAULT 0,
    kept_cost_nanos  INTEGER NOT NULL DEFAULT 0,
    charged          INTEGER NOT NULL DEFAULT 0,
    refunded         INTEGER NOT NULL DEFAULT 0,
    refills          INTEGER NOT NULL DEFAULT 0,
    refills_done     INTEGER NOT NULL DEFAULT 0,
    refills_failed   INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE route_day_time_deltas (
    day              INTEGER NOT NULL,
    provider         TEXT    NOT NULL,
    upstream_service TEXT    NOT NULL,
    kind             TEXT    NOT NULL,
    bucket           INTEGER NOT NULL,
    n                INTEGER NOT NULL
);

-- The facts of one order: a row for an order accepted upstream, none otherwise. Durations are
-- put in their bucket: truncated to two significant digits.
CREATE VIEW route_order_facts AS
SELECT *, CASE WHEN start_ms < 100 THEN start_ms
         WHEN start_ms < 1000 THEN start_ms / 10 * 10
         WHEN start_ms < 10000 THEN start_ms / 100 * 100
         WHEN start_ms < 100000 THEN start_ms / 1000 * 1000
         WHEN start_ms < 1000000 THEN start_ms / 10000 * 10000
         WHEN start_ms < 10000000 THEN start_ms / 100000 * 100000
         WHEN start_ms < 100000000 THEN start_ms / 1000000 * 1000000
         WHEN start_ms < 1000000000 THEN start_ms / 10000000 * 10000000
         WHEN start_ms < 10000000000 THEN start_ms / 100000000 * 100000000
         ELSE start_ms / 1000000000 * 1000000000 END AS start_bucket,
    CASE WHEN complete_ms < 100 THEN complete_ms
         WHEN complete_ms < 1000 THEN complete_ms / 10 * 10
         WHEN complete_ms < 10000 THEN complete_ms / 100 * 100
         WHEN complete_ms < 100000 THEN complete_ms / 1000 * 1000
         WHEN complete_ms < 1000000 THEN complete_ms / 10000 * 10000
         WHEN complete_ms < 10000000 THEN complete_ms / 100000 * 100000
         WHEN complete_ms < 100000000 THEN complete_ms / 1000000 * 1000000
         WHEN complete_ms < 1000000000 THEN complete_ms / 10000000 * 10000000
         WHEN complete_ms < 10000000000 THEN complete_ms / 100000000 * 100000000
         ELSE complete_ms / 1000000000 * 1000000000 END AS complete_bucket
FROM (SELECT o.id, o.forwarded_at / 86400000 AS day, o.provider, o.upstream_service,
    CASE WHEN o.started_at IS NOT NULL THEN 1 ELSE 0 END AS started,
    CASE WHEN o.status IN ('Completed', 'Expired') THEN 1 ELSE 0 END AS completed,
    CASE WHEN o.status = 'Partial' THEN 1 ELSE 0 END AS partial,
    CASE WHEN o.status IN ('Canceled', 'Refunded') THEN 1 ELSE 0 END AS canceled,
    CASE WHEN o.status = 'Partial' AND o.charge > 0
         THEN CAST(o.refunded * 1000000 / o.charge AS INTEGER) ELSE 0 END AS undelivered_ppm,
    COALESCE(c.cost_nanos, 0) AS cost_nanos,
    COALESCE(c.cost_nanos - CASE WHEN o.charge > 0
        THEN CAST(c.cost_nanos * o.refunded / o.charge AS INTEGER) ELSE 0 END, 0) AS kept_cost_nanos,
    o.charge AS charged, o.refunded,
    CASE WHEN o.started_at IS NULL THEN NULL ELSE MAX(o.started_at - o.forwarded_at, 0) END AS start_ms,
    CASE WHEN o.finished_at IS NOT NULL AND o.status IN ('Completed', 'Expired')
         THEN MAX(o.finished_at - o.forwarded_at, 0) END AS complete_ms
FROM orders o LEFT JOIN order_costs c ON c.id = o.id
WHERE o.forward_state = 'sent' AND o.provider IS NOT NULL AND o.upstream_service IS NOT NULL
    AND o.forwarded_at IS NOT NULL);

-- The facts of one finished attempt.
CREATE VIEW route_attempt_facts AS
SELECT *, CASE WHEN call_ms < 100 THEN call_ms
         WHEN call_ms < 1000 THEN call_ms / 10 * 10
         WHEN call_ms < 10000 THEN call_ms / 100 * 100
         WHEN call_ms < 100000 THEN call_ms / 1000 * 1000
         WHEN call_ms < 1000000 THEN call_ms / 10000 * 10000
         WHEN call_ms < 10000000 THEN call_ms / 100000 * 100000
         WHEN call_ms < 100000000 THEN call_ms / 1000000 * 1000000
         WHEN call_ms < 1000000000 THEN call_ms / 10000000 * 10000000
         WHEN call_ms < 10000000000 THEN call_ms / 100000000 * 100000000
         ELSE call_ms / 1000000000 * 1000000000 END AS call_bucket
FROM (SELECT id, started_at / 86400000 AS day, provider, upstream_service,
    CASE WHEN outcome = 'sent' THEN 1 ELSE 0 END AS accepted,
    CASE WHEN outcome = 'rejected' THEN 1 ELSE 0 END AS refused,
    CASE WHEN outcome = 'not_sent' THEN 1 ELSE 0 END AS not_sent,
    CASE WHEN outcome = 'ambiguous' THEN 1 ELSE 0 END AS ambiguous,
    MAX(COALESCE(finished_at, started_at) - started_at, 0) AS call_ms
FROM forward_attempts WHERE outcome <> 'pending');

-- The facts of one refill of an order accepted upstream.
CREATE VIEW route_refill_facts AS
SELECT *, CASE WHEN refill_ms < 100 THEN refill_ms
         WHEN refill_ms < 1000 THEN refill_ms / 10 * 10
         WHEN refill_ms < 10000 THEN refill_ms / 100 * 100
         WHEN refill_ms < 100000 THEN refill_ms / 1000 * 1000
         WHEN refill_ms < 1000000 THEN refill_ms / 10000 * 10000
         WHEN refill_ms < 10000000 THEN refill_ms / 100000 * 100000
         WHEN refill_ms < 100000000 THEN refill_ms / 1000000 * 1000000
         WHEN refill_ms < 1000000000 THEN refill_ms / 10000000 * 10000000
         WHEN refill_ms < 10000000000 THEN refill_ms / 100000000 * 100000000
         ELSE refill_ms / 1000000000 * 1000000000 END AS refill_bucket
FROM (SELECT r.id, r.order_id, o.forwarded_at / 86400000 AS day, o.provider, o.upstream_service,
    CASE WHEN r.status = 'Completed' THEN 1 ELSE 0 END AS done,
    CASE WHEN r.status IN ('Rejected', 'Canceled') OR r.forward_state = 'rejected'
         THEN 1 ELSE 0 END AS failed,
    CASE WHEN r.status = 'Completed' THEN MAX(r.updated_at - r.created_at, 0) END AS refill_ms
FROM refills r JOIN orders o ON o.id = r.order_id
WHERE o.forward_state = 'sent' AND o.provider IS NOT NULL AND o.upstream_service IS NOT NULL
    AND o.forwarded_at IS NOT NULL);

-- What the rows already there add up to.
INSERT INTO route_days (day, provider, upstream_service, attempts, accepted, refused, not_sent,
    ambiguous, call_ms)
SELECT day, provider, upstream_service, COUNT(*), SUM(accepted), SUM(refused), SUM(not_sent),
    SUM(ambiguous), SUM(call_ms)
FROM route_attempt_facts GROUP BY 1, 2, 3;
INSERT INTO route_days (day, provider, upstream_service, orders, started, completed, partial,
    canceled, undelivered_ppm, cost_nanos, kept_cost_nanos, charged, refunded)
SELECT day, provider, upstream_service, COUNT(*), SUM(started), SUM(completed), SUM(partial),
    SUM(canceled), SUM(undelivered_ppm), SUM(cost_nanos), SUM(kept_cost_nanos), SUM(charged),
    SUM(refunded)
FROM route_order_facts WHERE true GROUP BY 1, 2, 3
ON CONFLICT (day, provider, upstream_service) DO UPDATE SET orders = excluded.orders,
    started = excluded.started, completed = excluded.completed, partial = excluded.partial,
    canceled = excluded.canceled, undelivered_ppm = excluded.undelivered_ppm,
    cost_nanos = excluded.cost_nanos, kept_cost_nanos = excluded.kept_cost_nanos,
    charged = excluded.charged, refunded = excluded.refunded;
INSERT INTO route_days (day, provider, upstream_service, refills, refills_done, refills_failed)
SELECT day, provider, upstream_service, COUNT(*), SUM(done), SUM(failed)
FROM route_refill_facts WHERE true GROUP BY 1, 2, 3
ON CONFLICT (day, provider, upstream_service) DO UPDATE SET refills = excluded.refills,
    refills_done = excluded.refills_done, refills_failed = excluded.refills_failed;
INSERT INTO route_day_times (day, provider, upstream_service, kind, bucket, n)
SELECT day, provider, upstream_service, kind, bucket, COUNT(*) FROM (
    SELECT day, provider, upstream_service, 'start' AS kind, start_bucket AS bucket
    FROM route_order_facts WHERE start_bucket IS NOT NULL
    UNION ALL
    SELECT day, provider, upstream_service, 'complete', complete_bucket
    FROM route_order_facts WHERE complete_bucket IS NOT NULL
    UNION ALL
    SELECT day, provider, upstream_service, 'call', call_bucket FROM route_attempt_facts
    UNION ALL
    SELECT day, provider, upstream_service, 'refill', refill_bucket
    FROM route_refill_facts WHERE refill_bucket IS NOT NULL)
GROUP BY 1, 2, 3, 4, 5;

-- Orders. Only the columns the facts read wake the triggers: a poll that changes nothing
-- costs nothing. An order's refills count where the order does, so they move with it.
CREATE TRIGGER route_orders_insert AFTER INSERT ON orders
WHEN NEW.forward_state = 'sent'
BEGIN
    INSERT INTO route_days (day, provider, upstream_service, orders, started, completed,
        partial, canceled, undelivered_ppm, cost_nanos, kept_cost_nanos, charged, refunded,
        refills, refills_done, refills_failed)
    SELECT * FROM (SELECT o.day, o.provider, o.upstream_service, 1 AS orders, o.started, o.completed,
              o.partial, o.canceled, o.undelivered_ppm, o.cost_nanos, o.kept_cost_nanos,
              o.charged, o.refunded,
              (SELECT COUNT(*) FROM route_refill_facts r WHERE r.order_id = o.id) AS refills,
              (SELECT COALESCE(SUM(done), 0) FROM route_refill_facts r
               WHERE r.order_id = o.id) AS refills_done,
              (SELECT COALESCE(SUM(failed), 0) FROM route_refill_facts r
               WHERE r.order_id = o.id) AS refills_failed
          FROM route_order_facts o WHERE o.id = NEW.id) WHERE true
    ON CONFLICT (day, provider, upstream_service) DO UPDATE SET orders = orders + 1,
        started = started + excluded.started, completed = completed + excluded.completed,
        partial = partial + excluded.partial, canceled = canceled + excluded.canceled,
        undelivered_ppm = undelivered_ppm + excluded.undelivered_ppm,
        cost_nanos = cost_nanos + excluded.cost_nanos,
        kept_cost_nanos = kept_cost_nanos + excluded.kept_cost_nanos,
        charged = charged + excluded.charged, refunded = refunded + excluded.refunded,
        refills = refills + excluded.refills, refills_done = refills_done + excluded.refills_done,
        refills_failed = refills_failed + excluded.refills_failed;
    INSERT INTO route_day_times (day, provider, upstream_service, kind, bucket, n)
    SELECT day, provider, upstream_service, kind, bucket, COUNT(*)
    FROM (SELECT day, provider, upstream_service, 'start' AS kind, start_bucket AS bucket
          FROM route_order_facts WHERE id = NEW.id AND start_bucket IS NOT NULL
          UNION ALL
          SELECT day, provider, upstream_service, 'complete', complete_bucket
          FROM route_order_facts WHERE id = NEW.id AND complete_bucket IS NOT NULL
          UNION ALL
          SELECT day, provider, upstream_service, 'refill', refill_bucket
          FROM route_refill_facts WHERE order_id = NEW.id AND refill_bucket IS NOT NULL)
    GROUP BY 1, 2, 3, 4, 5
    ON CONFLICT (day, provider, upstream_service, kind, bucket) DO UPDATE SET n = n + excluded.n;
END;

CREATE TRIGGER route_orders_before_update BEFORE UPDATE OF status, forward_state, provider, upstream_service, upstream_cost, forwarded_at,
    started_at, finished_at, charge, refunded ON orders
WHEN OLD.status IS NOT NEW.status OR OLD.forward_state IS NOT NEW.forward_state
    OR OLD.provider IS NOT NEW.provider OR OLD.upstream_service IS NOT NEW.upstream_service
    OR OLD.upstream_cost IS NOT NEW.upstream_cost OR OLD.forwarded_at IS NOT NEW.forwarded_at
    OR OLD.started_at IS NOT NEW.started_at OR OLD.finished_at IS NOT NEW.finished_at
    OR OLD.charge IS NOT NEW.charge OR OLD.refunded IS NOT NEW.refunded
BEGIN
    UPDATE route_days SET orders = route_days.orders - 1,
        started = route_days.started - f.started, completed = route_days.completed - f.completed,
        partial = route_days.partial - f.partial, canceled = route_days.canceled - f.canceled,
        undelivered_ppm = route_days.undelivered_ppm - f.undelivered_ppm,
        cost_nanos = route_days.cost_nanos - f.cost_nanos,
        kept_cost_nanos = route_days.kept_cost_nanos - f.kept_cost_nanos,
        charged = route_days.charged - f.charged, refunded = route_days.refunded - f.refunded,
        refills = route_days.refills - f.refills,
        refills_done = route_days.refills_done - f.refills_done,
        refills_failed = route_days.refills_failed - f.refills_failed
    FROM (SELECT o.day, o.provider, o.upstream_service, 1 AS orders, o.started, o.completed,
              o.partial, o.canceled, o.undelivered_ppm, o.cost_nanos, o.kept_cost_nanos,
              o.charged, o.refunded,
              (SELECT COUNT(*) FROM route_refill_facts r WHERE r.order_id = o.id) AS refills,
              (SELECT COALESCE(SUM(done), 0) FROM route_refill_facts r
               WHERE r.order_id = o.id) AS refills_done,
              (SELECT COALESCE(SUM(failed), 0) FROM route_refill_facts r
               WHERE r.order_id = o.id) AS refills_failed
          FROM route_order_facts o WHERE o.id = OLD.id) AS f
    WHERE route_days.day = f.day AND route_days.provider = f.provider
        AND route_days.upstream_service = f.upstream_service;
    UPDATE route_day_times SET n = route_day_times.n - f.n
    FROM (SELECT day, provider, upstream_service, kind, bucket, COUNT(*) AS n
          FROM (SELECT day, provider, upstream_service, 'start' AS kind, start_bucket AS bucket
          FROM route_order_facts WHERE id = OLD.id AND start_bucket IS NOT NULL
          UNION ALL
          SELECT day, provider, upstream_service, 'complete', complete_bucket
          FROM route_order_facts WHERE id = OLD.id AND complete_bucket IS NOT NULL
          UNION ALL
          SELECT day, provider, upstream_service, 'refill', refill_bucket
          FROM route_refill_facts WHERE order_id = OLD.id AND refill_bucket IS NOT NULL) GROUP BY 1, 2, 3, 4, 5) AS f
    WHERE route_day_times.day = f.day AND route_day_times.provider = f.provider
        AND route_day_times.upstream_service = f.upstream_service
        AND route_day_times.kind = f.kind AND route_day_times.bucket = f.bucket;
END;

CREATE TRIGGER route_orders_after_update AFTER UPDATE OF status, forward_state, provider, upstream_service, upstream_cost, forwarded_at,
    started_at, finished_at, charge, refunded ON orders
WHEN OLD.status IS NOT NEW.status OR OLD.forward_state IS NOT NEW.forward_state
    OR OLD.provider IS NOT NEW.provider OR OLD.upstream_service IS NOT NEW.upstream_service
    OR OLD.upstream_cost IS NOT NEW.upstream_cost OR OLD.forwarded_at IS NOT NEW.forwarded_at
    OR OLD.started_at IS NOT NEW.started_at OR OLD.finished_at IS NOT NEW.finished_at
    OR OLD.charge IS NOT NEW.charge OR OLD.refunded IS NOT NEW.refunded
BEGIN
    INSERT INTO route_days (day, provider, upstream_service, orders, started, completed,
        partial, canceled, undelivered_ppm, cost_nanos, kept_cost_nanos, charged, refunded,
        refills, refills_done, refills_failed)
    SELECT * FROM (SELECT o.day, o.provider, o.upstream_service, 1 AS orders, o.started, o.completed,
              o.partial, o.canceled, o.undelivered_ppm, o.cost_nanos, o.kept_cost_nanos,
              o.charged, o.refunded,
              (SELECT COUNT(*) FROM route_refill_facts r WHERE r.order_id = o.id) AS refills,
              (SELECT COALESCE(SUM(done), 0) FROM route_refill_facts r
               WHERE r.order_id = o.id) AS refills_done,
              (SELECT COALESCE(SUM(failed), 0) FROM route_refill_facts r
               WHERE r.order_id = o.id) AS refills_failed
          FROM route_order_facts o WHERE o.id = NEW.id) WHERE true
    ON CONFLICT (day, provider, upstream_service) DO UPDATE SET orders = orders + 1,
        started = started + excluded.started, completed = completed + excluded.completed,
        partial = partial + excluded.partial, canceled = canceled + excluded.canceled,
        undelivered_ppm = undelivered_ppm + excluded.undelivered_ppm,
        cost_nanos = cost_nanos + excluded.cost_nanos,
        kept_cost_nanos = kept_cost_nanos + excluded.kept_cost_nanos,
        charged = charged + excluded.charged, refunded = refunded + excluded.refunded,
        refills = refills + excluded.refills, refills_done = refills_done + excluded.refills_done,
        refills_failed = refills_failed + excluded.refills_failed;
    INSERT INTO route_day_times (day, provider, upstream_service, kind, bucket, n)
    SELECT day, provider, upstream_service, kind, bucket, COUNT(*)
    FROM (SELECT day, provider, upstream_service, 'start' AS kind, start_bucket AS bucket
          FROM route_order_facts WHERE id = NEW.id AND start_bucket IS NOT NULL
          UNION ALL
          SELECT day, provider, upstream_service, 'complete', complete_bucket
          FROM route_order_facts WHERE id = NEW.id AND complete_bucket IS NOT NULL
          UNION ALL
          SELECT day, provider, upstream_service, 'refill', refill_bucket
          FROM route_refill_facts WHERE order_id = NEW.id AND refill_bucket IS NOT NULL)
    GROUP BY 1, 2, 3, 4, 5
    ON CONFLICT (day, provider, upstream_service, kind, bucket) DO UPDATE SET n = n + excluded.n;
END;

-- Attempts: inserted pending (no facts), then finished.
CREATE TRIGGER route_attempts_before_update
BEFORE UPDATE OF outcome, started_at, finished_at, provider, upstream_service ON forward_attempts
BEGIN
    UPDATE route_days SET attempts = route_days.attempts - 1,
        accepted = route_days.accepted - f.accepted, refused = route_days.refused - f.refused,
        not_sent = route_days.not_sent - f.not_sent, ambiguous = route_days.ambiguous - f.ambiguous,
        call_ms = route_days.call_ms - f.call_ms
    FROM (SELECT * FROM route_attempt_facts WHERE id = OLD.id) AS f
    WHERE route_days.day = f.day AND route_days.provider = f.provider
        AND route_days.upstream_service = f.upstream_service;
    UPDATE route_day_times SET n = route_day_times.n - f.n
    FROM (SELECT day, provider, upstream_service, kind, bucket, COUNT(*) AS n
          FROM (SELECT day, provider, upstream_service, 'call' AS kind, call_bucket AS bucket
          FROM route_attempt_facts WHERE id = OLD.id) GROUP BY 1, 2, 3, 4, 5) AS f
    WHERE route_day_times.day = f.day AND route_day_times.provider = f.provider
        AND route_day_times.upstream_service = f.upstream_service
        AND route_day_times.kind = f.kind AND route_day_times.bucket = f.bucket;
END;

CREATE TRIGGER route_attempts_after_update
AFTER UPDATE OF outcome, started_at, finished_at, provider, upstream_service ON forward_attempts
BEGIN
    INSERT INTO route_days (day, provider, upstream_service, attempts, accepted, refused,
        not_sent, ambiguous, call_ms)
    SELECT day, provider, upstream_service, 1, accepted, refused, not_sent, ambiguous, call_ms
    FROM route_attempt_facts WHERE id = NEW.id
    ON CONFLICT (day, provider, upstream_service) DO UPDATE SET attempts = attempts + 1,
        accepted = accepted + excluded.accepted, refused = refused + excluded.refused,
        not_sent = not_sent + excluded.not_sent, ambiguous = ambiguous + excluded.ambiguous,
        call_ms = call_ms + excluded.call_ms;
    INSERT INTO route_day_times (day, provider, upstream_service, kind, bucket, n)
    SELECT day, provider, upstream_service, 'call', call_bucket, 1
    FROM route_attempt_facts WHERE id = NEW.id
    ON CONFLICT (day, provider, upstream_service, kind, bucket) DO UPDATE SET n = n + 1;
END;

-- Refills.
CREATE TRIGGER route_refills_insert AFTER INSERT ON refills
BEGIN
    INSERT INTO route_days (day, provider, upstream_service, refills, refills_done, refills_failed)
    SELECT day, provider, upstream_service, 1, done, failed FROM route_refill_facts
    WHERE id = NEW.id
    ON CONFLICT (day, provider, upstream_service) DO UPDATE SET refills = refills + 1,
        refills_done = refills_done + excluded.refills_done,
        refills_failed = refills_failed + excluded.refills_failed;
    INSERT INTO route_day_times (day, provider, upstream_service, kind, bucket, n)
    SELECT day, provider, upstream_service, 'refill', refill_bucket, 1
    FROM route_refill_facts WHERE id = NEW.id AND refill_bucket IS NOT NULL
    ON CONFLICT (day, provider, upstream_service, kind, bucket) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER route_refills_before_update
BEFORE UPDATE OF status, forward_state, created_at, updated_at, order_id ON refills
WHEN OLD.status IS NOT NEW.status OR OLD.forward_state IS NOT NEW.forward_state
    OR OLD.order_id IS NOT NEW.order_id OR OLD.created_at IS NOT NEW.created_at
    OR (NEW.status = 'Completed' AND OLD.updated_at IS NOT NEW.updated_at)
BEGIN
    UPDATE route_days SET refills = route_days.refills - 1,
        refills_done = route_days.refills_done - f.done,
        refills_failed = route_days.refills_failed - f.failed
    FROM (SELECT * FROM route_refill_facts WHERE id = OLD.id) AS f
    WHERE route_days.day = f.day AND route_days.provider = f.provider
        AND route_days.upstream_service = f.upstream_service;
    UPDATE route_day_times SET n = route_day_times.n - f.n
    FROM (SELECT day, provider, upstream_service, kind, bucket, COUNT(*) AS n
          FROM (SELECT day, provider, upstream_service, 'refill' AS kind, refill_bucket AS bucket
          FROM route_refill_facts WHERE id = OLD.id AND refill_bucket IS NOT NULL) GROUP BY 1, 2, 3, 4, 5) AS f
    WHERE route_day_times.day = f.day AND route_day_times.provider = f.provider
        AND route_day_times.upstream_service = f.upstream_service
        AND route_day_times.kind = f.kind AND route_day_times.bucket = f.bucket;
END;

CREATE TRIGGER route_refills_after_update
AFTER UPDATE OF status, forward_state, created_at, updated_at, order_id ON refills
WHEN OLD.status IS NOT NEW.status OR OLD.forward_state IS NOT NEW.forward_state
    OR OLD.order_id IS NOT NEW.order_id OR OLD.created_at IS NOT NEW.created_at
    OR (NEW.status = 'Completed' AND OLD.updated_at IS NOT NEW.updated_at)
BEGIN
    INSERT INTO route_days (day, provider, upstream_service, refills, refills_done, refills_failed)
    SELECT day, provider, upstream_service, 1, done, failed FROM route_refill_facts
    WHERE id = NEW.id
    ON CONFLICT (day, provider, upstream_service) DO UPDATE SET refills = refills + 1,
        refills_done = refills_done + excluded.refills_done,
        refills_failed = refills_failed + excluded.refills_failed;
    INSERT INTO route_day_times (day, provider, upstream_service, kind, bucket, n)
    SELECT day, provider, upstream_service, 'refill', refill_bucket, 1
    FROM route_refill_facts WHERE id = NEW.id AND refill_bucket IS NOT NULL
    ON CONFLICT (day, provider, upstream_service, kind, bucket) DO UPDATE SET n = n + 1;
END;
