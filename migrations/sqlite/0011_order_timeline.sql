-- An order's timeline on the console's order page (issue #13): every change of its status or
-- forwarding state, recorded by a trigger whatever writes it, and indexes to find its ledger
-- rows (charge, refund) and refills by order. Keep in step with
-- ../postgres/0011_order_timeline.sql.
CREATE TABLE order_events (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    order_id      INTEGER NOT NULL REFERENCES orders (id),
    at            INTEGER NOT NULL,
    status        TEXT    NOT NULL,
    forward_state TEXT    NOT NULL
);
CREATE INDEX order_events_order ON order_events (order_id, id);

CREATE TRIGGER order_events_record
AFTER UPDATE OF status, forward_state ON orders
WHEN OLD.status IS NOT NEW.status OR OLD.forward_state IS NOT NEW.forward_state
BEGIN
    INSERT INTO order_events (order_id, at, status, forward_state)
    VALUES (NEW.id, NEW.updated_at, NEW.status, NEW.forward_state);
END;

CREATE INDEX ledger_order ON ledger (order_id, id) WHERE order_id IS NOT NULL;
CREATE INDEX refills_order ON refills (order_id, id);
