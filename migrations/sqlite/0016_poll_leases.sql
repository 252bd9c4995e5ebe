-- Issue #16: a poll's lease in a narrow table of its own. The claim used to lease an order by
-- writing its next_poll_at, a second write of every polled order besides its status; on
-- PostgreSQL that write is a new version of the whole row with an entry in each of orders'
-- indexes (183 ms per 1,000 orders in the sweep). Keep in step with
-- ../postgres/0016_poll_leases.sql. An unexpired lease here hides an order from the claim; the
-- status applied or the poll deferred removes it, and an expired one is taken over by the next
-- claim.
-- No foreign key to orders: orders are never deleted (and the PostgreSQL check would lock each
-- order's row, a write to orders again).
CREATE TABLE poll_leases (
    order_id INTEGER PRIMARY KEY,
    expires_at INTEGER NOT NULL
);
