-- +goose Up
-- media are photos and documents received through resumable uploads, kept
-- once per content under their SHA-256. A row exists only once the bytes
-- are durably stored and their hash verified.
CREATE TABLE mobile.media (
    sha256       text PRIMARY KEY CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    size         bigint      NOT NULL CHECK (size > 0),
    content_type text        NOT NULL,
    agent_id     uuid        NOT NULL, -- who uploaded it first
    stored_at    timestamptz NOT NULL DEFAULT now()
);

-- received_media lists the media each received record references by hash.
-- A record is incomplete while any of them has no mobile.media row; it is
-- never refused for it, since photos travel after the records on 2G.
CREATE TABLE mobile.received_media (
    record_id uuid NOT NULL REFERENCES mobile.received (id),
    sha256    text NOT NULL,
    PRIMARY KEY (record_id, sha256)
);
CREATE INDEX received_media_sha256 ON mobile.received_media (sha256);

-- +goose Down
DROP TABLE mobile.received_media, mobile.media;
