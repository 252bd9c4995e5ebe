-- What an order was placed as (issue #12, 7): its routes in priority order and the service's
-- cancel/refill flags at placement, as JSON. NULL for orders placed before this migration.
ALTER TABLE orders ADD COLUMN placed_as TEXT;

-- Exposure ids (issue #12, 7) come from their own range, 1000000 and up: explicit service ids
-- (below 1000000, config validation says so) never collide with them. Ids already given keep
-- their service: nothing is re-pointed.
SELECT setval(
    pg_get_serial_sequence('service_ids', 'id'),
    GREATEST(999999, (SELECT COALESCE(MAX(id), 0) FROM service_ids))
);
