-- +goose Up
-- Farmers and plots are updated in place whenever a newer capture
-- arrives, and change_seq changes with every update. An index on it made
-- every update a new index entry in each of the table's indexes (no
-- heap-only update is possible while an indexed column changes), so each
-- re-mapped plot cost four index insertions, a GiST one among them, and
-- left the primary key with one more entry to walk for every later
-- conflict check. No reader uses change_seq: sync-down pages by
-- change_xid (00020), and the views expose neither. The column stays, as
-- it is, for whoever orders changes by it; only its indexes go. Room left
-- on each page lets an update that changes no indexed column (the same
-- boundary captured again, a farmer's profile edited) stay on its page.
DROP INDEX ingest.plots_change;
DROP INDEX ingest.farmers_change;
ALTER TABLE ingest.plots SET (fillfactor = 80);
ALTER TABLE ingest.farmers SET (fillfactor = 80);

-- +goose Down
ALTER TABLE ingest.farmers RESET (fillfactor);
ALTER TABLE ingest.plots RESET (fillfactor);
CREATE INDEX farmers_change ON ingest.farmers (change_seq);
CREATE INDEX plots_change ON ingest.plots (change_seq);
