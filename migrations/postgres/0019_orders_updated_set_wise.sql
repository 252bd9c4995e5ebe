-- Issue #16: the reconciler writes the statuses of a poll batch (up to 1,000 orders) in one
-- `UPDATE`, and the row triggers of 0010 (aggregates), 0011 (timeline), 0012 (webhook events)
-- and 0013/0014 (scorecards) then ran once per order: eight or so single-row INSERTs each, about
-- 85 µs an order, more than the update itself (3,000 polled orders: 314 ms with the triggers,
-- 60 ms without). `orders_updated` writes what those triggers write for a whole set of changed
-- rows, set-wise: the deltas summed per key (their sums are the same), the timeline and webhook
-- events row by row in id order. A statement that updates many orders calls it with the rows
-- before and after (a `MATERIALIZED` CTE reads them before, `RETURNING` after), having set
-- `smm.orders_updated` to 'set-wise' for its transaction, and sets it back after: the row
-- triggers below stand aside while it is set. Everything else keeps the row triggers.
--
-- The two must stay equal: the conformance case `batched_statuses_score_as_one_by_one` applies
-- the same reports through both and compares the scorecards, totals and timelines. Nothing
-- here on SQLite (its 0019 is empty): its one writer runs the triggers compiled into the
-- statement, at a fraction of this cost.

