-- Retention: a worker erases subjects whose records have lapsed. The lease
-- column lets several workers share that work: a worker claims subjects with
-- FOR UPDATE SKIP LOCKED, sets the lease and erases them; another worker skips
-- a subject while its lease runs.
ALTER TABLE subjects ADD COLUMN retention_lease_until timestamptz;
CREATE INDEX records_retention ON records (record_type, updated_at) WHERE erased_at IS NULL;
