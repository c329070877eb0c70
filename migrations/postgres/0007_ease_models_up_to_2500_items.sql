-- An EASE model's `factors` is its item count, up to EASE's 2,500 items; 0003 allowed 1,024,
-- and an EASE model of 1,025 to 2,500 items could not be kept.
ALTER TABLE models DROP CONSTRAINT models_factors_check;
ALTER TABLE models ADD CONSTRAINT models_factors_check CHECK (factors BETWEEN 1 AND 2500);
