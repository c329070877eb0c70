-- reco's schema on PostgreSQL with pgvector.
CREATE EXTENSION IF NOT EXISTS vector;

CREATE TABLE tenants (
    -- A small number used to name the tenant's HNSW index (a name may be 64 characters).
    tid        bigserial UNIQUE,
    name       text PRIMARY KEY CHECK (name ~ '^[a-z0-9_-]{1,64}$'),
    dimension  integer NOT NULL CHECK (dimension BETWEEN 1 AND 16000),
    metric     text NOT NULL CHECK (metric IN ('cosine', 'dot', 'euclidean')),
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Every write is tagged with a batch from this sequence; the change feed names batches.
CREATE SEQUENCE change_batches;

CREATE TABLE entities (
    tenant     text NOT NULL REFERENCES tenants (name) ON DELETE CASCADE,
    id         text NOT NULL CHECK (octet_length(id) BETWEEN 1 AND 256),
    -- Untyped, since tenants differ in dimension; each tenant's HNSW index casts to its own.
    embedding  vector NOT NULL,
    category   text,
    tags       jsonb NOT NULL DEFAULT '[]',
    attributes jsonb,
    batch      bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, id)
);
-- Filters of the database ranking mode, and the change feed's fetch by batch.
CREATE INDEX entities_category ON entities (tenant, category);
CREATE INDEX entities_tags ON entities USING gin (tags);
CREATE INDEX entities_batch ON entities (tenant, batch);

CREATE TABLE interactions (
    seq       bigserial PRIMARY KEY,
    tenant    text NOT NULL REFERENCES tenants (name) ON DELETE CASCADE,
    user_id   text NOT NULL,
    entity_id text NOT NULL,
    kind      text NOT NULL CHECK (kind IN ('view', 'click', 'like', 'purchase', 'dislike')),
    weight    real,
    -- Milliseconds since the Unix epoch, exactly as the engine counts them.
    at_ms     bigint NOT NULL,
    batch     bigint NOT NULL
);
-- Start-up reads a tenant's recent interactions in arrival order; the feed fetches by batch.
CREATE INDEX interactions_recent ON interactions (tenant, at_ms);
CREATE INDEX interactions_batch ON interactions (tenant, batch);

CREATE TABLE api_keys (
    -- SHA-256 of the key: the key itself is never stored.
    hash       bytea PRIMARY KEY CHECK (length(hash) = 32),
    tenant     text NOT NULL REFERENCES tenants (name) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX api_keys_tenant ON api_keys (tenant);
