-- +goose Up
-- The journal's one-round-trip append (ledger/journal.go, appendFast) sends
-- the sequencer lock, this guard, the inserts and the tree size update in
-- one pipelined implicit transaction. The process computes the new stored
-- hashes from the tree it appended last, and assumes that no record of the
-- batch was erased; under the sequencer lock the guard checks both (the
-- stored tree has that size and those hashes of its complete subtrees, the
-- only ones the new hashes depend on) and aborts the transaction when
-- either is wrong. The journal then takes the careful path (look up stored
-- and erased revisions first). A revision already stored aborts it too,
-- through entries_record_revision.
-- +goose StatementBegin
CREATE FUNCTION ledger.append_guard(expected_size bigint, frontier_ids bigint[], frontier_hashes bytea[], record_ids text[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    i integer;
    actual bigint;
    erased text;
BEGIN
    SELECT size INTO actual FROM ledger.tree;
    IF actual IS DISTINCT FROM expected_size THEN
        RAISE EXCEPTION 'ledger: the tree has size %, not %', actual, expected_size
            USING ERRCODE = 'serialization_failure';
    END IF;
    -- One primary-key probe per hash (at most 63): a join would let the
    -- planner scan the whole table.
    FOR i IN 1 .. coalesce(cardinality(frontier_ids), 0) LOOP
        PERFORM FROM ledger.hashes WHERE id = frontier_ids[i] AND hash = frontier_hashes[i];
        IF NOT FOUND THEN
            RAISE EXCEPTION 'ledger: the tree of size % is not the one this process appended to (stored hash %)', expected_size, frontier_ids[i]
                USING ERRCODE = 'serialization_failure';
        END IF;
    END LOOP;
    SELECT record_id INTO erased FROM ledger.erased_records WHERE record_id = ANY (record_ids) LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'ledger: record % was erased', erased USING ERRCODE = 'unique_violation';
    END IF;
END
$$;
-- +goose StatementEnd

-- Nothing reads entries by logged_at alone (history filters one record's
-- revisions, found by entries_record_revision): the index cost every
-- append a B-tree insert for no reader.
DROP INDEX ledger.entries_logged_at;

-- +goose Down
CREATE INDEX entries_logged_at ON ledger.entries (logged_at);
DROP FUNCTION ledger.append_guard(bigint, bigint[], bytea[], text[]);
