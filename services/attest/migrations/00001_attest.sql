-- +goose Up
CREATE SCHEMA IF NOT EXISTS attest;

-- thresholds are the bounds the rules judge records against, per crop and
-- region, versioned: a new version is a new set of rows, never an edit, and
-- every rule result names the version it used. Region '*' and crop '*' are
-- the fallbacks; crop '*' holds the bounds that are not about a crop (plots,
-- GPS). A NULL bound means "no bound known": the rule then flags for review
-- rather than passing silently.
CREATE TABLE attest.thresholds (
    version                  int     NOT NULL,
    crop                     text    NOT NULL,
    region                   text    NOT NULL DEFAULT '*',
    -- yield bounds in t/ha of the harvested product; basis 'season' judges one
    -- harvest, 'year' the sum of a plot's harvests over 365 days (perennials
    -- are picked many times a year, so only the upper bound applies).
    yield_min_t_ha           double precision,
    yield_max_t_ha           double precision,
    yield_basis              text    NOT NULL DEFAULT 'season' CHECK (yield_basis IN ('season', 'year')),
    -- crop calendar: days from planting to expected harvest, and the months
    -- (1-12) in which planting is plausible in the region.
    season_min_days          int,
    season_max_days          int,
    planting_months          int[]   NOT NULL DEFAULT '{1,2,3,4,5,6,7,8,9,10,11,12}',
    -- plots and GPS
    plot_min_ha              double precision NOT NULL,
    plot_max_ha              double precision NOT NULL,
    area_tolerance           double precision NOT NULL,  -- |declared - measured| / measured
    plot_gps_accuracy_max_m  double precision NOT NULL,  -- GPS walk accuracy
    capture_accuracy_max_m   double precision NOT NULL,  -- device fix when capturing any record
    capture_distance_max_m   double precision NOT NULL,  -- device to plot boundary
    overlap_tolerance        double precision NOT NULL,  -- intersection / smaller plot
    area_valid_seasons       int     NOT NULL,           -- how long a measured area stays verified
    source                   text    NOT NULL,
    created_at               timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (version, crop, region)
);

-- Version 1. Sources (figures rounded; bounds are deliberately wide around
-- the national means so that only implausible records are flagged):
--  * Rice: BPS, "Luas Panen dan Produksi Padi di Indonesia" (annual release):
--    national productivity about 5.2-5.3 t/ha dry unhusked paddy (GKG),
--    2019-2023. Growth duration of Indonesian varieties (IR64, Ciherang,
--    Inpari) 90-130 days: IRRI Rice Knowledge Bank; BB Padi variety
--    descriptions. Irrigated land is planted in every month (2-3 seasons a
--    year): FAO GIEWS country brief / crop calendar, Indonesia.
--  * Maize: BPS/Kementan maize production statistics: about 5-6 t/ha dry
--    shelled grain; 80-130 days to dry harvest; FAO GIEWS crop calendar,
--    Indonesia (main, second and third seasons cover the year).
--  * Coffee, cocoa, oil palm: Ditjenbun (Kementan) "Statistik Perkebunan
--    Unggulan Nasional": smallholder productivity about 0.7-0.8 t/ha/yr
--    green coffee, 0.4-0.8 t/ha/yr dry cocoa beans; smallholder oil palm
--    about 10-16 t/ha/yr fresh fruit bunches (FFB). Perennials are judged
--    per year; a planting cycle runs from 5 months (fruit development) to 4
--    years (new planting to first harvest).
--  * Plots: smallholder plantations in Indonesia are under 25 ha
--    (Permentan 98/2013, STD-B registration below 25 ha). GPS walks with
--    consumer phones reach 3-10 m; World Bank LSMS "Land Area Measurement in
--    Household Surveys" guidebook and Carletto, Gourlay & Winters (2015) on
--    GPS vs self-reported area (the error the issue cites: 49 % Thailand,
--    285 % Lao PDR), hence a 25 % tolerance for declared area.
INSERT INTO attest.thresholds (version, crop, region, yield_min_t_ha, yield_max_t_ha, yield_basis, season_min_days, season_max_days,
                               plot_min_ha, plot_max_ha, area_tolerance, plot_gps_accuracy_max_m, capture_accuracy_max_m,
                               capture_distance_max_m, overlap_tolerance, area_valid_seasons, source) VALUES
 (1, '*',        '*', NULL, NULL, 'season', NULL, NULL, 0.005, 25, 0.25, 10, 50, 200, 0.05, 2,
  'Permentan 98/2013 (smallholder < 25 ha); World Bank LSMS land area measurement guidebook; Carletto, Gourlay & Winters 2015'),
 (1, 'rice',     '*', 1.0, 10.0, 'season', 85, 160, 0.005, 25, 0.25, 10, 50, 200, 0.05, 2,
  'BPS Luas Panen dan Produksi Padi di Indonesia 2019-2023 (~5.2 t/ha GKG); IRRI Rice Knowledge Bank growth duration; FAO GIEWS crop calendar Indonesia'),
 (1, 'maize',    '*', 1.0, 12.0, 'season', 75, 150, 0.005, 25, 0.25, 10, 50, 200, 0.05, 2,
  'BPS/Kementan maize statistics (~5-6 t/ha dry shelled); FAO GIEWS crop calendar Indonesia'),
 (1, 'coffee',   '*', NULL, 3.0, 'year', 150, 1460, 0.005, 25, 0.25, 10, 50, 200, 0.05, 2,
  'Ditjenbun Statistik Perkebunan Unggulan Nasional: smallholder coffee ~0.7-0.8 t/ha/yr green bean'),
 (1, 'cocoa',    '*', NULL, 2.5, 'year', 150, 1460, 0.005, 25, 0.25, 10, 50, 200, 0.05, 2,
  'Ditjenbun Statistik Perkebunan Unggulan Nasional: smallholder cocoa ~0.4-0.8 t/ha/yr dry beans'),
 (1, 'oil_palm', '*', NULL, 35.0, 'year', 150, 1460, 0.005, 25, 0.25, 10, 50, 200, 0.05, 2,
  'Ditjenbun Statistik Perkebunan Unggulan Nasional: smallholder oil palm ~10-16 t FFB/ha/yr');

