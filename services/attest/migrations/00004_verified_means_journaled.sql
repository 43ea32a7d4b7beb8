-- +goose Up
-- A record's decision row is committed before its journal entry (the row
-- is the outbox; leaf_index stays NULL until the journal has the entry). A
-- record shown as verified must have a receipt, so until leaf_index is set
-- the public status says journaling: the rules verified it and the journal
-- entry is being written (or retried by the sweeper).
CREATE OR REPLACE VIEW attest.record_status AS
    SELECT record_id AS id,
           CASE WHEN status = 'verified' AND leaf_index IS NULL THEN 'journaling' ELSE status END AS status,
           CASE WHEN status = 'pending' THEN coalesce(reason, last_error)
                WHEN status = 'verified' AND leaf_index IS NULL THEN 'verified by the rules; not yet journaled, so no receipt yet'
                ELSE reason END AS reason,
           updated_at
    FROM attest.records;

-- +goose Down
CREATE OR REPLACE VIEW attest.record_status AS
    SELECT record_id AS id, status,
           CASE WHEN status = 'pending' THEN coalesce(reason, last_error) ELSE reason END AS reason,
           updated_at
    FROM attest.records;
