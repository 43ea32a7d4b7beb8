-- +goose Up
-- token_epoch revokes an agent's access tokens at once: every access token
-- carries the epoch it was issued in, and the agent API accepts it only
-- while the agent's epoch is the same. Reusing a refresh token (it was
-- copied) moves the epoch on.
ALTER TABLE mobile.agents ADD COLUMN token_epoch bigint NOT NULL DEFAULT 0;

-- +goose Down
ALTER TABLE mobile.agents DROP COLUMN token_epoch;
