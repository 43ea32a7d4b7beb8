-- +goose Up
-- The demand outlook's plan: what every verified plot contributes to the
-- outlook of one season under one version of the rate table, kept as
-- attest announces plots, crop cycles and farmers (docs/marketplace.md,
-- "How the outlook is kept"), so that publishing the outlook reads a few
-- thousand cell sums instead of every plot. Quantities are integers (m²,
-- grams, microdegrees) rounded per plot, so that sums kept by adding and
-- subtracting are exactly what a rebuild from scratch computes. These
-- tables hold farmer-level figures: they never leave the marketplace's
-- refresh (only demand_cells, of at least k farmers, is read by pages and
-- the API).
--
-- The plan is UNLOGGED: it is derived from attest's tables, so it need
-- not cost write-ahead log (a rebuild writes a million rows, each update a
-- few dozen). A crash empties every unlogged table, demand_plan_state with
-- them, and the next refresh rebuilds. Unlogged tables are not on the
-- replicas: the plan is read on the primary only.

-- demand_plan_state: the season and rate table the plan was built for,
-- and last season's prediction for the backtest (computed at the build).
CREATE UNLOGGED TABLE marketplace.demand_plan_state (
    singleton     boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    season_start  date        NOT NULL,
    rates_version int         NOT NULL,
    backtest_pred jsonb       NOT NULL,   -- [{district, category, month, farmers, kg}] of last season
    built_at      timestamptz NOT NULL,
    build_ms      bigint      NOT NULL
);

-- demand_plan_plots: every verified plot of a farmer with a home region.
CREATE UNLOGGED TABLE marketplace.demand_plan_plots (
    plot_id   uuid             PRIMARY KEY,
    farmer_id uuid             NOT NULL,
    district  text             NOT NULL,
    area_ha   double precision NOT NULL,   -- attest's PostGIS area, as is
    lat_e6    bigint           NOT NULL,   -- plot centroid, microdegrees
    lon_e6    bigint           NOT NULL
);
CREATE INDEX demand_plan_plots_farmer ON marketplace.demand_plan_plots (farmer_id);

-- demand_farmer_cells: one farmer's part of one cell (area counted once
-- per plot and month it contributes to, kg summed over plots).
CREATE UNLOGGED TABLE marketplace.demand_farmer_cells (
    farmer_id uuid   NOT NULL,
    district  text   NOT NULL,
    crop      text   NOT NULL,
    category  text   NOT NULL,
    month     date   NOT NULL,
    area_m2   bigint NOT NULL,
    grams     bigint NOT NULL,
    PRIMARY KEY (farmer_id, district, crop, category, month)
);

-- demand_cell_sums: every candidate cell, whatever its farmer count (the
-- publish step applies k-anonymity).
CREATE UNLOGGED TABLE marketplace.demand_cell_sums (
    district text   NOT NULL,
    crop     text   NOT NULL,
    category text   NOT NULL,
    month    date   NOT NULL,
    farmers  int    NOT NULL CHECK (farmers >= 0),
    area_m2  bigint NOT NULL,
    grams    bigint NOT NULL,
    PRIMARY KEY (district, crop, category, month)
);
CREATE INDEX demand_cell_sums_empty ON marketplace.demand_cell_sums (district) WHERE farmers = 0;

-- demand_district_sums: per district, its farmers and plots and the sum
-- of their plots' centroids (the map's point is the mean).
CREATE UNLOGGED TABLE marketplace.demand_district_sums (
    district   text   PRIMARY KEY,
    farmers    int    NOT NULL CHECK (farmers >= 0),
    plots      bigint NOT NULL,
    lat_e6_sum bigint NOT NULL,
    lon_e6_sum bigint NOT NULL
);
CREATE INDEX demand_district_sums_empty ON marketplace.demand_district_sums (district) WHERE farmers = 0;

-- demand_pending: farmers whose records attest decided and whose parts
-- the plan has not recomputed since. The consumer queues a farmer and
-- drains the queue when no one else holds the plan (a rebuild can take a
-- minute at a million plots: the consumer, which also projects orders and
-- deliveries, never waits for it); a rebuild and every publish drain it
-- after. seq moves when a farmer is queued again, so that a drain deletes
-- only the entries it saw.
CREATE UNLOGGED SEQUENCE marketplace.demand_pending_seq;
CREATE UNLOGGED TABLE marketplace.demand_pending (
    farmer_id uuid   PRIMARY KEY,
    seq       bigint NOT NULL DEFAULT nextval('marketplace.demand_pending_seq')
);

-- A run says whether it rebuilt the plan (season or rate table changed,
-- first run, periodic reconciliation) or published what the stream kept.
ALTER TABLE marketplace.demand_runs ADD COLUMN rebuilt boolean NOT NULL DEFAULT false;

-- +goose Down
ALTER TABLE marketplace.demand_runs DROP COLUMN rebuilt;
DROP TABLE marketplace.demand_pending;
DROP SEQUENCE marketplace.demand_pending_seq;
DROP TABLE marketplace.demand_district_sums, marketplace.demand_cell_sums, marketplace.demand_farmer_cells,
    marketplace.demand_plan_plots, marketplace.demand_plan_state;
