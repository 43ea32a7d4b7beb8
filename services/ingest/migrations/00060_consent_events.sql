-- +goose Up
-- When the consent.expiring event of a consent was recorded
-- (internal/events outbox); NULL until then.
ALTER TABLE ingest.consents ADD COLUMN expiring_told_at timestamptz;
CREATE INDEX consents_expiring ON ingest.consents (expires_at) WHERE expiring_told_at IS NULL AND revoked_at IS NULL;

-- +goose Down
DROP INDEX ingest.consents_expiring;
ALTER TABLE ingest.consents DROP COLUMN expiring_told_at;
