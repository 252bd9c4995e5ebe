-- Issue #16: the reconciler claims due orders provider by provider, and with the poll index on
-- the due time alone a claim for one provider read past every other provider's due orders
-- (12 ms against 3 ms for 1,000 of 50,000 due over five providers, SQLite). Same name, so the
-- claim's index hint still holds.
DROP INDEX orders_poll;
CREATE INDEX orders_poll ON orders (provider, next_poll_at) WHERE next_poll_at IS NOT NULL;
