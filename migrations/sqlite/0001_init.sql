-- reco's schema on SQLite, the embedded default. Vectors are little-endian f32 blobs.
CREATE TABLE tenants (
    name       TEXT PRIMARY KEY,
    dimension  INTEGER NOT NULL CHECK (dimension BETWEEN 1 AND 16000),
    metric     TEXT NOT NULL CHECK (metric IN ('cosine', 'dot', 'euclidean')),
    created_at INTEGER NOT NULL DEFAULT (unixepoch())
) STRICT;

CREATE TABLE entities (
    tenant     TEXT NOT NULL REFERENCES tenants (name) ON DELETE CASCADE,
    id         TEXT NOT NULL,
    embedding  BLOB NOT NULL,
    category   TEXT,
    tags       TEXT NOT NULL DEFAULT '[]',
    attributes TEXT,
    PRIMARY KEY (tenant, id)
) STRICT;

CREATE TABLE interactions (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant    TEXT NOT NULL REFERENCES tenants (name) ON DELETE CASCADE,
    user_id   TEXT NOT NULL,
    entity_id TEXT NOT NULL,
    kind      TEXT NOT NULL CHECK (kind IN ('view', 'click', 'like', 'purchase', 'dislike')),
    weight    REAL,
    at_ms     INTEGER NOT NULL
) STRICT;
CREATE INDEX interactions_recent ON interactions (tenant, at_ms);

CREATE TABLE api_keys (
    hash       BLOB PRIMARY KEY CHECK (length(hash) = 32),
    tenant     TEXT NOT NULL REFERENCES tenants (name) ON DELETE CASCADE,
    created_at INTEGER NOT NULL DEFAULT (unixepoch())
) STRICT;
CREATE INDEX api_keys_tenant ON api_keys (tenant);
