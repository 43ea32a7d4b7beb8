-- +goose Up
CREATE SCHEMA IF NOT EXISTS webhooks;

-- endpoints are organizations' webhook subscriptions. Secrets are kept
-- sealed (AES-256-GCM under a key derived from the PII key): Tani must sign
-- with them, so they cannot be hashed. During a rotation's overlap the
-- previous secret signs too, until previous_expires_at.
CREATE TABLE webhooks.endpoints (
    id                  uuid PRIMARY KEY,
    organization_id     uuid NOT NULL,
    url                 text NOT NULL,
    description         text NOT NULL DEFAULT '',
    event_types         text[] NOT NULL,
    enabled             boolean NOT NULL DEFAULT true,
    secret_sealed       bytea NOT NULL,
    previous_sealed     bytea,
    previous_expires_at timestamptz,
    -- why a disabled endpoint is disabled: 'organization' (asked) or
    -- 'failing' (every attempt failed for the whole retry window).
    disabled_reason     text CHECK (disabled_reason IN ('organization', 'failing')),
    disabled_at         timestamptz,
    failing_since       timestamptz,   -- first failure since the last success; NULL while healthy
    last_success_at     timestamptz,
    last_failure_at     timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    CHECK (enabled = (disabled_reason IS NULL))
);
CREATE INDEX endpoints_organization ON webhooks.endpoints (organization_id, created_at);
CREATE INDEX endpoints_failing ON webhooks.endpoints (failing_since) WHERE failing_since IS NOT NULL OR disabled_reason = 'failing';

-- deliveries: one row per event and endpoint (the fan-out is idempotent on
-- that pair), scheduled in Postgres: pending until delivered, given up
-- (failed) after the retry window, or withheld when the consent it needed
-- is no longer live. A process works on a delivery under a lease
-- (lease_until), so another process takes it over only once the lease has
-- run out. body is the exact payload, the same on every attempt.
CREATE TABLE webhooks.deliveries (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    endpoint_id        uuid NOT NULL REFERENCES webhooks.endpoints ON DELETE CASCADE,
    event_id           uuid NOT NULL,
    event_type         text NOT NULL,
    organization_id    uuid NOT NULL,
    farmer_id          uuid,
    scope              text,
    body               text NOT NULL,
    state              text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'failed', 'withheld')),
    attempts           int NOT NULL DEFAULT 0,
    next_attempt_at    timestamptz NOT NULL DEFAULT now(),
    lease_until        timestamptz,
    window_start       timestamptz NOT NULL DEFAULT now(),  -- retries stop at window_start + the retry window (reset by a replay)
    event_published_at timestamptz,                         -- when the event reached EVENTS
    created_at         timestamptz NOT NULL DEFAULT now(),
    first_attempt_at   timestamptz,
    last_attempt_at    timestamptz,
    last_status        int,
    last_latency_ms    int,
    last_error         text,
    delivered_at       timestamptz,
    replays            int NOT NULL DEFAULT 0,
    UNIQUE (endpoint_id, event_id)
);
CREATE INDEX deliveries_due ON webhooks.deliveries (next_attempt_at) WHERE state = 'pending';
CREATE INDEX deliveries_endpoint ON webhooks.deliveries (endpoint_id, id DESC);

-- attempts: every HTTP attempt of a delivery, for the organization's audit.
CREATE TABLE webhooks.attempts (
    delivery_id bigint NOT NULL REFERENCES webhooks.deliveries ON DELETE CASCADE,
    n           int NOT NULL,
    at          timestamptz NOT NULL,
    status      int,              -- HTTP status; NULL when none came back
    error       text,             -- why it failed, as the organization may be told
    latency_ms  int NOT NULL,
    PRIMARY KEY (delivery_id, n)
);

-- Public read contract, for pages that show an organization its
-- endpoints' health (the portal's banner): no secrets.
CREATE VIEW webhooks.endpoint_status AS
SELECT id, organization_id, url, enabled, disabled_reason, disabled_at, failing_since, last_success_at, last_failure_at
FROM webhooks.endpoints;

-- +goose Down
DROP VIEW webhooks.endpoint_status;
DROP TABLE webhooks.attempts, webhooks.deliveries, webhooks.endpoints;
DROP SCHEMA webhooks;
