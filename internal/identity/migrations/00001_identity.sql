-- +goose Up
CREATE SCHEMA IF NOT EXISTS identity;

-- Organizations: the platform's operator, field organizations that employ
-- agents, and the banks and distributors that read farmers' data with
-- their consent. mobile-api's agents refer to them.
CREATE TABLE identity.organizations (
    id         uuid PRIMARY KEY,
    name       text NOT NULL UNIQUE,
    kind       text NOT NULL CHECK (kind IN ('operator', 'field', 'bank', 'distributor')),
    created_at timestamptz NOT NULL DEFAULT now()
);

-- API keys of banks and distributors. The secret is shown once and stored
-- only as its SHA-256 hash; a key is found by its id, which the token
-- carries in clear (tani_<id>_<secret>), then its secret compared in
-- constant time.
CREATE TABLE identity.api_keys (
    id              uuid PRIMARY KEY,
    organization_id uuid NOT NULL REFERENCES identity.organizations (id),
    name            text NOT NULL,
    secret_hash     bytea NOT NULL CHECK (length(secret_hash) = 32),
    -- scopes bound what the key may read even where a consent allows more
    -- (a key for the scoring engine need not see identities).
    scopes          text[] NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL,
    revoked_at      timestamptz,
    last_used_at    timestamptz
);
CREATE INDEX api_keys_organization ON identity.api_keys (organization_id);

-- +goose Down
DROP TABLE identity.api_keys, identity.organizations;
DROP SCHEMA identity;
