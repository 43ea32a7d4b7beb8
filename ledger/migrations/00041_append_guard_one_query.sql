-- +goose Up
-- The guard checked the frontier hashes with one PL/pgSQL query per hash
-- (up to 63, about 17 at a million entries), each a separate executor
-- start in every append transaction. One query probes them all now, each
-- by its primary key (the LATERAL ... LIMIT 1 keeps the planner from
-- scanning ledger.hashes); the loop runs only to name the hash that
-- differs once the count says one does.
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION ledger.append_guard(expected_size bigint, frontier_ids bigint[], frontier_hashes bytea[], record_ids text[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    i integer;
    actual bigint;
    matched integer;
    erased text;
BEGIN
    SELECT size INTO actual FROM ledger.tree;
    IF actual IS DISTINCT FROM expected_size THEN
        RAISE EXCEPTION 'ledger: the tree has size %, not %', actual, expected_size
            USING ERRCODE = 'serialization_failure';
    END IF;
    SELECT count(*) INTO matched
    FROM unnest(frontier_ids, frontier_hashes) AS f(id, hash)
    CROSS JOIN LATERAL (SELECT 1 FROM ledger.hashes h WHERE h.id = f.id AND h.hash = f.hash LIMIT 1) AS s;
    IF matched <> coalesce(cardinality(frontier_ids), 0) THEN
        FOR i IN 1 .. coalesce(cardinality(frontier_ids), 0) LOOP
            PERFORM FROM ledger.hashes WHERE id = frontier_ids[i] AND hash = frontier_hashes[i];
            IF NOT FOUND THEN
                RAISE EXCEPTION 'ledger: the tree of size % is not the one this process appended to (stored hash %)', expected_size, frontier_ids[i]
                    USING ERRCODE = 'serialization_failure';
            END IF;
        END LOOP;
    END IF;
    SELECT record_id INTO erased FROM ledger.erased_records WHERE record_id = ANY (record_ids) LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'ledger: record % was erased', erased USING ERRCODE = 'unique_violation';
    END IF;
END
$$;
-- +goose StatementEnd

-- +goose Down
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION ledger.append_guard(expected_size bigint, frontier_ids bigint[], frontier_hashes bytea[], record_ids text[]) RETURNS void
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
