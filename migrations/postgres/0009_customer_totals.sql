-- Each customer's order count and spend (charges less refunds), kept by the one place every
-- balance change goes through (the store's ledger posting), so the console's customer list
-- reads them without scanning the orders. Filled here from the orders already placed.
-- Keep in step with ../sqlite/0009_customer_totals.sql.
ALTER TABLE customers ADD COLUMN orders_placed BIGINT NOT NULL DEFAULT 0;
ALTER TABLE customers ADD COLUMN spent BIGINT NOT NULL DEFAULT 0;
UPDATE customers SET
    orders_placed = (SELECT COUNT(*) FROM orders WHERE orders.customer_id = customers.id
                     AND orders.charge > 0),
    spent = (SELECT COALESCE(SUM(orders.charge - orders.refunded), 0) FROM orders
             WHERE orders.customer_id = customers.id);
