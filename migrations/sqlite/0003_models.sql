-- Each tenant's collaborative model, its newest version only: what a restart loads instead of
-- training again. A write that is not newer than the stored version changes nothing.
CREATE TABLE models (
    tenant       TEXT PRIMARY KEY REFERENCES tenants (name) ON DELETE CASCADE,
    version      INTEGER NOT NULL CHECK (version >= 1),
    -- Milliseconds since the Unix epoch.
    trained_at   INTEGER NOT NULL,
    interactions INTEGER NOT NULL,
    users        INTEGER NOT NULL,
    items        INTEGER NOT NULL,
    factors      INTEGER NOT NULL CHECK (factors BETWEEN 1 AND 1024),
    seconds      REAL NOT NULL,
    recorded     INTEGER NOT NULL,
    -- The training parameters as JSON.
    params       TEXT NOT NULL,
    -- The entity ids in item order, each as its length (two bytes, little-endian) then its bytes.
    item_ids     BLOB NOT NULL,
    -- Little-endian f32s, `factors` per item, in item order.
    item_factors BLOB NOT NULL
) STRICT;
