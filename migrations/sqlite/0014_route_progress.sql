-- Issue #16: a poll that moves an order on (a new status, its start or finish time) and nothing
-- else is most of what the reconciler writes, and 0013's triggers paid for it as for any change:
-- the order's facts read twice through the `route_order_facts` view, its refills counted twice,
-- the old facts taken off and the new put back (70 % of a 1,000-row status UPDATE). For that
-- change alone the difference is computed here from OLD and NEW: the route, its day, cost,
-- charge and refund are the same, so only the status counts and the start and completion
-- times move, and the refills (which count where the order does) do not. Every other change
-- keeps 0013's path, whose triggers now leave this one out.

DROP TRIGGER route_orders_before_update;
DROP TRIGGER route_orders_after_update;

CREATE TRIGGER route_orders_before_update BEFORE UPDATE OF status, forward_state, provider, upstream_service, upstream_cost, forwarded_at,
    started_at, finished_at, charge, refunded ON orders
WHEN ((OLD.forward_state = 'sent' OR NEW.forward_state = 'sent') AND (
    OLD.status IS NOT NEW.status OR OLD.forward_state IS NOT NEW.forward_state
    OR OLD.provider IS NOT NEW.provider OR OLD.upstream_service IS NOT NEW.upstream_service
    OR OLD.upstream_cost IS NOT NEW.upstream_cost OR OLD.forwarded_at IS NOT NEW.forwarded_at
    OR OLD.started_at IS NOT NEW.started_at OR OLD.finished_at IS NOT NEW.finished_at
    OR OLD.charge IS NOT NEW.charge OR OLD.refunded IS NOT NEW.refunded))
    AND NOT (OLD.forward_state = 'sent' AND NEW.forward_state = 'sent'
        AND NEW.provider IS NOT NULL AND NEW.upstream_service IS NOT NULL
        AND NEW.forwarded_at IS NOT NULL
        AND OLD.provider IS NEW.provider AND OLD.upstream_service IS NEW.upstream_service
        AND OLD.forwarded_at IS NEW.forwarded_at AND OLD.upstream_cost IS NEW.upstream_cost
        AND OLD.charge IS NEW.charge AND OLD.refunded IS NEW.refunded)
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
WHEN ((OLD.forward_state = 'sent' OR NEW.forward_state = 'sent') AND (
    OLD.status IS NOT NEW.status OR OLD.forward_state IS NOT NEW.forward_state
    OR OLD.provider IS NOT NEW.provider OR OLD.upstream_service IS NOT NEW.upstream_service
    OR OLD.upstream_cost IS NOT NEW.upstream_cost OR OLD.forwarded_at IS NOT NEW.forwarded_at
    OR OLD.started_at IS NOT NEW.started_at OR OLD.finished_at IS NOT NEW.finished_at
    OR OLD.charge IS NOT NEW.charge OR OLD.refunded IS NOT NEW.refunded))
    AND NOT (OLD.forward_state = 'sent' AND NEW.forward_state = 'sent'
        AND NEW.provider IS NOT NULL AND NEW.upstream_service IS NOT NULL
        AND NEW.forwarded_at IS NOT NULL
        AND OLD.provider IS NEW.provider AND OLD.upstream_service IS NEW.upstream_service
        AND OLD.forwarded_at IS NEW.forwarded_at AND OLD.upstream_cost IS NEW.upstream_cost
        AND OLD.charge IS NEW.charge AND OLD.refunded IS NEW.refunded)
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

CREATE TRIGGER route_orders_progress AFTER UPDATE OF status, forward_state, provider,
    upstream_service, upstream_cost, forwarded_at, started_at, finished_at, charge, refunded
    ON orders
WHEN OLD.forward_state = 'sent' AND NEW.forward_state = 'sent'
    AND NEW.provider IS NOT NULL AND NEW.upstream_service IS NOT NULL
    AND NEW.forwarded_at IS NOT NULL
    AND OLD.provider IS NEW.provider AND OLD.upstream_service IS NEW.upstream_service
    AND OLD.forwarded_at IS NEW.forwarded_at AND OLD.upstream_cost IS NEW.upstream_cost
    AND OLD.charge IS NEW.charge AND OLD.refunded IS NEW.refunded
    AND (OLD.status IS NOT NEW.status OR OLD.started_at IS NOT NEW.started_at
        OR OLD.finished_at IS NOT NEW.finished_at)
