-- Issue #16: PostgreSQL drops order_events' foreign key to orders here (see
-- ../postgres/0017_order_events_unchecked.sql: the rows come from one trigger on orders, and
-- orders are never deleted). SQLite keeps it: its check is one probe of the orders B-tree, and
-- dropping it would mean rebuilding the table.
SELECT 1;
