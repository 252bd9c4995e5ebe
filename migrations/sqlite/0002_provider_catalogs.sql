-- Each provider's last good `services` reply, so a restarted gateway serves prices before its
-- first sync. Keep in step with ../postgres/0002_provider_catalogs.sql.
CREATE TABLE provider_catalogs (
    provider  TEXT    PRIMARY KEY,
    services  TEXT    NOT NULL,
    synced_at INTEGER NOT NULL
);
