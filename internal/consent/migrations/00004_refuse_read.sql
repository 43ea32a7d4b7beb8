-- +goose Up
-- refuse_read aborts the transaction of a gated read that no live consent
-- allows (Gate.ReadBatch): the read's queries, sent in the same round trip
-- right behind the check, then never run, so no row of the farmer leaves
-- the database. Its SQLSTATE (TG403) is the gate's, told apart from every
-- other failure.
-- +goose StatementBegin
CREATE FUNCTION consent.refuse_read() RETURNS text LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    RAISE EXCEPTION 'no live consent allows this read' USING ERRCODE = 'TG403';
END
$$;
-- +goose StatementEnd

-- +goose Down
DROP FUNCTION consent.refuse_read();
