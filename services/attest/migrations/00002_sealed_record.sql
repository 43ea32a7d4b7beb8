-- +goose Up
-- The record attest decided is kept sealed with the PII key (it holds the
-- farmer's national ID and phone as the device signed them); the journal
-- receives only its protected form (record.Protected).
ALTER TABLE attest.records RENAME COLUMN canonical TO sealed_record;

-- +goose Down
ALTER TABLE attest.records RENAME COLUMN sealed_record TO canonical;
