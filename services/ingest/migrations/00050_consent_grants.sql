-- +goose Up
-- The consent gate (internal/consent) finds a farmer's live consent for an
-- organization on every gated read: one index lookup.
CREATE INDEX consents_farmer_grantee ON ingest.consents (farmer_id, grantee_org_id, expires_at DESC);
DROP INDEX ingest.consents_farmer;

-- Public read contract: consents as captured from signed consent.granted
-- and consent.revoked records.
CREATE VIEW ingest.consent_grants AS
SELECT consent_id, farmer_id, grantee_org_id, scopes, expires_at, granted_record_id, granted_at,
       revoked_at, revoked_record_id, revoke_reason
FROM ingest.consents;

-- +goose Down
DROP VIEW ingest.consent_grants;
CREATE INDEX consents_farmer ON ingest.consents (farmer_id);
DROP INDEX ingest.consents_farmer_grantee;