-- records is attest's decision on every ingested record: exactly one row per
-- record id. results holds every rule's result; a record whose rules
-- errored stays 'pending' with last_error and is retried.
CREATE TABLE attest.records (
    record_id         uuid PRIMARY KEY,
    type              text        NOT NULL,
    farmer_id         uuid,
    plot_id           uuid,
    agent_id          uuid        NOT NULL,
    device_id         uuid        NOT NULL,
    captured_at       timestamptz NOT NULL,
    canonical         bytea       NOT NULL,
    signature_ref     text        NOT NULL,
    status            text        NOT NULL CHECK (status IN ('pending', 'verified', 'flagged', 'rejected')),
    reason            text,
    results           jsonb       NOT NULL DEFAULT '[]',
    threshold_version int,
    attempts          int         NOT NULL DEFAULT 1,
    last_error        text,
    leaf_index        bigint,      -- set once the verified revision is journaled
    decision          int         NOT NULL DEFAULT 1,  -- +1 per review that changes the status
    published         int         NOT NULL DEFAULT 0,  -- the last decision announced on farm.attested
    decided_at        timestamptz,
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX records_status ON attest.records (status, updated_at);
CREATE INDEX records_agent ON attest.records (agent_id);
CREATE INDEX records_unjournaled ON attest.records (record_id) WHERE status = 'verified' AND leaf_index IS NULL;
CREATE INDEX records_unpublished ON attest.records (record_id) WHERE published < decision AND status <> 'pending';

-- provenance says, per attribute of a record, how it was verified, by whom,
-- when, and until when it holds.
CREATE TABLE attest.provenance (
    record_id   uuid NOT NULL REFERENCES attest.records (record_id),
    attribute   text NOT NULL,
    method      text NOT NULL CHECK (method IN ('self_reported', 'gps_walk', 'second_agent_visit', 'supervisor_review', 'document', 'device_signature')),
    verifier    text NOT NULL,
    verified_at timestamptz NOT NULL,
    expires_at  timestamptz,
    PRIMARY KEY (record_id, attribute)
);

-- Projections of ingested records the rules compare against. Attest keeps
-- its own copies (from farm.ingested) rather than reading ingest's tables.
CREATE TABLE attest.farmers (
    farmer_id        uuid PRIMARY KEY,
    record_id        uuid        NOT NULL,
    agent_id         uuid        NOT NULL,
    region           text        NOT NULL,   -- the registering agent's region: the farmer's home region
    national_id_hmac bytea       NOT NULL,
    phone_hmac       bytea       NOT NULL,
    captured_at      timestamptz NOT NULL
);
CREATE INDEX farmers_national_id ON attest.farmers (national_id_hmac);
CREATE INDEX farmers_phone ON attest.farmers (phone_hmac);

CREATE TABLE attest.plots (
    plot_id          uuid PRIMARY KEY,
    farmer_id        uuid        NOT NULL,
    record_id        uuid        NOT NULL,
    agent_id         uuid        NOT NULL,
    boundary         geography(Polygon, 4326) NOT NULL,
    area_ha          double precision NOT NULL,   -- PostGIS, on the spheroid
    declared_area_ha double precision NOT NULL,
    valid            boolean     NOT NULL,
    invalid_reason   text,
    captured_at      timestamptz NOT NULL
);
CREATE INDEX plots_boundary ON attest.plots USING gist (boundary);
CREATE INDEX plots_farmer ON attest.plots (farmer_id);

CREATE TABLE attest.crop_cycles (
    record_id           uuid PRIMARY KEY,
    farmer_id           uuid NOT NULL,
    plot_id             uuid NOT NULL,
    crop                text NOT NULL,
    planted_on          date NOT NULL,
    expected_harvest_on date NOT NULL
);
CREATE INDEX crop_cycles_plot ON attest.crop_cycles (plot_id);

CREATE TABLE attest.harvests (
    record_id    uuid PRIMARY KEY,
    farmer_id    uuid NOT NULL,
    plot_id      uuid NOT NULL,
    crop         text NOT NULL,
    quantity_kg  double precision NOT NULL,
    harvested_on date NOT NULL
);
CREATE INDEX harvests_farmer ON attest.harvests (farmer_id, crop);
CREATE INDEX harvests_plot ON attest.harvests (plot_id, crop);

CREATE TABLE attest.sales (
    record_id   uuid PRIMARY KEY,
    farmer_id   uuid NOT NULL,
    crop        text NOT NULL,
    quantity_kg double precision NOT NULL,
    sold_on     date NOT NULL
);
CREATE INDEX sales_farmer ON attest.sales (farmer_id, crop);

-- reviews is the supervisors' queue, in the states field teams know from
-- ODK Central: received, has_issues, edited, approved, rejected.
CREATE TABLE attest.reviews (
    id         uuid PRIMARY KEY,
    record_id  uuid        NOT NULL UNIQUE REFERENCES attest.records (record_id),
    state      text        NOT NULL CHECK (state IN ('received', 'has_issues', 'edited', 'approved', 'rejected')),
    rules      text[]      NOT NULL,   -- the rules that flagged the record
    region     text        NOT NULL,
    revision   int         NOT NULL DEFAULT 0,   -- journal revisions of review.decision appended so far
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX reviews_state ON attest.reviews (state, created_at);

-- review_events audits every transition; rows are never changed.
CREATE TABLE attest.review_events (
    id         bigserial PRIMARY KEY,
    review_id  uuid        NOT NULL REFERENCES attest.reviews (id),
    from_state text,
    to_state   text        NOT NULL,
    action     text        NOT NULL,
    actor      text        NOT NULL,
    reason     text        NOT NULL DEFAULT '',
    revision   int,         -- the journal revision (record id = review id, kind review.decision)
    payload    bytea,       -- the exact journaled bytes of this decision
    leaf_index bigint,      -- set once journaled: the only change a row ever sees
    at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX review_events_review ON attest.review_events (review_id, id);

-- +goose StatementBegin
CREATE FUNCTION attest.forbid_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.leaf_index IS NULL AND NEW.leaf_index IS NOT NULL
       AND (to_jsonb(NEW) - 'leaf_index') = (to_jsonb(OLD) - 'leaf_index') THEN
        RETURN NEW;  -- recording where the decision was journaled
    END IF;
    RAISE EXCEPTION 'attest.review_events is append-only';
END $$;
-- +goose StatementEnd
CREATE TRIGGER review_events_append_only BEFORE UPDATE OR DELETE ON attest.review_events
    FOR EACH ROW EXECUTE FUNCTION attest.forbid_change();

-- visits are second-agent visits a supervisor requested: a task for another
-- agent of the region, closed by that agent's matching record.
CREATE TABLE attest.visits (
    id              uuid PRIMARY KEY,
    review_id       uuid        NOT NULL REFERENCES attest.reviews (id),
    record_id       uuid        NOT NULL,
    farmer_id       uuid,
    plot_id         uuid,
    agent_id        uuid        NOT NULL,   -- the visiting agent
    boundary        geography(Polygon, 4326),  -- the boundary under review, for plot visits
    area_ha         double precision,
    state           text        NOT NULL CHECK (state IN ('open', 'corroborated', 'contradicted', 'cancelled')),
    evidence_record uuid,
    note            text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    closed_at       timestamptz
);
CREATE INDEX visits_open ON attest.visits (agent_id, plot_id) WHERE state = 'open';

-- Public read contracts.
-- record_status: what the phone is shown about a record.
CREATE VIEW attest.record_status AS
    SELECT record_id AS id, status,
           CASE WHEN status = 'pending' THEN coalesce(reason, last_error) ELSE reason END AS reason,
           updated_at
    FROM attest.records;
-- visit_tasks: second-agent visits an agent's phone should show.
CREATE VIEW attest.visit_tasks AS
    SELECT id, agent_id, record_id, farmer_id, plot_id, note, created_at FROM attest.visits WHERE state = 'open';

-- +goose Down
DROP SCHEMA attest CASCADE;
