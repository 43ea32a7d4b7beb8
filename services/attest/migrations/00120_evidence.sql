-- +goose Up
-- A farmer accepting a loan offer proves it with a one-time code sent to
-- their phone with the offer's terms (checked by mobile-api before the
-- record is acknowledged): the acceptance is established by farmer_otp.
ALTER TABLE attest.provenance DROP CONSTRAINT provenance_method_check;
ALTER TABLE attest.provenance ADD CONSTRAINT provenance_method_check
    CHECK (method IN ('self_reported', 'gps_walk', 'second_agent_visit', 'supervisor_review', 'document', 'device_signature', 'farmer_otp'));

-- Public read contracts for services/lending (a bank's credit profile):
-- evidence is every record attest has decided (never one still pending),
-- with its status as the phone sees it (verified only once journaled, so
-- that a verified record always has a receipt), the journal leaf and why a
-- record was flagged or rejected.
CREATE VIEW attest.evidence AS
    SELECT record_id, type, farmer_id, plot_id, agent_id, captured_at,
           CASE WHEN status = 'verified' AND leaf_index IS NULL THEN 'journaling' ELSE status END AS status,
           reason, leaf_index, decided_at, decision, threshold_version
    FROM attest.records
    WHERE status <> 'pending';
-- evidence_provenance: how each attribute of a verified record was
-- established (method, verifier, when, until when).
CREATE VIEW attest.evidence_provenance AS
    SELECT record_id, attribute, method, verifier, verified_at, expires_at FROM attest.provenance;
-- farmer_regions: a farmer's home region (the registering agent's).
CREATE VIEW attest.farmer_regions AS
    SELECT farmer_id, region, agent_id FROM attest.farmers;

-- +goose Down
DROP VIEW attest.farmer_regions, attest.evidence_provenance, attest.evidence;
ALTER TABLE attest.provenance DROP CONSTRAINT provenance_method_check;
ALTER TABLE attest.provenance ADD CONSTRAINT provenance_method_check
    CHECK (method IN ('self_reported', 'gps_walk', 'second_agent_visit', 'supervisor_review', 'document', 'device_signature'));
