-- A tenant may name its own request budget (requests per second; NULL: the server's default).
-- (Attributes are TEXT here already, kept as sent.)
ALTER TABLE tenants ADD COLUMN rate_limit INTEGER CHECK (rate_limit > 0);
