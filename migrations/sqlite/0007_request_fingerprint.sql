-- What an idempotent `add` asked for: a hash of the service id and the canonical order
-- parameters (issue #12, defect 11). A retry with the same key must ask for the same thing;
-- the same key with other parameters is refused. NULL for orders placed before this column
-- (their retries are answered with the first order, as before). Keep in step with
-- ../postgres/0007_request_fingerprint.sql.
ALTER TABLE orders ADD COLUMN request_fingerprint TEXT;
