-- +goose Up
-- A farmer newly assigned to an agent must reach the agent's phone even if
-- the farmer's data is old: assignments carry their writer's transaction id
-- too (see ingest's change_xid).
ALTER TABLE mobile.assignments ADD COLUMN assign_xid xid8 NOT NULL DEFAULT pg_current_xact_id();

-- +goose Down
ALTER TABLE mobile.assignments DROP COLUMN assign_xid;
