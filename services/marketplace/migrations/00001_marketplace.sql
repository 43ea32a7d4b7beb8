-- +goose Up
CREATE SCHEMA IF NOT EXISTS marketplace;

-- products is each distributor's catalog. Categories are the vouchers
-- chaincode's (a voucher names the categories it may buy). Prices are in
-- minor units of the currency; stock counts packs and is reserved when an
-- order is accepted.
CREATE TABLE marketplace.products (
    product_id     uuid PRIMARY KEY,
    distributor_id uuid        NOT NULL,
    seq            bigserial   NOT NULL UNIQUE,   -- cursor order
    sku            text        NOT NULL,
    name           text        NOT NULL,
    category       text        NOT NULL CHECK (category IN ('seed', 'fertilizer', 'crop_protection', 'tools', 'irrigation', 'mechanization')),
    crop           text,                          -- NULL: for any crop
    pack_size      double precision NOT NULL CHECK (pack_size > 0),
    pack_unit      text        NOT NULL CHECK (pack_unit IN ('kg', 'l', 'unit')),
    unit_price     bigint      NOT NULL CHECK (unit_price > 0),
    currency       char(3)     NOT NULL,
    regions        text[]      NOT NULL,
    stock          bigint      NOT NULL CHECK (stock >= 0),
    active         boolean     NOT NULL DEFAULT true,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (distributor_id, sku)
);
CREATE INDEX products_distributor ON marketplace.products (distributor_id, seq DESC);

