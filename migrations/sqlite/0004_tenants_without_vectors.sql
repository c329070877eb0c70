-- A tenant may keep no content vectors (`vectors` 0: its dimension and metric columns then
-- mean nothing, and its entities' embeddings are empty blobs), and says how its collaborative
-- model is trained (JSON; '{}' means the defaults). SQLite cannot drop a NOT NULL in place, and
-- rebuilding `tenants` would cascade into every table that names it, hence the flag.
ALTER TABLE tenants ADD COLUMN vectors INTEGER NOT NULL DEFAULT 1 CHECK (vectors IN (0, 1));
ALTER TABLE tenants ADD COLUMN learning TEXT NOT NULL DEFAULT '{}';
