-- The optional id a client gives an interaction: sending it again records it once, per
-- tenant, for ever (the contract's idempotent interactions).
ALTER TABLE interactions ADD COLUMN key text;
CREATE UNIQUE INDEX interactions_key ON interactions (tenant, key) WHERE key IS NOT NULL;
