-- +goose Up
-- The tlog stored hashes, one row per append instead of one per hash: an
-- append of n leaves adds about 2n stored hashes with consecutive ids
-- (tlog.StoredHashIndex order), and one row holding them all costs one
-- B-tree insert and one heap tuple instead of 2n of each, which dominated
-- the append's time and WAL (docs/ledger-benchmarks.md).
--
-- A run holds the 32-byte hashes of ids first, first+1, … concatenated.
-- Runs never overlap and never change once written; the audit reports
-- runs that overlap or whose length is not a positive multiple of 32.
CREATE TABLE ledger.hash_runs (
    first  bigint PRIMARY KEY CHECK (first >= 0),
    hashes bytea  NOT NULL CHECK (octet_length(hashes) > 0 AND octet_length(hashes) % 32 = 0)
);
-- Random bytes do not compress: store them uncompressed, so that reading
-- one hash out of a long run (substring) fetches only its TOAST chunk.
-- Runs of up to about 250 hashes (appends of up to about 125 leaves) stay
-- in the row (toast_tuple_target at its maximum): moved out, every
-- append of a group of 32 would write TOAST rows and index entries too,
-- and every frontier hash the append guard reads would cost two more
-- index probes.
ALTER TABLE ledger.hash_runs ALTER COLUMN hashes SET STORAGE EXTERNAL;
ALTER TABLE ledger.hash_runs SET (toast_tuple_target = 8160);

-- +goose StatementBegin
DO $$
DECLARE
    bad record;
BEGIN
    SELECT id, octet_length(hash) AS n INTO bad FROM ledger.hashes WHERE octet_length(hash) <> 32 LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'ledger.hashes id % holds % bytes, not 32: audit the journal (tani verify) before migrating', bad.id, bad.n;
    END IF;
END
$$;
-- +goose StatementEnd

-- Runs of at most 4,096 hashes (128 KiB), split where ids are not
-- consecutive: within a run of consecutive ids, id - row_number() is
-- constant.
INSERT INTO ledger.hash_runs (first, hashes)
SELECT min(id), string_agg(hash, ''::bytea ORDER BY id)
FROM (
    SELECT id, hash, grp, (row_number() OVER (PARTITION BY grp ORDER BY id) - 1) / 4096 AS part
    FROM (SELECT id, hash, id - row_number() OVER (ORDER BY id) AS grp FROM ledger.hashes) AS g
) AS p
GROUP BY grp, part;

DROP TABLE ledger.hashes;

-- A read-only view with the old table's shape, for operators and SQL that
-- reads single hashes. The journal never reads it: a lookup by id here
-- expands every run (see ledger.append_guard for the indexed lookup).
CREATE VIEW ledger.hashes AS
    SELECT r.first + g.i AS id, substring(r.hashes FROM (g.i * 32 + 1)::int FOR 32) AS hash
    FROM ledger.hash_runs AS r
    CROSS JOIN LATERAL generate_series(0::bigint, octet_length(r.hashes) / 32 - 1) AS g(i);

-- The guard as in 00040_append_guard.sql, each frontier hash found in the
-- run holding it: the one with the greatest first at or below its id (one
-- backward primary-key probe), read with substring.
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION ledger.append_guard(expected_size bigint, frontier_ids bigint[], frontier_hashes bytea[], record_ids text[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    i integer;
    actual bigint;
    erased text;
    stored bytea;
BEGIN
    SELECT size INTO actual FROM ledger.tree;
    IF actual IS DISTINCT FROM expected_size THEN
        RAISE EXCEPTION 'ledger: the tree has size %, not %', actual, expected_size
            USING ERRCODE = 'serialization_failure';
    END IF;
    FOR i IN 1 .. coalesce(cardinality(frontier_ids), 0) LOOP
        -- substring in the query, not of a variable: a long run is
        -- TOASTed, and only the chunk holding the hash is fetched
        -- (octet_length reads the TOAST pointer alone).
        SELECT CASE WHEN (frontier_ids[i] - first + 1) * 32 <= octet_length(hashes)
                THEN substring(hashes FROM ((frontier_ids[i] - first) * 32 + 1)::int FOR 32) END
            INTO stored
            FROM ledger.hash_runs WHERE first <= frontier_ids[i] ORDER BY first DESC LIMIT 1;
        IF stored IS DISTINCT FROM frontier_hashes[i] THEN
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

-- +goose Down
-- Overlapping runs (tampering: the audit names them) make the insert fail
-- on the primary key rather than pick one of their hashes.
CREATE TABLE ledger.hashes_table (
    id   bigint PRIMARY KEY,
    hash bytea  NOT NULL
);
INSERT INTO ledger.hashes_table (id, hash) SELECT id, hash FROM ledger.hashes;
DROP VIEW ledger.hashes;
DROP TABLE ledger.hash_runs;
ALTER TABLE ledger.hashes_table RENAME TO hashes;
ALTER INDEX ledger.hashes_table_pkey RENAME TO hashes_pkey;

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
