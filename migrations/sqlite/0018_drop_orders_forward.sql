-- Issue #16: `orders_forward (forward_state, forward_after, id)` serves no query that
-- `orders_forward_state (forward_state, id)` and the partial `orders_queued` do not serve as
-- well: the forwarder's claim reads the queue in id order (the partial index, or
-- `orders_forward_state`), the lease sweeps and counts test `forward_state` alone. Every order
-- changes `forward_state` three times (queued, sending, sent), and each change rewrote an entry
-- here too. Keep in step with ../postgres/0018_drop_orders_forward.sql.
DROP INDEX orders_forward;
