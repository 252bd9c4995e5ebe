-- Issue #16: the poll claim reads due orders in (next_poll_at, id) order, and the poll index
-- now holds both, so a claim stops after the orders it takes however many share a due time.
-- A PostgreSQL btree keeps equal keys in heap order, so for a claim ordered by (next_poll_at, id)
-- every due order of the provider tied on its due time was read and sorted before the first
-- 1,000 came out: a forwarder group's outcomes share one due time, and the bench's backlog (all
-- due at 0) cost 16-21 ms per claim against 2.5-7 ms with the id in the index (1,000 of 12,000
-- tied, one provider). SQLite's index ends with the rowid already (its 0020 is empty).
DROP INDEX orders_poll;
CREATE INDEX orders_poll ON orders (provider, next_poll_at, id) WHERE next_poll_at IS NOT NULL;
