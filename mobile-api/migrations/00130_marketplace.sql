-- +goose Up
-- One-time codes serve two purposes now: a consent (consent.granted) and
-- the receipt of goods (delivery.confirmed). A code sent for one cannot be
-- used for the other, so a farmer who agreed to share data has not
-- thereby confirmed a delivery.
ALTER TABLE mobile.otp_challenges ADD COLUMN purpose text NOT NULL DEFAULT 'consent' CHECK (purpose IN ('consent', 'delivery'));

-- Public read contracts for attest's delivery rules: which codes were sent
-- to which farmer for what, and which record used each (never the code);
-- which agents serve which farmer.
CREATE VIEW mobile.otp_uses AS
SELECT id AS challenge_id, farmer_id, agent_id, purpose, used_by, expires_at FROM mobile.otp_challenges;
CREATE VIEW mobile.farmer_agents AS SELECT farmer_id, agent_id FROM mobile.assignments;

-- +goose Down
DROP VIEW mobile.farmer_agents;
DROP VIEW mobile.otp_uses;
ALTER TABLE mobile.otp_challenges DROP COLUMN purpose;
