-- +goose Up
-- Who may capture data: organizations employ agents; agents enroll devices
-- whose keys sign records; agents are assigned the farmers they may serve.
CREATE TABLE mobile.organizations (
    id         uuid PRIMARY KEY,
    name       text NOT NULL UNIQUE,
    kind       text NOT NULL CHECK (kind IN ('operator', 'field', 'bank', 'distributor')),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE mobile.agents (
    id              uuid PRIMARY KEY,
    organization_id uuid NOT NULL REFERENCES mobile.organizations (id),
    username        text NOT NULL UNIQUE,
    password_hash   text NOT NULL,
    name            text NOT NULL,
    region          text NOT NULL,
    active          boolean NOT NULL DEFAULT true,
    created_at      timestamptz NOT NULL DEFAULT now()
);

-- Refresh tokens are single-use and stored only as SHA-256 hashes.
CREATE TABLE mobile.refresh_tokens (
    token_hash bytea PRIMARY KEY,
    agent_id   uuid NOT NULL REFERENCES mobile.agents (id),
    expires_at timestamptz NOT NULL,
    used_at    timestamptz
);
CREATE INDEX refresh_tokens_agent ON mobile.refresh_tokens (agent_id);

CREATE TABLE mobile.devices (
    id             uuid PRIMARY KEY,
    agent_id       uuid NOT NULL REFERENCES mobile.agents (id),
    public_key     bytea NOT NULL UNIQUE CHECK (length(public_key) = 32),
    name           text NOT NULL,
    enrolled_at    timestamptz NOT NULL DEFAULT now(),
    revoked_at     timestamptz,
    revoked_reason text
);
CREATE INDEX devices_agent ON mobile.devices (agent_id);

CREATE TABLE mobile.assignments (
    farmer_id   uuid NOT NULL,
    agent_id    uuid NOT NULL REFERENCES mobile.agents (id),
    assigned_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (farmer_id, agent_id)
);
CREATE INDEX assignments_agent ON mobile.assignments (agent_id);

-- One-time codes a farmer reads back to prove consent; stored hashed.
CREATE TABLE mobile.otp_challenges (
    id         uuid PRIMARY KEY,
    farmer_id  uuid NOT NULL,
    agent_id   uuid NOT NULL REFERENCES mobile.agents (id),
    code_hash  bytea NOT NULL,
    expires_at timestamptz NOT NULL,
    used_by    uuid,          -- the consent.granted record that used it
    created_at timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE mobile.received ADD COLUMN agent_id uuid;
ALTER TABLE mobile.received ADD COLUMN device_id uuid;

-- The public read contract for ingest and attest: which key signs for
-- which agent, and whether it was revoked.
CREATE VIEW mobile.device_keys AS
    SELECT d.id AS device_id, d.agent_id, a.organization_id, a.region, d.public_key, d.revoked_at
    FROM mobile.devices d JOIN mobile.agents a ON a.id = d.agent_id;

-- +goose Down
DROP VIEW mobile.device_keys;
ALTER TABLE mobile.received DROP COLUMN device_id;
ALTER TABLE mobile.received DROP COLUMN agent_id;
DROP TABLE mobile.otp_challenges, mobile.assignments, mobile.devices, mobile.refresh_tokens, mobile.agents, mobile.organizations;
