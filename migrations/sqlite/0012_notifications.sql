-- Notifications (issue #14): customers' status webhooks and the reseller's alerts.
-- Keep in step with ../postgres/0012_notifications.sql.
--
-- A customer's webhook: where events go, the secret they are signed with (it must be read back
-- to sign, so it is stored as it is; it is never shown again after it is made), when deliveries
-- were paused because the receiver kept failing, and the balance under which the customer is
-- told their balance is low.
ALTER TABLE customers ADD COLUMN webhook_url TEXT;
ALTER TABLE customers ADD COLUMN webhook_secret TEXT;
ALTER TABLE customers ADD COLUMN webhook_paused_at BIGINT;
ALTER TABLE customers ADD COLUMN low_balance_threshold BIGINT;

-- The durable outbox. Rows are written by triggers, in the transaction of the change that
-- caused them, whatever wrote it: a change that commits has its event, one that rolls back has
-- none. `order.status` keeps a snapshot of what `status` showed at that moment. Events of one
-- order are delivered in id order (`order_id` is the ordering key).
CREATE TABLE webhook_events (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    customer_id     BIGINT  NOT NULL REFERENCES customers (id),
    kind            TEXT    NOT NULL
        CHECK (kind IN ('order.status', 'refill.status', 'refund.paid', 'balance.low')),
    order_id        BIGINT,
    refill_id       BIGINT,
    status          TEXT,
    status_raw      TEXT,
    prev_status     TEXT,
    prev_status_raw TEXT,
    quantity        BIGINT,
    charge          BIGINT,
    refunded        BIGINT,
    start_count     BIGINT,
    remains         BIGINT,
    extra           TEXT,
    amount          BIGINT,
    balance         BIGINT,
    threshold       BIGINT,
    created_at      BIGINT  NOT NULL,
    state           TEXT    NOT NULL DEFAULT 'pending'
        CHECK (state IN ('pending', 'delivered', 'discarded')),
    attempts        BIGINT  NOT NULL DEFAULT 0,
    -- Failed attempts since retries last started afresh (recorded, resumed, resent, a new
    -- URL), and when that was (NULL: when recorded): the backoff and the retry window.
    tries           BIGINT  NOT NULL DEFAULT 0,
    retry_from      BIGINT,
    next_attempt_at BIGINT  NOT NULL,
    claimed_until   BIGINT  NOT NULL DEFAULT 0,
    delivered_at    BIGINT,
    last_error      TEXT
);
CREATE INDEX webhook_events_pending ON webhook_events (id) WHERE state = 'pending';
CREATE INDEX webhook_events_order ON webhook_events (order_id, id)
    WHERE state = 'pending' AND order_id IS NOT NULL;
CREATE INDEX webhook_events_customer ON webhook_events (customer_id, id);

-- Every delivery attempt: the customer's delivery log.
CREATE TABLE webhook_deliveries (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id    BIGINT  NOT NULL REFERENCES webhook_events (id),
    customer_id BIGINT  NOT NULL REFERENCES customers (id),
    attempt     BIGINT  NOT NULL,
    at          BIGINT  NOT NULL,
    http_status BIGINT,
    latency_ms  BIGINT  NOT NULL,
    error       TEXT
);
CREATE INDEX webhook_deliveries_customer ON webhook_deliveries (customer_id, id);
CREATE INDEX webhook_deliveries_event ON webhook_deliveries (event_id, id);

CREATE TRIGGER webhook_order_status
AFTER UPDATE OF status, status_raw ON orders
WHEN (OLD.status IS NOT NEW.status OR OLD.status_raw IS NOT NEW.status_raw)
    AND (SELECT webhook_url FROM customers WHERE id = NEW.customer_id) IS NOT NULL
BEGIN
    INSERT INTO webhook_events (customer_id, kind, order_id, status, status_raw, prev_status,
        prev_status_raw, quantity, charge, refunded, start_count, remains, extra, created_at,
        next_attempt_at)
    VALUES (NEW.customer_id, 'order.status', NEW.id, NEW.status, NEW.status_raw, OLD.status,
        OLD.status_raw, NEW.quantity, NEW.charge, NEW.refunded, NEW.start_count, NEW.remains,
        NEW.extra, NEW.updated_at, NEW.updated_at);
END;

CREATE TRIGGER webhook_refill_status
AFTER UPDATE OF status, status_raw ON refills
WHEN (OLD.status IS NOT NEW.status OR OLD.status_raw IS NOT NEW.status_raw)
    AND (SELECT webhook_url FROM customers WHERE id = NEW.customer_id) IS NOT NULL
BEGIN
    INSERT INTO webhook_events (customer_id, kind, order_id, refill_id, status, status_raw,
        prev_status, prev_status_raw, created_at, next_attempt_at)
    VALUES (NEW.customer_id, 'refill.status', NEW.order_id, NEW.id, NEW.status, NEW.status_raw,
        OLD.status, OLD.status_raw, NEW.updated_at, NEW.updated_at);
END;

-- A refund paid, and a balance that crossed the customer's threshold downwards (told once, by
-- whatever posting crossed it), in this order when one posting does both.
CREATE TRIGGER webhook_ledger
AFTER INSERT ON ledger
WHEN (SELECT webhook_url FROM customers WHERE id = NEW.customer_id) IS NOT NULL
BEGIN
    INSERT INTO webhook_events (customer_id, kind, order_id, amount, balance, created_at,
        next_attempt_at)
    SELECT NEW.customer_id, 'refund.paid', NEW.order_id, NEW.amount, NEW.balance_after,
        NEW.created_at, NEW.created_at
    WHERE NEW.kind = 'refund';
    INSERT INTO webhook_events (customer_id, kind, amount, balance, threshold, created_at,
        next_attempt_at)
    SELECT NEW.customer_id, 'balance.low', NEW.amount, NEW.balance_after,
        low_balance_threshold, NEW.created_at, NEW.created_at
    FROM customers WHERE id = NEW.customer_id AND low_balance_threshold IS NOT NULL
        AND NEW.balance_after < low_balance_threshold
        AND NEW.balance_after - NEW.amount >= low_balance_threshold;
END;

-- The reseller's alerts. A condition is one row; the statement that changes `active` is the
-- one (on any instance) that sends the alert, so a condition alerts once when it starts and
-- once when it clears however many instances watch it.
CREATE TABLE alert_conditions (
    key           TEXT    PRIMARY KEY,
    active        BIGINT  NOT NULL,
    since         BIGINT  NOT NULL,
    changed_at    BIGINT  NOT NULL,
    notified_at   BIGINT,
    detail        TEXT
);

-- The alerts to send, one row per channel, written with the change that caused them.
CREATE TABLE alert_outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    channel         TEXT    NOT NULL,
    key             TEXT    NOT NULL,
    state           TEXT    NOT NULL CHECK (state IN ('started', 'cleared', 'event')),
    title           TEXT    NOT NULL,
    lines           TEXT    NOT NULL,
    created_at      BIGINT  NOT NULL,
    attempts        BIGINT  NOT NULL DEFAULT 0,
    next_attempt_at BIGINT  NOT NULL,
    claimed_until   BIGINT  NOT NULL DEFAULT 0,
    delivered_at    BIGINT,
    gave_up_at      BIGINT,
    last_error      TEXT
);
CREATE INDEX alert_outbox_pending ON alert_outbox (id)
    WHERE delivered_at IS NULL AND gave_up_at IS NULL;
