-- +goose Up
-- records_status indexed every record by (status, updated_at) for one
-- reader, the gauge counting pending records. Every insert and every
-- update of a record (journaled, announced, reviewed) paid for an entry in
-- it; pending records are the rare ones, so index only those.
DROP INDEX attest.records_status;
CREATE INDEX records_pending ON attest.records (record_id) WHERE status = 'pending';

-- Review decisions not journaled yet are looked up on every sweep and
-- after every review; without an index that read every event ever audited.
CREATE INDEX review_events_unjournaled ON attest.review_events (id) WHERE revision IS NOT NULL AND leaf_index IS NULL;

-- +goose Down
DROP INDEX attest.review_events_unjournaled;
DROP INDEX attest.records_pending;
CREATE INDEX records_status ON attest.records (status, updated_at);
