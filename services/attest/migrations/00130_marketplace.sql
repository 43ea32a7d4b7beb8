-- +goose Up
-- Thresholds v2: v1 plus the distance within which a delivery of inputs
-- counts as "at the farm". Goods are handed over at the homestead or the
-- roadside nearest the plots, rarely on the plot itself; in Indonesian
-- villages (desa) homesteads cluster in a hamlet (dusun) usually within
-- 1-2 km of the fields (BPS Podes village census: median village area in
-- Java about 2-3 km2, i.e. a radius of about 1 km). 2 km from the nearest
-- verified plot of the farmer admits the hamlet and refuses a delivery
-- "confirmed" from the distributor's shop in the next town.
ALTER TABLE attest.thresholds ADD COLUMN delivery_distance_max_m double precision;
INSERT INTO attest.thresholds (version, crop, region, yield_min_t_ha, yield_max_t_ha, yield_basis, season_min_days, season_max_days,
                               planting_months, plot_min_ha, plot_max_ha, area_tolerance, plot_gps_accuracy_max_m, capture_accuracy_max_m,
                               capture_distance_max_m, overlap_tolerance, area_valid_seasons, source, delivery_distance_max_m)
SELECT 2, crop, region, yield_min_t_ha, yield_max_t_ha, yield_basis, season_min_days, season_max_days,
       planting_months, plot_min_ha, plot_max_ha, area_tolerance, plot_gps_accuracy_max_m, capture_accuracy_max_m,
       capture_distance_max_m, overlap_tolerance, area_valid_seasons,
       source || '; delivery distance: BPS Podes village area (hamlet within ~1-2 km of the fields)', 2000
FROM attest.thresholds WHERE version = 1;

-- Public read contracts for the marketplace (regional demand, recommended
-- baskets): plots and crop cycles whose records attest verified, with the
-- farmer's home region (the district of the demand outlook).
CREATE VIEW attest.verified_plots AS
SELECT p.plot_id, p.farmer_id, coalesce(f.region, '') AS region, p.area_ha,
       ST_Y(ST_Centroid(p.boundary::geometry)) AS lat, ST_X(ST_Centroid(p.boundary::geometry)) AS lon, p.captured_at
FROM attest.plots p
JOIN attest.records r ON r.record_id = p.record_id AND r.status = 'verified'
LEFT JOIN attest.farmers f ON f.farmer_id = p.farmer_id;

CREATE VIEW attest.verified_crop_cycles AS
SELECT c.record_id, c.farmer_id, c.plot_id, c.crop, c.planted_on, c.expected_harvest_on
FROM attest.crop_cycles c
JOIN attest.records r ON r.record_id = c.record_id AND r.status = 'verified';
CREATE INDEX crop_cycles_farmer ON attest.crop_cycles (farmer_id);

-- A farmer's home region, the district of orders and of the demand
-- outlook, is attest.farmer_regions (00120).

-- +goose Down
DROP INDEX attest.crop_cycles_farmer;
DROP VIEW attest.verified_crop_cycles;
DROP VIEW attest.verified_plots;
DELETE FROM attest.thresholds WHERE version = 2;
ALTER TABLE attest.thresholds DROP COLUMN delivery_distance_max_m;
