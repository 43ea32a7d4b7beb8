-- +goose Up
-- access_digests remembers, per farmer, the last access-log entry the
-- farmer was told about by SMS (the digest of who looked at their data):
-- a farmer is never told twice about the same access.
CREATE TABLE mobile.access_digests (
    farmer_id      uuid PRIMARY KEY,
    last_access_id bigint NOT NULL,
    accesses       bigint NOT NULL DEFAULT 0,  -- told about so far
    sent_at        timestamptz
);

-- access_digest_cursor: every access-log entry up to scanned_id has been
-- digested (or belongs to a farmer whose row above says so).
CREATE TABLE mobile.access_digest_cursor (
    one        boolean PRIMARY KEY DEFAULT true CHECK (one),
    scanned_id bigint NOT NULL
);

-- +goose Down
DROP TABLE mobile.access_digest_cursor, mobile.access_digests;
