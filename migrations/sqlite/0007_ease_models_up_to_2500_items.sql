-- An EASE model's `factors` is its item count, up to EASE's 2,500 items; 0003 allowed 1,024,
-- and an EASE model of 1,025 to 2,500 items could not be kept. SQLite cannot change a CHECK in
-- place: the table is made again with the new one, and its rows copied.
CREATE TABLE models_new (
    tenant       TEXT PRIMARY KEY REFERENCES tenants (name) ON DELETE CASCADE,
    version      INTEGER NOT NULL CHECK (version >= 1),
    trained_at   INTEGER NOT NULL,
    interactions INTEGER NOT NULL,
    users        INTEGER NOT NULL,
    items        INTEGER NOT NULL,
    factors      INTEGER NOT NULL CHECK (factors BETWEEN 1 AND 2500),
    seconds      REAL NOT NULL,
    recorded     INTEGER NOT NULL,
    params       TEXT NOT NULL,
    item_ids     BLOB NOT NULL,
    item_factors BLOB NOT NULL
) STRICT;
INSERT INTO models_new SELECT * FROM models;
DROP TABLE models;
ALTER TABLE models_new RENAME TO models;
