-- +goose Up
-- PostGIS stores plots as geography and computes their area server-side.
CREATE EXTENSION IF NOT EXISTS postgis;
-- pgcrypto gives digest() to SQL-level checks.
CREATE EXTENSION IF NOT EXISTS pgcrypto;

-- +goose Down
DROP EXTENSION IF EXISTS pgcrypto;
DROP EXTENSION IF EXISTS postgis;
