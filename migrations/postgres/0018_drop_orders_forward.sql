-- Issue #16: `orders_forward (forward_state, forward_after, id)` serves no query that
-- `orders_forward_state (forward_state, id)` and the partial `orders_queued` do not serve as
-- well: the forwarder's claim reads the queue in id order (the partial index, or
-- `orders_forward_state`), the lease sweeps and counts test `forward_state` alone. On
-- PostgreSQL every update of an order is a new row version with an entry in each index of
-- `orders` (a change of `forward_state`, `status` or `next_poll_at` is never HOT), so each index
-- costs every placement, claim, attempt, outcome and status. Keep in step with
-- ../sqlite/0018_drop_orders_forward.sql.
DROP INDEX orders_forward;
