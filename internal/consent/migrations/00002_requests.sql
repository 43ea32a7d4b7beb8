-- +goose Up
-- requests are banks' and distributors' requests for a farmer's consent.
-- Its id is the consent id the farmer answers with: a signed
-- consent.granted (authorised) or consent.refused (rejected) record whose
-- consent_id is the request's id. Unanswered by answer_by, it has expired.
CREATE TABLE consent.requests (
    id              uuid PRIMARY KEY,
    organization_id uuid NOT NULL REFERENCES identity.organizations (id),
    farmer_id       uuid NOT NULL,
    scopes          text[] NOT NULL CHECK (cardinality(scopes) > 0),
    duration_days   int NOT NULL CHECK (duration_days BETWEEN 1 AND 180),
    purpose         text NOT NULL CHECK (length(purpose) BETWEEN 1 AND 500),
    requested_by    text NOT NULL,       -- key:<id> or user:<id>
    request_id      text NOT NULL,       -- the HTTP request's id
    requested_at    timestamptz NOT NULL DEFAULT now(),
    answer_by       timestamptz NOT NULL
);
CREATE INDEX requests_organization ON consent.requests (organization_id, requested_at DESC, id);
CREATE INDEX requests_farmer ON consent.requests (farmer_id, organization_id);
CREATE INDEX requests_answer_by ON consent.requests (answer_by);

-- events are the consent state changes the consent service itself
-- journals (the others are signed records journaled by attest:
-- consent.granted, consent.refused, consent.revoked). Journal record id:
-- consent_id; kind: consent.<event>; payload: exactly these bytes.
CREATE TABLE consent.events (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    consent_id  uuid NOT NULL,
    event       text NOT NULL CHECK (event IN ('requested', 'request_expired', 'expired')),
    revision    int NOT NULL CHECK (revision > 0),
    payload     bytea NOT NULL,
    signature_ref text NOT NULL,
    occurred_at timestamptz NOT NULL,
    leaf_index  bigint,
    UNIQUE (consent_id, event),
    UNIQUE (consent_id, revision)
);
CREATE INDEX events_unjournaled ON consent.events (id) WHERE leaf_index IS NULL;

-- Public read contract: requests still awaiting the farmer's answer, for
-- the agent's phone (mobile-api), with the requesting organization.
CREATE VIEW consent.open_requests AS
SELECT r.id, r.farmer_id, r.organization_id, o.name AS organization_name, o.kind AS organization_kind,
       r.scopes, r.duration_days, r.purpose, r.requested_at, r.answer_by
FROM consent.requests r
JOIN identity.organizations o ON o.id = r.organization_id
WHERE r.answer_by > now()
  AND NOT EXISTS (SELECT 1 FROM ingest.consent_grants g WHERE g.consent_id = r.id)
  AND NOT EXISTS (SELECT 1 FROM ingest.consent_refusals f WHERE f.consent_id = r.id);

-- Public read contract: the terms of every request, which mobile-api
-- holds the farmer's signed answer to (a consent.granted may not grant
-- more, or longer, than asked; a consent.refused must answer a request).
CREATE VIEW consent.request_terms AS
SELECT id, organization_id, farmer_id, scopes, duration_days, answer_by FROM consent.requests;

-- Public read contract: every access to farmers' data, with the
-- organization's name (mobile-api shows it to the farmer and texts a
-- digest).
CREATE VIEW consent.access_entries AS
SELECT l.id, l.at, l.farmer_id, l.organization_id, o.name AS organization_name, o.kind AS organization_kind,
       l.credential, l.scopes, l.purpose, l.request_id, l.allowed, l.reason, l.consent_id, l.granted_record_id
FROM consent.access_log l
JOIN identity.organizations o ON o.id = l.organization_id;

-- +goose Down
DROP VIEW consent.access_entries, consent.request_terms, consent.open_requests;
DROP TABLE consent.events, consent.requests;
