-- Issue #16: a poll that moves an order on (a new status, its start or finish time) and nothing
-- else is most of what the reconciler writes, and 0013's trigger paid for it as for any change:
-- the old facts appended negated, then the new, each with the order's refills read again. For
-- that change alone one delta row is appended here, computed from OLD and NEW: the route, its
-- day, cost, charge and refund are the same, so only the status counts and the start and
-- completion times move, and the refills (which count where the order does) do not. Every
-- other change keeps 0013's path.

CREATE OR REPLACE FUNCTION route_orders_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    day BIGINT;
    old_done BIGINT;
    new_done BIGINT;
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.forward_state = 'sent' AND NEW.forward_state = 'sent'
        AND NEW.provider IS NOT NULL AND NEW.upstream_service IS NOT NULL
        AND NEW.forwarded_at IS NOT NULL
        AND OLD.provider IS NOT DISTINCT FROM NEW.provider
        AND OLD.upstream_service IS NOT DISTINCT FROM NEW.upstream_service
        AND OLD.forwarded_at IS NOT DISTINCT FROM NEW.forwarded_at
        AND OLD.upstream_cost IS NOT DISTINCT FROM NEW.upstream_cost
        AND OLD.charge IS NOT DISTINCT FROM NEW.charge
        AND OLD.refunded IS NOT DISTINCT FROM NEW.refunded THEN
        day := NEW.forwarded_at / 86400000;
        INSERT INTO route_day_deltas (day, provider, upstream_service, started, completed,
            partial, canceled, undelivered_ppm)
        VALUES (day, NEW.provider, NEW.upstream_service,
            (NEW.started_at IS NOT NULL)::INT - (OLD.started_at IS NOT NULL)::INT,
            (NEW.status IN ('Completed', 'Expired'))::INT
                - (OLD.status IN ('Completed', 'Expired'))::INT,
            (NEW.status = 'Partial')::INT - (OLD.status = 'Partial')::INT,
            (NEW.status IN ('Canceled', 'Refunded'))::INT
                - (OLD.status IN ('Canceled', 'Refunded'))::INT,
            CASE WHEN NEW.status = 'Partial' AND NEW.charge > 0
                 THEN div(NEW.refunded::numeric * 1000000, NEW.charge)::bigint ELSE 0 END
            - CASE WHEN OLD.status = 'Partial' AND OLD.charge > 0
                 THEN div(OLD.refunded::numeric * 1000000, OLD.charge)::bigint ELSE 0 END);
        IF OLD.started_at IS DISTINCT FROM NEW.started_at THEN
            IF OLD.started_at IS NOT NULL THEN
                INSERT INTO route_day_time_deltas
                VALUES (day, NEW.provider, NEW.upstream_service, 'start',
                    route_time_bucket(OLD.started_at - OLD.forwarded_at), -1);
            END IF;
            IF NEW.started_at IS NOT NULL THEN
                INSERT INTO route_day_time_deltas
                VALUES (day, NEW.provider, NEW.upstream_service, 'start',
                    route_time_bucket(NEW.started_at - NEW.forwarded_at), 1);
            END IF;
        END IF;
        old_done := CASE WHEN OLD.finished_at IS NOT NULL AND OLD.status IN ('Completed', 'Expired')
            THEN route_time_bucket(OLD.finished_at - OLD.forwarded_at) END;
        new_done := CASE WHEN NEW.finished_at IS NOT NULL AND NEW.status IN ('Completed', 'Expired')
            THEN route_time_bucket(NEW.finished_at - NEW.forwarded_at) END;
        IF old_done IS DISTINCT FROM new_done THEN
            IF old_done IS NOT NULL THEN
                INSERT INTO route_day_time_deltas
                VALUES (day, NEW.provider, NEW.upstream_service, 'complete', old_done, -1);
            END IF;
            IF new_done IS NOT NULL THEN
                INSERT INTO route_day_time_deltas
                VALUES (day, NEW.provider, NEW.upstream_service, 'complete', new_done, 1);
            END IF;
        END IF;
        RETURN NULL;
    END IF;
    IF TG_OP = 'UPDATE' THEN
        PERFORM route_order_delta(OLD, -1);
    END IF;
    PERFORM route_order_delta(NEW, 1);
    RETURN NULL;
END
$$;
