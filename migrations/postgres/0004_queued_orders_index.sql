-- The forwarder claims queued orders oldest first (ORDER BY id). With a million finished orders
-- and a few thousand queued ones, PostgreSQL's planner walked the primary key and filtered out
-- every finished order on each claim (430 ms per claim, found by bench/run.sh). A partial index
-- of just the queued orders keeps the claim an index walk of the queue itself, whatever the
-- statistics say. Keep in step with ../sqlite/0004_queued_orders_index.sql.
CREATE INDEX orders_queued ON orders (id) WHERE forward_state = 'queued';
