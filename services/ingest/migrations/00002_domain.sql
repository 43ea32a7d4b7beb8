-- +goose Up
-- Normalized current state of the farm records. History stays in the
-- append-only submissions table; these rows follow the newest capture.
ALTER TABLE ingest.submissions ADD COLUMN device_id uuid;
ALTER TABLE ingest.submissions ADD COLUMN agent_id uuid;

-- change_seq orders every change for offline sync-down cursors.
CREATE SEQUENCE ingest.change_seq;

CREATE TABLE ingest.farmers (
    farmer_id        uuid PRIMARY KEY,
    name             text        NOT NULL,
    national_id_hmac bytea       NOT NULL,   -- keyed hash only: never the ID itself
    phone_enc        bytea       NOT NULL,   -- AES-256-GCM
    phone_hmac       bytea       NOT NULL,
    village          text        NOT NULL,
    gender           text        NOT NULL,
    birth_year       int         NOT NULL,
    photo_hash       text,
    agent_id         uuid        NOT NULL,
    record_id        uuid        NOT NULL,   -- the record this state comes from
    captured_at      timestamptz NOT NULL,
    revisions        int         NOT NULL DEFAULT 1,
    change_seq       bigint      NOT NULL DEFAULT nextval('ingest.change_seq'),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX farmers_national_id ON ingest.farmers (national_id_hmac);
CREATE INDEX farmers_phone ON ingest.farmers (phone_hmac);
CREATE INDEX farmers_change ON ingest.farmers (change_seq);

CREATE TABLE ingest.plots (
    plot_id          uuid PRIMARY KEY,
    farmer_id        uuid        NOT NULL,
    boundary         geography(Polygon, 4326) NOT NULL,
    area_ha          double precision NOT NULL,  -- computed by PostGIS, not declared
    declared_area_ha double precision NOT NULL,
    tenure           text        NOT NULL,
    gps_accuracy_m   double precision NOT NULL,
    mock_location    boolean     NOT NULL,
    agent_id         uuid        NOT NULL,
    record_id        uuid        NOT NULL,
    captured_at      timestamptz NOT NULL,
    revisions        int         NOT NULL DEFAULT 1,
    change_seq       bigint      NOT NULL DEFAULT nextval('ingest.change_seq'),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX plots_boundary ON ingest.plots USING gist (boundary);
CREATE INDEX plots_farmer ON ingest.plots (farmer_id);
CREATE INDEX plots_change ON ingest.plots (change_seq);

-- Records arrive in any order from offline phones, so events reference
-- plots by id without a foreign key; attest checks that they exist.
CREATE TABLE ingest.crop_cycles (
    record_id           uuid PRIMARY KEY,
    farmer_id           uuid NOT NULL,
    plot_id             uuid NOT NULL,
    crop                text NOT NULL,
    variety             text,
    planted_on          date NOT NULL,
    expected_harvest_on date NOT NULL
);
CREATE INDEX crop_cycles_plot ON ingest.crop_cycles (plot_id);

CREATE TABLE ingest.input_applications (
    record_id  uuid PRIMARY KEY,
    farmer_id  uuid NOT NULL,
    plot_id    uuid NOT NULL,
    product    text NOT NULL,
    category   text NOT NULL,
    quantity   double precision NOT NULL,  -- in unit, normalized to kg, ha or l
    unit       text NOT NULL CHECK (unit IN ('kg', 'ha', 'l')),
    applied_on date NOT NULL
);
CREATE INDEX input_applications_plot ON ingest.input_applications (plot_id);

CREATE TABLE ingest.harvests (
    record_id     uuid PRIMARY KEY,
    farmer_id     uuid NOT NULL,
    plot_id       uuid NOT NULL,
    crop          text NOT NULL,
    quantity_kg   double precision NOT NULL,
    quality_grade text NOT NULL,
    harvested_on  date NOT NULL
);
CREATE INDEX harvests_plot ON ingest.harvests (plot_id);

CREATE TABLE ingest.sales (
    record_id   uuid PRIMARY KEY,
    farmer_id   uuid NOT NULL,
    buyer       text NOT NULL,
    crop        text NOT NULL,
    quantity_kg double precision NOT NULL,
    price_minor bigint NOT NULL,   -- minor units of currency
    currency    char(3) NOT NULL,
    sold_on     date NOT NULL
);
CREATE INDEX sales_farmer ON ingest.sales (farmer_id);

CREATE TABLE ingest.consents (
    consent_id        uuid PRIMARY KEY,
    farmer_id         uuid NOT NULL,
    grantee_org_id    uuid NOT NULL,
    scopes            text[] NOT NULL,
    expires_at        timestamptz NOT NULL,
    granted_record_id uuid NOT NULL,
    granted_at        timestamptz NOT NULL,
    revoked_at        timestamptz,
    revoked_record_id uuid,
    revoke_reason     text
);
CREATE INDEX consents_farmer ON ingest.consents (farmer_id);

-- Public read contracts.
CREATE VIEW ingest.farmer_contacts AS SELECT farmer_id, phone_enc FROM ingest.farmers;

-- +goose Down
DROP VIEW ingest.farmer_contacts;
DROP TABLE ingest.consents, ingest.sales, ingest.harvests, ingest.input_applications, ingest.crop_cycles, ingest.plots, ingest.farmers;
DROP SEQUENCE ingest.change_seq;
ALTER TABLE ingest.submissions DROP COLUMN agent_id;
ALTER TABLE ingest.submissions DROP COLUMN device_id;
