-- smm-gateway schema, SQLite flavour. Money is INTEGER units of 0.00001; times are INTEGER
-- milliseconds since the Unix epoch (UTC). Keep in step with ../postgres/0001_initial.sql.

CREATE TABLE customers (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT    NOT NULL,
    status      TEXT    NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended')),
    currency    TEXT    NOT NULL,
    key_hash    TEXT    NOT NULL UNIQUE,
    key_prefix  TEXT    NOT NULL,
    balance     INTEGER NOT NULL DEFAULT 0 CHECK (balance >= 0),
    discount    TEXT,
    created_at  INTEGER NOT NULL
);

CREATE TABLE customer_rates (
    customer_id INTEGER NOT NULL REFERENCES customers (id),
    service_id  INTEGER NOT NULL,
    rate        TEXT    NOT NULL,
    PRIMARY KEY (customer_id, service_id)
);

CREATE TABLE orders (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    customer_id       INTEGER NOT NULL REFERENCES customers (id),
    service_id        INTEGER NOT NULL,
    service_type      TEXT    NOT NULL,
    params            TEXT    NOT NULL,
    link              TEXT,
    quantity          INTEGER,
    units             INTEGER NOT NULL CHECK (units >= 0),
    charge            INTEGER NOT NULL CHECK (charge >= 0),
    refunded          INTEGER NOT NULL DEFAULT 0 CHECK (refunded >= 0 AND refunded <= charge),
    status            TEXT    NOT NULL DEFAULT 'Pending',
    status_raw        TEXT,
    start_count       INTEGER,
    remains           INTEGER,
    extra             TEXT,
    provider          TEXT,
    upstream_service  TEXT,
    upstream_order_id TEXT,
    upstream_cost     TEXT,
    forward_state     TEXT    NOT NULL DEFAULT 'queued'
        CHECK (forward_state IN ('queued', 'sending', 'sent', 'ambiguous', 'rejected')),
    forward_attempts  INTEGER NOT NULL DEFAULT 0,
    forward_error     TEXT,
    forward_after     INTEGER NOT NULL DEFAULT 0,
    claimed_by        TEXT,
    claimed_at        INTEGER,
    forwarded_at      INTEGER,
    next_poll_at      INTEGER,
    idempotency_key   TEXT,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL,
    CHECK (upstream_order_id IS NULL OR provider IS NOT NULL)
);

-- Upstream ids are unique per provider only: everything upstream is keyed by both.
CREATE UNIQUE INDEX orders_upstream ON orders (provider, upstream_order_id)
    WHERE upstream_order_id IS NOT NULL;
CREATE UNIQUE INDEX orders_idempotency ON orders (customer_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX orders_customer ON orders (customer_id, id);
CREATE INDEX orders_forward ON orders (forward_state, forward_after, id);
CREATE INDEX orders_poll ON orders (next_poll_at) WHERE next_poll_at IS NOT NULL;

CREATE TABLE ledger (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    customer_id   INTEGER NOT NULL REFERENCES customers (id),
    kind          TEXT    NOT NULL CHECK (kind IN ('deposit', 'charge', 'refund', 'adjustment')),
    amount        INTEGER NOT NULL,
    balance_after INTEGER NOT NULL CHECK (balance_after >= 0),
    order_id      INTEGER REFERENCES orders (id),
    reason        TEXT    NOT NULL,
    actor         TEXT    NOT NULL,
    created_at    INTEGER NOT NULL,
    CHECK ((kind = 'charge' AND amount < 0) OR (kind IN ('deposit', 'refund') AND amount > 0)
           OR (kind = 'adjustment' AND amount <> 0)),
    CHECK (kind NOT IN ('charge', 'refund') OR order_id IS NOT NULL)
);

-- The database, not only the code, guarantees one charge and at most one refund per order.
CREATE UNIQUE INDEX ledger_one_charge ON ledger (order_id) WHERE kind = 'charge';
CREATE UNIQUE INDEX ledger_one_refund ON ledger (order_id) WHERE kind = 'refund';
CREATE INDEX ledger_customer ON ledger (customer_id, id);

CREATE TABLE forward_attempts (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    order_id         INTEGER NOT NULL REFERENCES orders (id),
    provider         TEXT    NOT NULL,
    upstream_service TEXT    NOT NULL,
    outcome          TEXT    NOT NULL DEFAULT 'pending',
    detail           TEXT,
    started_at       INTEGER NOT NULL,
    finished_at      INTEGER
);
CREATE INDEX forward_attempts_order ON forward_attempts (order_id, id);

CREATE TABLE refills (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    order_id           INTEGER NOT NULL REFERENCES orders (id),
    customer_id        INTEGER NOT NULL REFERENCES customers (id),
    provider           TEXT,
    upstream_refill_id TEXT,
    status             TEXT    NOT NULL DEFAULT 'Pending',
    status_raw         TEXT,
    forward_state      TEXT    NOT NULL DEFAULT 'queued'
        CHECK (forward_state IN ('queued', 'sending', 'sent', 'ambiguous', 'rejected')),
    error              TEXT,
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL
);
CREATE UNIQUE INDEX refills_upstream ON refills (provider, upstream_refill_id)
    WHERE upstream_refill_id IS NOT NULL;
CREATE INDEX refills_customer ON refills (customer_id, id);
CREATE INDEX refills_state ON refills (forward_state, id);

CREATE TABLE cancel_requests (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    order_id      INTEGER NOT NULL UNIQUE REFERENCES orders (id),
    customer_id   INTEGER NOT NULL REFERENCES customers (id),
    forward_state TEXT    NOT NULL DEFAULT 'queued'
        CHECK (forward_state IN ('queued', 'sending', 'sent', 'ambiguous', 'rejected')),
    error         TEXT,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);
CREATE INDEX cancel_requests_state ON cancel_requests (forward_state, id);

-- A (provider, upstream service) pair gets its local id once and keeps it.
CREATE TABLE service_ids (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    provider         TEXT NOT NULL,
    upstream_service TEXT NOT NULL,
    UNIQUE (provider, upstream_service)
);

CREATE TABLE audit_log (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    actor      TEXT    NOT NULL,
    action     TEXT    NOT NULL,
    target     TEXT    NOT NULL,
    before     TEXT,
    after      TEXT,
    created_at INTEGER NOT NULL
);

-- Append-only: the database refuses to change or delete audit rows.
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
