-- +goose Up
-- People of organizations: portal users of banks and distributors (roles
-- admin, staff) and the platform's named operators (roles operator,
-- reviewer). Passwords are bcrypt hashes; usernames are lowercase and
-- unique across Tani, so that signing in needs no organization.
CREATE TABLE identity.users (
    id              uuid PRIMARY KEY,
    organization_id uuid NOT NULL REFERENCES identity.organizations (id),
    username        text NOT NULL UNIQUE CHECK (username = lower(username)),
    name            text NOT NULL,
    role            text NOT NULL CHECK (role IN ('admin', 'staff', 'operator', 'reviewer')),
    password_hash   text NOT NULL,
    active          boolean NOT NULL DEFAULT true,
    created_at      timestamptz NOT NULL DEFAULT now(),
    -- who created the user: operator-token, or user:<id> of an admin or operator
    created_by      text NOT NULL
);
CREATE INDEX users_organization ON identity.users (organization_id);

-- Sessions of users: a browser's cookie (portal) or an operator's bearer
-- token. Only the SHA-256 of the session id is stored, so that a copy of
-- the database opens no session. A session ends at the first of: its
-- absolute expiry, idle_timeout without use, sign-out (ended_at), the
-- user's deactivation.
CREATE TABLE identity.sessions (
    id_hash      bytea PRIMARY KEY CHECK (length(id_hash) = 32),
    user_id      uuid NOT NULL REFERENCES identity.users (id),
    transport    text NOT NULL CHECK (transport IN ('cookie', 'bearer')),
    -- the synchronizer token every unsafe request of a cookie session
    -- must carry (form field csrf_token or header X-CSRF-Token); useless
    -- without the session id, which only the browser has.
    csrf_token   text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz NOT NULL DEFAULT now(),
    idle_timeout interval NOT NULL,
    expires_at   timestamptz NOT NULL,
    ended_at     timestamptz
);
CREATE INDEX sessions_user ON identity.sessions (user_id) WHERE ended_at IS NULL;

-- +goose Down
DROP TABLE identity.sessions, identity.users;
