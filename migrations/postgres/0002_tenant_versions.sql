-- Every write to a tenant bumps its version in the write's own transaction, which locks the
-- tenant's row until the commit: versions count a tenant's changes 1, 2, 3, ... in commit order.
-- Servers apply changes in that order and name cached answers by the versions they read.
ALTER TABLE tenants ADD COLUMN version bigint NOT NULL DEFAULT 0;
-- A random name for this incarnation of the tenant: one deleted and made again gets another,
-- so no cached answer about the old one can be taken for the new one.
ALTER TABLE tenants ADD COLUMN lineage bigint NOT NULL DEFAULT (random() * 4e18)::bigint;
-- From now on a row's batch is the version of the change that wrote it; older batch numbers
-- came from a sequence and mean nothing next to versions.
UPDATE entities SET batch = 0;
UPDATE interactions SET batch = 0;
