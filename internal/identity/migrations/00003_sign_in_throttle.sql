-- +goose Up
-- sign_in_failures throttles password sign-in (portal and operators) per
-- account and per client address, in the database so that every process
-- enforces the same count. key is the SHA-256 of the scope and the
-- username as typed (lowercased: known or not, so that the answer never
-- tells which usernames exist) or of the client address (an IPv6 /64), so
-- that no typed text is stored. An attempt counts as a failure when it
-- starts (concurrent guesses cannot slip past the count) and a successful
-- one takes its count back. Past the allowance, each failure locks the key
-- for twice as long as the last, up to a maximum; a key forgets its
-- failures after a day without one.
CREATE TABLE identity.sign_in_failures (
    key             bytea       PRIMARY KEY CHECK (length(key) = 32),
    scope           text        NOT NULL CHECK (scope IN ('account', 'address')),
    failures        int         NOT NULL DEFAULT 0 CHECK (failures >= 0),
    last_failure_at timestamptz,
    locked_until    timestamptz
);
CREATE INDEX sign_in_failures_last ON identity.sign_in_failures (last_failure_at);

-- +goose Down
DROP TABLE identity.sign_in_failures;
