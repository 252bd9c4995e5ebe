-- The console's people (issue #13): admin users with an argon2id password hash and a role, and
-- their sessions, kept in the database so a session works on every instance. A session row
-- holds the SHA-256 of the cookie's token (never the token) and the CSRF token of its forms.
-- `failed_logins` counts failures since the last success or lock; reaching the limit sets
-- `locked_until`. Keep in step with ../postgres/0008_admin_users.sql.
CREATE TABLE admin_users (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    username       TEXT    NOT NULL UNIQUE,
    password_hash  TEXT    NOT NULL,
    role           TEXT    NOT NULL CHECK (role IN ('owner', 'operator', 'viewer')),
    failed_logins  INTEGER NOT NULL DEFAULT 0,
    locked_until   INTEGER,
    last_login_at  INTEGER,
    created_at     INTEGER NOT NULL
);

CREATE TABLE admin_sessions (
    token_hash  TEXT    PRIMARY KEY,
    user_id     INTEGER NOT NULL REFERENCES admin_users (id) ON DELETE CASCADE,
    csrf_token  TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
);
CREATE INDEX admin_sessions_expiry ON admin_sessions (expires_at);

-- The overview reads the orders of the last 30 days by placement time.
CREATE INDEX orders_created ON orders (created_at);
