-- Orders that ended upstream without a signal that tells the refund they are owed (a Partial
-- without `remains`, a subscription that stopped without a post count, ...) wait here for a
-- person: the text says why. Cleared when an admin settles the order.
ALTER TABLE orders ADD COLUMN attention TEXT;
CREATE INDEX orders_attention ON orders (id) WHERE attention IS NOT NULL;