-- orders: placed by an agent's signed order.placed record (source agent,
-- projected once attest verified it) or by the distributor for a
-- consenting farmer (source distributor). Every state change is a journal
-- revision of the order (kind order.placed, then order.updated).
CREATE TABLE marketplace.orders (
    order_id        uuid PRIMARY KEY,
    seq             bigserial   NOT NULL UNIQUE,
    distributor_id  uuid        NOT NULL,
    farmer_id       uuid        NOT NULL,
    region          text        NOT NULL DEFAULT '',
    source          text        NOT NULL CHECK (source IN ('agent', 'distributor')),
    record_id       uuid UNIQUE,                  -- the signed order.placed record
    agent_id        uuid,
    placed_by       text,                         -- key:<id> or user:<id> for distributor orders
    plot_id         uuid,
    payment         text        NOT NULL CHECK (payment IN ('cash', 'voucher')),
    voucher_id      uuid,
    currency        char(3)     NOT NULL,
    total           bigint      NOT NULL CHECK (total > 0),
    status          text        NOT NULL CHECK (status IN ('placed', 'accepted', 'rejected', 'shipped', 'delivered')),
    reject_reason   text,
    revision        int         NOT NULL DEFAULT 1,
    leaf_index      bigint,                       -- journal leaf of the latest revision
    placed_at       timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX orders_distributor ON marketplace.orders (distributor_id, seq DESC);
CREATE INDEX orders_distributor_status ON marketplace.orders (distributor_id, status, seq DESC);
CREATE INDEX orders_farmer ON marketplace.orders (farmer_id);
CREATE INDEX orders_voucher ON marketplace.orders (voucher_id) WHERE voucher_id IS NOT NULL;
CREATE INDEX orders_distributor_vouchers ON marketplace.orders (distributor_id, seq DESC) WHERE voucher_id IS NOT NULL;

CREATE TABLE marketplace.order_lines (
    order_id   uuid   NOT NULL REFERENCES marketplace.orders (order_id),
    line       int    NOT NULL,
    product_id uuid   NOT NULL,
    quantity   bigint NOT NULL CHECK (quantity > 0),
    unit_price bigint NOT NULL CHECK (unit_price > 0),
    delivered  bigint NOT NULL DEFAULT 0 CHECK (delivered >= 0 AND delivered <= quantity),
    PRIMARY KEY (order_id, product_id)
);

-- order_revisions is the outbox of the orders' journal entries: each
-- state change writes its revision here in the transaction that makes it;
-- the journal append follows the commit and a sweeper retries until
-- leaf_index is set. Payload is the canonical JSON journaled.
CREATE TABLE marketplace.order_revisions (
    order_id      uuid        NOT NULL REFERENCES marketplace.orders (order_id),
    revision      int         NOT NULL,
    kind          text        NOT NULL,
    payload       bytea       NOT NULL,
    signature_ref text        NOT NULL,
    occurred_at   timestamptz NOT NULL,
    leaf_index    bigint,
    PRIMARY KEY (order_id, revision)
);
CREATE INDEX order_revisions_unjournaled ON marketplace.order_revisions (order_id) WHERE leaf_index IS NULL;

-- deliveries: verified delivery.confirmed records, with the receipt of
-- their journal entry and what the voucher redemption did.
CREATE TABLE marketplace.deliveries (
    record_id         uuid PRIMARY KEY,
    seq               bigserial   NOT NULL UNIQUE,
    order_id          uuid        NOT NULL REFERENCES marketplace.orders (order_id),
    distributor_id    uuid        NOT NULL,
    farmer_id         uuid        NOT NULL,
    agent_id          uuid        NOT NULL,
    items             jsonb       NOT NULL,   -- [{product_id, quantity}]
    value             bigint      NOT NULL,   -- delivered quantity x unit price
    currency          char(3)     NOT NULL,
    received_on       date        NOT NULL,
    captured_at       timestamptz NOT NULL,
    lat               double precision NOT NULL,
    lon               double precision NOT NULL,
    photo_hash        text        NOT NULL,
    leaf_index        bigint      NOT NULL,
    receipt           jsonb       NOT NULL,   -- the journal receipt when projected
    receipt_sha256    text        NOT NULL,
    voucher_id        uuid,
    redemption        text        NOT NULL DEFAULT 'none' CHECK (redemption IN ('none', 'pending', 'redeemed', 'refused')),
    redemption_tx     text,
    redemption_error  text,
    redeemed_at       timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX deliveries_distributor ON marketplace.deliveries (distributor_id, seq DESC);
CREATE INDEX deliveries_pending ON marketplace.deliveries (record_id) WHERE redemption = 'pending';
CREATE INDEX deliveries_order ON marketplace.deliveries (order_id, seq DESC);

-- input_rates is the agronomic rate table behind recommended baskets and
-- the demand outlook: per crop and input category, kg per hectare per
-- season (annual crops) or per year (perennials), and how that is spread
-- over the months from planting (annual) or from the start of the rainy
-- season (perennials). Versioned like attest's thresholds: a new version
-- is a new set of rows, never an edit. Sources per row (docs/marketplace.md).
CREATE TABLE marketplace.input_rates (
    version      int     NOT NULL,
    crop         text    NOT NULL,
    category     text    NOT NULL CHECK (category IN ('seed', 'fertilizer')),
    kg_per_ha    double precision NOT NULL CHECK (kg_per_ha >= 0),
    basis        text    NOT NULL CHECK (basis IN ('season', 'year')),
    -- share of the amount in each month after the anchor month (index 0 =
    -- the planting month); sums to 1.
    month_shares double precision[] NOT NULL,
    source       text    NOT NULL,
    PRIMARY KEY (version, crop, category)
);
INSERT INTO marketplace.input_rates (version, crop, category, kg_per_ha, basis, month_shares, source) VALUES
 (1, 'rice', 'seed', 25, 'season', '{1}',
  'Kementan/BB Padi, Petunjuk Teknis Jajar Legowo: 20-25 kg/ha certified seed for transplanted inbred rice'),
 (1, 'rice', 'fertilizer', 500, 'season', '{0.4,0.6}',
  'Kepmentan 13/2022 rekomendasi pupuk padi sawah spesifik lokasi (Urea ~200 + NPK Phonska ~300 kg/ha); splits at planting, 3-4 and 6 weeks'),
 (1, 'maize', 'seed', 20, 'season', '{1}',
  'Balitsereal (BSIP Serealia), Petunjuk Teknis Budidaya Jagung Hibrida: 15-20 kg/ha hybrid seed'),
 (1, 'maize', 'fertilizer', 650, 'season', '{0.5,0.5}',
  'Balitsereal Petunjuk Teknis Budidaya Jagung Hibrida: Urea 300-350 + NPK Phonska 300 kg/ha; basal and 4-5 weeks'),
 (1, 'coffee', 'seed', 0, 'year', '{1}',
  'Perennial: no seed each year (replanting with seedlings is a separate, rare purchase)'),
 (1, 'coffee', 'fertilizer', 650, 'year', '{0.5,0,0,0,0,0.5}',
  'Puslitkoka (ICCRI), Pedoman Teknis Budidaya Kopi: producing robusta ~Urea 300 + SP36 150 + KCl 200 kg/ha/yr, two splits (early and late rainy season)'),
 (1, 'cocoa', 'seed', 0, 'year', '{1}',
  'Perennial: no seed each year'),
 (1, 'cocoa', 'fertilizer', 690, 'year', '{0.5,0,0,0,0,0.5}',
  'Puslitkoka (ICCRI), Panduan Lengkap Kakao: producing cocoa ~Urea 220 + SP36 180 + KCl 170 + Kieserite 120 kg/ha/yr, two splits'),
 (1, 'oil_palm', 'seed', 0, 'year', '{1}',
  'Perennial: no seed each year'),
 (1, 'oil_palm', 'fertilizer', 510, 'year', '{0.5,0,0,0,0,0.5}',
  'PPKS (Indonesian Oil Palm Research Institute) standard for mature palms: Urea 1.0 + TSP 0.75 + MOP 1.25 + Kieserite 0.75 kg/palm/yr x 136 palms/ha, two splits');

-- demand_runs and demand_cells are the regional demand outlook, computed
-- by the marketplace's refresh from verified plots and crop cycles (see
-- docs/marketplace.md). Only cells of at least k farmers are stored
-- (k-anonymity), so no farmer-level figure exists outside attest; a stored
-- cell changes only when its farmer count moved by at least k since it was
-- published, so that the difference of two versions of a cell is never
-- one farmer's. backtest holds the error of the same method predicting
-- last season's recorded inputs.
CREATE TABLE marketplace.demand_runs (
    run_id         bigserial PRIMARY KEY,
    computed_at    timestamptz NOT NULL DEFAULT now(),
    season_start   date        NOT NULL,   -- first month of the outlook
    months         int         NOT NULL,
    rates_version  int         NOT NULL,
    k              int         NOT NULL,
    farmers        bigint      NOT NULL,
    plots          bigint      NOT NULL,
    cells          int         NOT NULL,   -- candidate cells
    suppressed     int         NOT NULL,   -- candidate cells withheld: fewer than k farmers
    held           int         NOT NULL,   -- cells kept at their published value: fewer than k farmers changed
    backtest       jsonb       NOT NULL,
    took_ms        bigint      NOT NULL
);
CREATE TABLE marketplace.demand_cells (
    district    text    NOT NULL,
    crop        text    NOT NULL,
    category    text    NOT NULL,
    month       date    NOT NULL,
    farmers     int     NOT NULL CHECK (farmers >= 10),
    area_ha     double precision NOT NULL,
    quantity_kg double precision NOT NULL,
    run_id      bigint  NOT NULL,   -- the run that published this version
    PRIMARY KEY (district, crop, category, month)
);
-- demand_districts: where each district's verified plots are, for the map
-- (centroid of at least k farmers' plot centroids, rounded to 0.05 deg).
CREATE TABLE marketplace.demand_districts (
    district text   PRIMARY KEY,
    farmers  int    NOT NULL CHECK (farmers >= 10),
    lat      double precision NOT NULL,
    lon      double precision NOT NULL,
    run_id   bigint NOT NULL
);

-- Public read contracts for mobile-api (orders refused at /sync) and
-- attest (orders and deliveries checked like any record).
CREATE VIEW marketplace.catalog AS
SELECT product_id, distributor_id, category, crop, pack_size, pack_unit, unit_price, currency, regions, stock, active FROM marketplace.products;
CREATE VIEW marketplace.order_book AS
SELECT o.order_id, o.distributor_id, o.farmer_id, o.status, o.payment, o.voucher_id, o.agent_id, o.currency,
       l.product_id, l.quantity, l.delivered, l.unit_price
FROM marketplace.orders o JOIN marketplace.order_lines l USING (order_id);

-- +goose Down
DROP VIEW marketplace.order_book;
DROP VIEW marketplace.catalog;
DROP SCHEMA marketplace CASCADE;