BEGIN
    INSERT INTO route_days (day, provider, upstream_service, started, completed, partial,
        canceled, undelivered_ppm)
    VALUES (NEW.forwarded_at / 86400000, NEW.provider, NEW.upstream_service,
        (NEW.started_at IS NOT NULL) - (OLD.started_at IS NOT NULL),
        (NEW.status IN ('Completed', 'Expired')) - (OLD.status IN ('Completed', 'Expired')),
        (NEW.status = 'Partial') - (OLD.status = 'Partial'),
        (NEW.status IN ('Canceled', 'Refunded')) - (OLD.status IN ('Canceled', 'Refunded')),
        (CASE WHEN NEW.status = 'Partial' AND NEW.charge > 0 THEN CAST(NEW.refunded * 1000000 / NEW.charge AS INTEGER) ELSE 0 END)
            - (CASE WHEN OLD.status = 'Partial' AND OLD.charge > 0 THEN CAST(OLD.refunded * 1000000 / OLD.charge AS INTEGER) ELSE 0 END))
    ON CONFLICT (day, provider, upstream_service) DO UPDATE SET
        started = started + excluded.started, completed = completed + excluded.completed,
        partial = partial + excluded.partial, canceled = canceled + excluded.canceled,
        undelivered_ppm = undelivered_ppm + excluded.undelivered_ppm;
    UPDATE route_day_times SET n = n - 1
    WHERE OLD.started_at IS NOT NEW.started_at AND OLD.started_at IS NOT NULL
        AND day = OLD.forwarded_at / 86400000 AND provider = OLD.provider
        AND upstream_service = OLD.upstream_service AND kind = 'start'
        AND bucket = (CASE WHEN MAX(OLD.started_at - OLD.forwarded_at, 0) < 100 THEN MAX(OLD.started_at - OLD.forwarded_at, 0)
            WHEN MAX(OLD.started_at - OLD.forwarded_at, 0) < 1000 THEN MAX(OLD.started_at - OLD.forwarded_at, 0) / 10 * 10
            WHEN MAX(OLD.started_at - OLD.forwarded_at, 0) < 10000 THEN MAX(OLD.started_at - OLD.forwarded_at, 0) / 100 * 100
            WHEN MAX(OLD.started_at - OLD.forwarded_at, 0) < 100000 THEN MAX(OLD.started_at - OLD.forwarded_at, 0) / 1000 * 1000
            WHEN MAX(OLD.started_at - OLD.forwarded_at, 0) < 1000000 THEN MAX(OLD.started_at - OLD.forwarded_at, 0) / 10000 * 10000
            WHEN MAX(OLD.started_at - OLD.forwarded_at, 0) < 10000000 THEN MAX(OLD.started_at - OLD.forwarded_at, 0) / 100000 * 100000
            WHEN MAX(OLD.started_at - OLD.forwarded_at, 0) < 100000000 THEN MAX(OLD.started_at - OLD.forwarded_at, 0) / 1000000 * 1000000
            WHEN MAX(OLD.started_at - OLD.forwarded_at, 0) < 1000000000 THEN MAX(OLD.started_at - OLD.forwarded_at, 0) / 10000000 * 10000000
            WHEN MAX(OLD.started_at - OLD.forwarded_at, 0) < 10000000000 THEN MAX(OLD.started_at - OLD.forwarded_at, 0) / 100000000 * 100000000
            ELSE MAX(OLD.started_at - OLD.forwarded_at, 0) / 1000000000 * 1000000000 END);
    INSERT INTO route_day_times (day, provider, upstream_service, kind, bucket, n)
    SELECT NEW.forwarded_at / 86400000, NEW.provider, NEW.upstream_service, 'start',
        CASE WHEN MAX(NEW.started_at - NEW.forwarded_at, 0) < 100 THEN MAX(NEW.started_at - NEW.forwarded_at, 0)
            WHEN MAX(NEW.started_at - NEW.forwarded_at, 0) < 1000 THEN MAX(NEW.started_at - NEW.forwarded_at, 0) / 10 * 10
            WHEN MAX(NEW.started_at - NEW.forwarded_at, 0) < 10000 THEN MAX(NEW.started_at - NEW.forwarded_at, 0) / 100 * 100
            WHEN MAX(NEW.started_at - NEW.forwarded_at, 0) < 100000 THEN MAX(NEW.started_at - NEW.forwarded_at, 0) / 1000 * 1000
            WHEN MAX(NEW.started_at - NEW.forwarded_at, 0) < 1000000 THEN MAX(NEW.started_at - NEW.forwarded_at, 0) / 10000 * 10000
            WHEN MAX(NEW.started_at - NEW.forwarded_at, 0) < 10000000 THEN MAX(NEW.started_at - NEW.forwarded_at, 0) / 100000 * 100000
            WHEN MAX(NEW.started_at - NEW.forwarded_at, 0) < 100000000 THEN MAX(NEW.started_at - NEW.forwarded_at, 0) / 1000000 * 1000000
            WHEN MAX(NEW.started_at - NEW.forwarded_at, 0) < 1000000000 THEN MAX(NEW.started_at - NEW.forwarded_at, 0) / 10000000 * 10000000
            WHEN MAX(NEW.started_at - NEW.forwarded_at, 0) < 10000000000 THEN MAX(NEW.started_at - NEW.forwarded_at, 0) / 100000000 * 100000000
            ELSE MAX(NEW.started_at - NEW.forwarded_at, 0) / 1000000000 * 1000000000 END, 1
    WHERE OLD.started_at IS NOT NEW.started_at AND NEW.started_at IS NOT NULL
    ON CONFLICT (day, provider, upstream_service, kind, bucket) DO UPDATE SET n = n + 1;
    UPDATE route_day_times SET n = n - 1
    WHERE (CASE WHEN OLD.finished_at IS NOT NULL AND OLD.status IN ('Completed', 'Expired') THEN MAX(OLD.finished_at - OLD.forwarded_at, 0) END) IS NOT (CASE WHEN NEW.finished_at IS NOT NULL AND NEW.status IN ('Completed', 'Expired') THEN MAX(NEW.finished_at - NEW.forwarded_at, 0) END)
        AND (CASE WHEN OLD.finished_at IS NOT NULL AND OLD.status IN ('Completed', 'Expired') THEN MAX(OLD.finished_at - OLD.forwarded_at, 0) END) IS NOT NULL
        AND day = OLD.forwarded_at / 86400000 AND provider = OLD.provider
        AND upstream_service = OLD.upstream_service AND kind = 'complete'
        AND bucket = (CASE WHEN (CASE WHEN OLD.finished_at IS NOT NULL AND OLD.status IN ('Completed', 'Expired') THEN MAX(OLD.finished_at - OLD.forwarded_at, 0) END) < 100 THEN (CASE WHEN OLD.finished_at IS NOT NULL AND OLD.status IN ('Completed', 'Expired') THEN MAX(OLD.finished_at - OLD.forwarded_at, 0) END)
            WHEN (CASE WHEN OLD.finished_at IS NOT NULL AND OLD.status IN ('Completed', 'Expired') THEN MAX(OLD.finished_at - OLD.forwarded_at, 0) END) < 1000 THEN (CASE WHEN OLD.finished_at IS NOT NULL AND OLD.status IN ('Completed', 'Expired') THEN MAX(OLD.finished_at - OLD.forwarded_at, 0) END) / 10 * 10
            WHEN (CASE WHEN OLD.finished_at IS NOT NULL AND OLD.status IN ('Completed', 'Expired') THEN MAX(OLD.finished_at - OLD.forwarded_at, 0) END) < 10000 THEN (CASE WHEN OLD.finished_at IS NOT NULL AND OLD.status IN ('Completed', 'Expired') THEN MAX(OLD.finished_at - OLD.forwarded_at, 0) END) / 100 * 100
            WHEN (CASE WHEN OLD.finished_at IS NOT NULL AND OLD.status IN ('Completed', 'Expired') THEN MAX(OLD.finished_at - OLD.forwarded_at, 0) END) < 100000 THEN (CASE WHEN OLD.finished_at IS NOT NULL AND OLD.status IN ('Completed', 'Expired') THEN MAX(OLD.finished_at - OLD.forwarded_at, 0) END) / 1000 * 1000
            WHEN (CASE WHEN OLD.finished_at IS NOT NULL AND OLD.status IN ('Completed', 'Expired') THEN MAX(OLD.finished_at - OLD.forwarded_at, 0) END) < 1000000 THEN (CASE WHEN OLD.finished_at IS NOT NULL AND OLD.status IN ('Completed', 'Expired') THEN MAX(OLD.finished_at - OLD.forwarded_at, 0) END) / 10000 * 10000
            WHEN (CASE WHEN OLD.finished_at IS NOT NULL AND OLD.status IN ('Completed', 'Expired') THEN MAX(OLD.finished_at - OLD.forwarded_at, 0) END) < 10000000 THEN (CASE WHEN OLD.finished_at IS NOT NULL AND OLD.status IN ('Completed', 'Expired') THEN MAX(OLD.finished_at - OLD.forwarded_at, 0) END) / 100000 * 100000
            WHEN (CASE WHEN OLD.finished_at IS NOT NULL AND OLD.status IN ('Completed', 'Expired') THEN MAX(OLD.finished_at - OLD.forwarded_at, 0) END) < 100000000 THEN (CASE WHEN OLD.finished_at IS NOT NULL AND OLD.status IN ('Completed', 'Expired') THEN MAX(OLD.finished_at - OLD.forwarded_at, 0) END) / 1000000 * 1000000
            WHEN (CASE WHEN OLD.finished_at IS NOT NULL AND OLD.status IN ('Completed', 'Expired') THEN MAX(OLD.finished_at - OLD.forwarded_at, 0) END) < 1000000000 THEN (CASE WHEN OLD.finished_at IS NOT NULL AND OLD.status IN ('Completed', 'Expired') THEN MAX(OLD.finished_at - OLD.forwarded_at, 0) END) / 10000000 * 10000000
            WHEN (CASE WHEN OLD.finished_at IS NOT NULL AND OLD.status IN ('Completed', 'Expired') THEN MAX(OLD.finished_at - OLD.forwarded_at, 0) END) < 10000000000 THEN (CASE WHEN OLD.finished_at IS NOT NULL AND OLD.status IN ('Completed', 'Expired') THEN MAX(OLD.finished_at - OLD.forwarded_at, 0) END) / 100000000 * 100000000
            ELSE (CASE WHEN OLD.finished_at IS NOT NULL AND OLD.status IN ('Completed', 'Expired') THEN MAX(OLD.finished_at - OLD.forwarded_at, 0) END) / 1000000000 * 1000000000 END);
    INSERT INTO route_day_times (day, provider, upstream_service, kind, bucket, n)
    SELECT NEW.forwarded_at / 86400000, NEW.provider, NEW.upstream_service, 'complete',
        CASE WHEN (CASE WHEN NEW.finished_at IS NOT NULL AND NEW.status IN ('Completed', 'Expired') THEN MAX(NEW.finished_at - NEW.forwarded_at, 0) END) < 100 THEN (CASE WHEN NEW.finished_at IS NOT NULL AND NEW.status IN ('Completed', 'Expired') THEN MAX(NEW.finished_at - NEW.forwarded_at, 0) END)
            WHEN (CASE WHEN NEW.finished_at IS NOT NULL AND NEW.status IN ('Completed', 'Expired') THEN MAX(NEW.finished_at - NEW.forwarded_at, 0) END) < 1000 THEN (CASE WHEN NEW.finished_at IS NOT NULL AND NEW.status IN ('Completed', 'Expired') THEN MAX(NEW.finished_at - NEW.forwarded_at, 0) END) / 10 * 10
            WHEN (CASE WHEN NEW.finished_at IS NOT NULL AND NEW.status IN ('Completed', 'Expired') THEN MAX(NEW.finished_at - NEW.forwarded_at, 0) END) < 10000 THEN (CASE WHEN NEW.finished_at IS NOT NULL AND NEW.status IN ('Completed', 'Expired') THEN MAX(NEW.finished_at - NEW.forwarded_at, 0) END) / 100 * 100
            WHEN (CASE WHEN NEW.finished_at IS NOT NULL AND NEW.status IN ('Completed', 'Expired') THEN MAX(NEW.finished_at - NEW.forwarded_at, 0) END) < 100000 THEN (CASE WHEN NEW.finished_at IS NOT NULL AND NEW.status IN ('Completed', 'Expired') THEN MAX(NEW.finished_at - NEW.forwarded_at, 0) END) / 1000 * 1000
            WHEN (CASE WHEN NEW.finished_at IS NOT NULL AND NEW.status IN ('Completed', 'Expired') THEN MAX(NEW.finished_at - NEW.forwarded_at, 0) END) < 1000000 THEN (CASE WHEN NEW.finished_at IS NOT NULL AND NEW.status IN ('Completed', 'Expired') THEN MAX(NEW.finished_at - NEW.forwarded_at, 0) END) / 10000 * 10000
            WHEN (CASE WHEN NEW.finished_at IS NOT NULL AND NEW.status IN ('Completed', 'Expired') THEN MAX(NEW.finished_at - NEW.forwarded_at, 0) END) < 10000000 THEN (CASE WHEN NEW.finished_at IS NOT NULL AND NEW.status IN ('Completed', 'Expired') THEN MAX(NEW.finished_at - NEW.forwarded_at, 0) END) / 100000 * 100000
            WHEN (CASE WHEN NEW.finished_at IS NOT NULL AND NEW.status IN ('Completed', 'Expired') THEN MAX(NEW.finished_at - NEW.forwarded_at, 0) END) < 100000000 THEN (CASE WHEN NEW.finished_at IS NOT NULL AND NEW.status IN ('Completed', 'Expired') THEN MAX(NEW.finished_at - NEW.forwarded_at, 0) END) / 1000000 * 1000000
            WHEN (CASE WHEN NEW.finished_at IS NOT NULL AND NEW.status IN ('Completed', 'Expired') THEN MAX(NEW.finished_at - NEW.forwarded_at, 0) END) < 1000000000 THEN (CASE WHEN NEW.finished_at IS NOT NULL AND NEW.status IN ('Completed', 'Expired') THEN MAX(NEW.finished_at - NEW.forwarded_at, 0) END) / 10000000 * 10000000
            WHEN (CASE WHEN NEW.finished_at IS NOT NULL AND NEW.status IN ('Completed', 'Expired') THEN MAX(NEW.finished_at - NEW.forwarded_at, 0) END) < 10000000000 THEN (CASE WHEN NEW.finished_at IS NOT NULL AND NEW.status IN ('Completed', 'Expired') THEN MAX(NEW.finished_at - NEW.forwarded_at, 0) END) / 100000000 * 100000000
            ELSE (CASE WHEN NEW.finished_at IS NOT NULL AND NEW.status IN ('Completed', 'Expired') THEN MAX(NEW.finished_at - NEW.forwarded_at, 0) END) / 1000000000 * 1000000000 END, 1
    WHERE (CASE WHEN OLD.finished_at IS NOT NULL AND OLD.status IN ('Completed', 'Expired') THEN MAX(OLD.finished_at - OLD.forwarded_at, 0) END) IS NOT (CASE WHEN NEW.finished_at IS NOT NULL AND NEW.status IN ('Completed', 'Expired') THEN MAX(NEW.finished_at - NEW.forwarded_at, 0) END)
        AND (CASE WHEN NEW.finished_at IS NOT NULL AND NEW.status IN ('Completed', 'Expired') THEN MAX(NEW.finished_at - NEW.forwarded_at, 0) END) IS NOT NULL
    ON CONFLICT (day, provider, upstream_service, kind, bucket) DO UPDATE SET n = n + 1;
END;
