-- A tenant may name its own request budget (requests per second; NULL: the server's default).
ALTER TABLE tenants ADD COLUMN rate_limit integer CHECK (rate_limit > 0);
-- Attributes are kept as the text that was sent (`json` keeps it verbatim; `jsonb` rewrote
-- numbers and dropped keys given twice), so they come back equal on every backend.
ALTER TABLE entities ALTER COLUMN attributes TYPE json USING attributes::json;
