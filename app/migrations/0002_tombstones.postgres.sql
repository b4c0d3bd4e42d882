-- A deleted record leaves a tombstone for a while (data empty, version one
-- past the last): versions never go back after a delete, and a cache copy
-- made from an older read cannot bring the record back.
ALTER TABLE kv_store ADD COLUMN IF NOT EXISTS deleted BOOLEAN NOT NULL DEFAULT FALSE;
