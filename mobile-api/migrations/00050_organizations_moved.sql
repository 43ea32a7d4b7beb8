-- +goose Up
-- Organizations moved to the identity schema (internal/identity), which
-- every service authenticates banks and distributors with; agents keep
-- referring to them there. identity's migrations run before mobile-api's.
INSERT INTO identity.organizations (id, name, kind, created_at)
SELECT id, name, kind, created_at FROM mobile.organizations
ON CONFLICT (id) DO NOTHING;
ALTER TABLE mobile.agents DROP CONSTRAINT agents_organization_id_fkey;
ALTER TABLE mobile.agents ADD CONSTRAINT agents_organization_id_fkey
    FOREIGN KEY (organization_id) REFERENCES identity.organizations (id);
DROP TABLE mobile.organizations;

-- +goose Down
CREATE TABLE mobile.organizations (
    id         uuid PRIMARY KEY,
    name       text NOT NULL UNIQUE,
    kind       text NOT NULL CHECK (kind IN ('operator', 'field', 'bank', 'distributor')),
    created_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO mobile.organizations SELECT id, name, kind, created_at FROM identity.organizations;
ALTER TABLE mobile.agents DROP CONSTRAINT agents_organization_id_fkey;
ALTER TABLE mobile.agents ADD CONSTRAINT agents_organization_id_fkey
    FOREIGN KEY (organization_id) REFERENCES mobile.organizations (id);