CREATE FUNCTION orders_updated(old_rows orders[], new_rows orders[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    pair record;
BEGIN
    WITH sides AS MATERIALIZED (
        SELECT s.*, f.*,
            CASE WHEN f.cost_fixed OR s.upstream_cost IS NULL THEN 0
                 ELSE order_cost_nanos(s.upstream_cost) END AS cost
        FROM unnest(old_rows) AS w JOIN unnest(new_rows) AS n ON n.id = w.id,
        LATERAL (SELECT
            w.status IS DISTINCT FROM n.status
                OR w.forward_state IS DISTINCT FROM n.forward_state AS state_moved,
            w.charge IS DISTINCT FROM n.charge OR w.refunded IS DISTINCT FROM n.refunded
                OR w.created_at IS DISTINCT FROM n.created_at AS money_moved,
            w.forward_state = 'sent' AND w.provider IS NOT NULL
                AND w.upstream_cost IS NOT NULL AS was_sent,
            n.forward_state = 'sent' AND n.provider IS NOT NULL
                AND n.upstream_cost IS NOT NULL AS is_sent,
            w.provider IS DISTINCT FROM n.provider
                OR w.upstream_cost IS DISTINCT FROM n.upstream_cost AS cost_route_moved,
            w.forward_state = 'sent' AND n.forward_state = 'sent'
                AND n.provider IS NOT NULL AND n.upstream_service IS NOT NULL
                AND n.forwarded_at IS NOT NULL
                AND w.provider IS NOT DISTINCT FROM n.provider
                AND w.upstream_service IS NOT DISTINCT FROM n.upstream_service
                AND w.forwarded_at IS NOT DISTINCT FROM n.forwarded_at AS same_route,
            -- Every key and value the costs are summed under is the same on both sides: the
            -- two sides' costs cancel, and are not computed.
            w.upstream_cost IS NOT DISTINCT FROM n.upstream_cost AND w.charge = n.charge
                AND w.refunded = n.refunded AND w.created_at = n.created_at
                AND w.forward_state = n.forward_state
                AND w.provider IS NOT DISTINCT FROM n.provider
                AND w.upstream_service IS NOT DISTINCT FROM n.upstream_service
                AND w.forwarded_at IS NOT DISTINCT FROM n.forwarded_at AS cost_fixed
        ) AS f,
        LATERAL (VALUES
            (-1, w.id, w.status, w.forward_state, w.charge, w.refunded, w.created_at,
                w.provider, w.upstream_service, w.upstream_cost, w.forwarded_at, w.started_at,
                w.finished_at),
            (1, n.id, n.status, n.forward_state, n.charge, n.refunded, n.created_at,
                n.provider, n.upstream_service, n.upstream_cost, n.forwarded_at, n.started_at,
                n.finished_at))
            AS s (sign, id, status, forward_state, charge, refunded, created_at, provider,
                upstream_service, upstream_cost, forwarded_at, started_at, finished_at)
    ),
    -- 0010's order_aggregates.
    counts AS (
        INSERT INTO order_count_deltas (status, forward_state, orders)
        SELECT status, forward_state, SUM(sign) FROM sides WHERE state_moved
        GROUP BY 1, 2 HAVING SUM(sign) <> 0
    ),
    days AS (
        INSERT INTO order_day_deltas (day, orders, charged, refunded)
        SELECT created_at / 86400000, SUM(sign), SUM(sign * charge), SUM(sign * refunded)
        FROM sides WHERE money_moved
        GROUP BY 1 HAVING SUM(sign) <> 0 OR SUM(sign * charge) <> 0
            OR SUM(sign * refunded) <> 0
    ),
    provider_days AS (
        INSERT INTO order_provider_day_deltas (day, provider, orders, cost_nanos,
            kept_cost_nanos)
        SELECT created_at / 86400000, provider, SUM(sign), SUM(sign * cost),
            SUM(sign * kept_cost)
        FROM (SELECT *, cost - CASE WHEN charge > 0
                THEN div(cost::numeric * refunded, charge)::bigint ELSE 0 END AS kept_cost
            FROM sides
            WHERE CASE WHEN sign = -1 THEN was_sent ELSE is_sent END
                AND (was_sent IS DISTINCT FROM is_sent
                    OR (is_sent AND (cost_route_moved OR money_moved)))) AS x
        GROUP BY 1, 2 HAVING SUM(sign) <> 0 OR SUM(sign * cost) <> 0
            OR SUM(sign * kept_cost) <> 0
    ),
    -- 0013/0014's route_orders_changed, for the orders that keep their route and cohort (the
    -- others below): each moves its own facts, its refills' cancel out.
    routes AS (
        INSERT INTO route_day_deltas (day, provider, upstream_service, orders, started,
            completed, partial, canceled, undelivered_ppm, cost_nanos, kept_cost_nanos,
            charged, refunded)
        SELECT day, provider, upstream_service, SUM(sign), SUM(sign * started),
            SUM(sign * completed), SUM(sign * partial), SUM(sign * canceled),
            SUM(sign * undelivered_ppm), SUM(sign * cost), SUM(sign * kept_cost),
            SUM(sign * charge), SUM(sign * refunded)
        FROM (SELECT forwarded_at / 86400000 AS day, provider, upstream_service, sign,
                (started_at IS NOT NULL)::int AS started,
                (status IN ('Completed', 'Expired'))::int AS completed,
                (status = 'Partial')::int AS partial,
                (status IN ('Canceled', 'Refunded'))::int AS canceled,
                CASE WHEN status = 'Partial' AND charge > 0
                     THEN div(refunded::numeric * 1000000, charge)::bigint
                     ELSE 0 END AS undelivered_ppm,
                cost, cost - CASE WHEN charge > 0
                    THEN div(cost::numeric * refunded, charge)::bigint ELSE 0 END AS kept_cost,
                charge, refunded
            FROM sides WHERE same_route) AS x
        GROUP BY 1, 2, 3
        HAVING SUM(sign * started) <> 0 OR SUM(sign * completed) <> 0
            OR SUM(sign * partial) <> 0 OR SUM(sign * canceled) <> 0
            OR SUM(sign * undelivered_ppm) <> 0 OR SUM(sign * cost) <> 0
            OR SUM(sign * kept_cost) <> 0 OR SUM(sign * charge) <> 0
            OR SUM(sign * refunded) <> 0
    )
    INSERT INTO route_day_time_deltas (day, provider, upstream_service, kind, bucket, n)
    SELECT forwarded_at / 86400000, provider, upstream_service, t.kind,
        route_time_bucket(t.ms), SUM(sign)
    FROM sides,
        LATERAL (VALUES ('start', started_at - forwarded_at),
            ('complete', CASE WHEN status IN ('Completed', 'Expired')
                THEN finished_at - forwarded_at END)) AS t (kind, ms)
    WHERE same_route AND t.ms IS NOT NULL
    GROUP BY 1, 2, 3, 4, 5 HAVING SUM(sign) <> 0;

    -- 0011's order_events_record and 0012's webhook_order_status, in order.
    INSERT INTO order_events (order_id, at, status, forward_state)
    SELECT n.id, n.updated_at, n.status, n.forward_state
    FROM unnest(old_rows) AS w JOIN unnest(new_rows) AS n ON n.id = w.id
    WHERE w.status IS DISTINCT FROM n.status OR w.forward_state IS DISTINCT FROM n.forward_state
    ORDER BY n.id;

    INSERT INTO webhook_events (customer_id, kind, order_id, status, status_raw, prev_status,
        prev_status_raw, quantity, charge, refunded, start_count, remains, extra, created_at,
        next_attempt_at)
    SELECT n.customer_id, 'order.status', n.id, n.status, n.status_raw, w.status,
        w.status_raw, n.quantity, n.charge, n.refunded, n.start_count, n.remains, n.extra,
        n.updated_at, n.updated_at
    FROM unnest(old_rows) AS w JOIN unnest(new_rows) AS n ON n.id = w.id
        JOIN customers AS c ON c.id = n.customer_id AND c.webhook_url IS NOT NULL
    WHERE w.status IS DISTINCT FROM n.status OR w.status_raw IS DISTINCT FROM n.status_raw
    ORDER BY n.id;

    -- The orders that change route or cohort, or become sent or stop being it (never a poll):
    -- 0013's path, as the row trigger takes it, their refills' facts moving with them.
    FOR pair IN
        SELECT w AS was_row, n AS now_row
        FROM unnest(old_rows) AS w JOIN unnest(new_rows) AS n ON n.id = w.id
        WHERE (w.forward_state = 'sent' OR n.forward_state = 'sent')
            AND (w.status IS DISTINCT FROM n.status
                OR w.forward_state IS DISTINCT FROM n.forward_state
                OR w.provider IS DISTINCT FROM n.provider
                OR w.upstream_service IS DISTINCT FROM n.upstream_service
                OR w.upstream_cost IS DISTINCT FROM n.upstream_cost
                OR w.forwarded_at IS DISTINCT FROM n.forwarded_at
                OR w.started_at IS DISTINCT FROM n.started_at
                OR w.finished_at IS DISTINCT FROM n.finished_at
                OR w.charge IS DISTINCT FROM n.charge OR w.refunded IS DISTINCT FROM n.refunded)
            AND NOT (w.forward_state = 'sent' AND n.forward_state = 'sent'
                AND n.provider IS NOT NULL AND n.upstream_service IS NOT NULL
                AND n.forwarded_at IS NOT NULL
                AND w.provider IS NOT DISTINCT FROM n.provider
                AND w.upstream_service IS NOT DISTINCT FROM n.upstream_service
                AND w.forwarded_at IS NOT DISTINCT FROM n.forwarded_at)
    LOOP
        PERFORM route_order_delta(pair.was_row, -1);
        PERFORM route_order_delta(pair.now_row, 1);
    END LOOP;
END
$$;

-- The row triggers, as before, but standing aside while a statement is written set-wise.
DROP TRIGGER order_aggregates ON orders;
CREATE TRIGGER order_aggregates
AFTER INSERT OR UPDATE OF status, forward_state, charge, refunded, provider, upstream_cost,
    created_at ON orders
FOR EACH ROW WHEN (current_setting('smm.orders_updated', true) IS DISTINCT FROM 'set-wise')
EXECUTE FUNCTION order_aggregates();

DROP TRIGGER order_events_record ON orders;
CREATE TRIGGER order_events_record
AFTER UPDATE OF status, forward_state ON orders
FOR EACH ROW
WHEN ((OLD.status IS DISTINCT FROM NEW.status
        OR OLD.forward_state IS DISTINCT FROM NEW.forward_state)
    AND current_setting('smm.orders_updated', true) IS DISTINCT FROM 'set-wise')
EXECUTE FUNCTION order_events_record();

DROP TRIGGER webhook_order_status ON orders;
CREATE TRIGGER webhook_order_status
AFTER UPDATE OF status, status_raw ON orders
FOR EACH ROW WHEN ((OLD.status IS DISTINCT FROM NEW.status
        OR OLD.status_raw IS DISTINCT FROM NEW.status_raw)
    AND current_setting('smm.orders_updated', true) IS DISTINCT FROM 'set-wise')
EXECUTE FUNCTION webhook_order_status();

DROP TRIGGER route_orders_update ON orders;
CREATE TRIGGER route_orders_update
AFTER UPDATE OF status, forward_state, provider, upstream_service, upstream_cost, forwarded_at,
    started_at, finished_at, charge, refunded ON orders
FOR EACH ROW
WHEN ((OLD.forward_state = 'sent' OR NEW.forward_state = 'sent') AND (
    OLD.status IS DISTINCT FROM NEW.status OR OLD.forward_state IS DISTINCT FROM NEW.forward_state
    OR OLD.provider IS DISTINCT FROM NEW.provider
    OR OLD.upstream_service IS DISTINCT FROM NEW.upstream_service
    OR OLD.upstream_cost IS DISTINCT FROM NEW.upstream_cost
    OR OLD.forwarded_at IS DISTINCT FROM NEW.forwarded_at
    OR OLD.started_at IS DISTINCT FROM NEW.started_at
    OR OLD.finished_at IS DISTINCT FROM NEW.finished_at
    OR OLD.charge IS DISTINCT FROM NEW.charge OR OLD.refunded IS DISTINCT FROM NEW.refunded)
    AND current_setting('smm.orders_updated', true) IS DISTINCT FROM 'set-wise')
EXECUTE FUNCTION route_orders_changed();
