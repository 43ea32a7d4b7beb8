-- +goose Up
-- login_failures throttles field agents' password login per agent login
-- name and per client address (internal/throttle; the same shape as
-- identity.sign_in_failures, with mobile's own allowances): key is the
-- SHA-256 of the scope and the name as typed (lowercased, known or not)
-- or of the client address (an IPv6 /64), so that no typed text is
-- stored. An attempt counts as a failure when it starts and a successful
-- one takes its count back.
CREATE TABLE mobile.login_failures (
    key             bytea       PRIMARY KEY CHECK (length(key) = 32),
    scope           text        NOT NULL CHECK (scope IN ('account', 'address')),
    failures        int         NOT NULL DEFAULT 0 CHECK (failures >= 0),
    last_failure_at timestamptz,
    locked_until    timestamptz
);
CREATE INDEX login_failures_last ON mobile.login_failures (last_failure_at);

-- +goose Down
DROP TABLE mobile.login_failures;
