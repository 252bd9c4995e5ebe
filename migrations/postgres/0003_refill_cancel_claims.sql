-- Refills and cancel requests are claimed like orders: the worker that moves one from `queued`
-- to `sending` and when, so that a claim whose worker died (a crash, a lost process) is found
-- after a lease and parked as `ambiguous` instead of being sent twice. Keep in step with
-- ../sqlite/0003_refill_cancel_claims.sql.
ALTER TABLE refills ADD COLUMN claimed_by TEXT;
ALTER TABLE refills ADD COLUMN claimed_at BIGINT;
ALTER TABLE cancel_requests ADD COLUMN claimed_by TEXT;
ALTER TABLE cancel_requests ADD COLUMN claimed_at BIGINT;
