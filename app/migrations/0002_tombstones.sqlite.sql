-- A deleted record leaves a tombstone for a while (data empty, version one
-- past the last): versions never go back after a delete.
ALTER TABLE kv_store ADD COLUMN deleted BOOLEAN NOT NULL DEFAULT FALSE;
