-- Every write to a tenant bumps its version in the write's own transaction: versions count a
-- tenant's changes 1, 2, 3, ... in commit order, and cached answers are named by them.
ALTER TABLE tenants ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
-- A random name for this incarnation of the tenant (set on insert: SQLite cannot add a column
-- with a random default).
ALTER TABLE tenants ADD COLUMN lineage INTEGER NOT NULL DEFAULT 0;
UPDATE tenants SET lineage = random();
