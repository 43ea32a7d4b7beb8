-- +goose Up
-- Public read contract: inputs as recorded (input.applied), for the
-- marketplace's backtest of its demand outlook against what farmers
-- actually applied.
CREATE VIEW ingest.input_records AS
SELECT record_id, farmer_id, plot_id, category, quantity, unit, applied_on FROM ingest.input_applications;
CREATE INDEX input_applications_applied ON ingest.input_applications (applied_on);

-- +goose Down
DROP INDEX ingest.input_applications_applied;
DROP VIEW ingest.input_records;
