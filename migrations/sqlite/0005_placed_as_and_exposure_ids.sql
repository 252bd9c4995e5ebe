-- What an order was placed as (issue #12, 7): its routes in priority order and the service's
-- cancel/refill flags at placement, as JSON. NULL for orders placed before this migration.
ALTER TABLE orders ADD COLUMN placed_as TEXT;

-- Exposure ids (issue #12, 7) come from their own range, 1000000 and up: explicit service ids
-- (below 1000000, config validation says so) never collide with them. Ids already given keep
-- their service: nothing is re-pointed.
INSERT INTO sqlite_sequence (name, seq)
    SELECT 'service_ids', 999999
    WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'service_ids');
UPDATE sqlite_sequence SET seq = 999999 WHERE name = 'service_ids' AND seq < 999999;
