-- +goose Up
-- The credential a review decision was made with: user:<id> of a named
-- operator or reviewer (identity.users). Decisions from before named
-- users have none (their actor is the name given in the request).
ALTER TABLE attest.review_events ADD COLUMN credential text;

-- +goose Down
ALTER TABLE attest.review_events DROP COLUMN credential;
