-- +goose Up
-- A farmer's national ID and phone must not rest in clear: the raw record
-- (what the device signed) is kept sealed with the PII key (AES-256-GCM),
-- and the queryable payload is the protected form (keyed hashes instead of
-- the ID and phone). Tani had no deployment before this change; rows a
-- development database stored earlier are not sealed: reset it (make clean).
ALTER TABLE ingest.submissions RENAME COLUMN canonical TO sealed_record;

-- +goose Down
ALTER TABLE ingest.submissions RENAME COLUMN sealed_record TO canonical;
