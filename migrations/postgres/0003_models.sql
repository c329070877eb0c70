-- Each tenant's collaborative model, its newest version only: what a restart or another server
-- loads instead of training again. A write that is not newer than the stored version changes
-- nothing, so versions only go up.
CREATE TABLE models (
    tenant       text PRIMARY KEY REFERENCES tenants (name) ON DELETE CASCADE,
    version      bigint NOT NULL CHECK (version >= 1),
    -- Milliseconds since the Unix epoch.
    trained_at   bigint NOT NULL,
    interactions bigint NOT NULL,
    users        bigint NOT NULL,
    items        bigint NOT NULL,
    factors      integer NOT NULL CHECK (factors BETWEEN 1 AND 1024),
    seconds      double precision NOT NULL,
    -- The tenant's interactions recorded when it was trained.
    recorded     bigint NOT NULL,
    -- The training parameters as JSON; a fold-in solves with them.
    params       text NOT NULL,
    -- The entity ids in item order, each as its length (two bytes, little-endian) then its bytes.
    item_ids     bytea NOT NULL,
    -- Little-endian f32s, `factors` per item, in item order.
    item_factors bytea NOT NULL,
    saved_at     timestamptz NOT NULL DEFAULT now()
);
