-- +goose Up
-- Offline phones sync down "what changed since my cursor". Sequence numbers
-- are not commit-ordered, so a reader could pass a row that commits later
-- with a smaller number and miss it forever. Each row instead carries the
-- id of the transaction that last wrote it; a cursor is the xmin of the
-- reader's snapshot, so every later-committing writer is at or above it.
ALTER TABLE ingest.farmers ADD COLUMN change_xid xid8 NOT NULL DEFAULT pg_current_xact_id();
ALTER TABLE ingest.plots ADD COLUMN change_xid xid8 NOT NULL DEFAULT pg_current_xact_id();

-- +goose StatementBegin
CREATE FUNCTION ingest.stamp_change_xid() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.change_xid := pg_current_xact_id();
    RETURN NEW;
END $$;
-- +goose StatementEnd
CREATE TRIGGER farmers_change_xid BEFORE UPDATE ON ingest.farmers FOR EACH ROW EXECUTE FUNCTION ingest.stamp_change_xid();
CREATE TRIGGER plots_change_xid BEFORE UPDATE ON ingest.plots FOR EACH ROW EXECUTE FUNCTION ingest.stamp_change_xid();

-- The public read contract for sync-down: what an agent's phone may hold.
-- Never the national ID or the phone number.
CREATE VIEW ingest.farmer_profiles AS
    SELECT farmer_id, name, village, gender, birth_year, photo_hash, captured_at, change_xid, updated_at FROM ingest.farmers;
CREATE VIEW ingest.plot_profiles AS
    SELECT plot_id, farmer_id, ST_AsGeoJSON(boundary)::jsonb AS boundary, area_ha, declared_area_ha, tenure, captured_at, change_xid, updated_at
    FROM ingest.plots;

-- +goose Down
DROP VIEW ingest.plot_profiles;
DROP VIEW ingest.farmer_profiles;
DROP TRIGGER plots_change_xid ON ingest.plots;
DROP TRIGGER farmers_change_xid ON ingest.farmers;
DROP FUNCTION ingest.stamp_change_xid();
ALTER TABLE ingest.plots DROP COLUMN change_xid;
ALTER TABLE ingest.farmers DROP COLUMN change_xid;
