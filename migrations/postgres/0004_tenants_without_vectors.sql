-- A tenant may keep no content vectors (dimension and metric both NULL; its entities' embedding
-- is NULL), and says how its collaborative model is trained (JSON; '{}' means the defaults).
ALTER TABLE tenants
    ALTER COLUMN dimension DROP NOT NULL,
    ALTER COLUMN metric DROP NOT NULL,
    ADD CONSTRAINT tenants_vectors CHECK ((dimension IS NULL) = (metric IS NULL)),
    ADD COLUMN learning text NOT NULL DEFAULT '{}';
ALTER TABLE entities ALTER COLUMN embedding DROP NOT NULL;
