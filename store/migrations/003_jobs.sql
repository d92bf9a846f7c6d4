-- Long-running maintenance jobs (such as rewrapping every data key after a KEK
-- rotation), run by worker processes. A worker claims a job with
-- FOR UPDATE SKIP LOCKED and a lease, and stores its progress in `cursor`, so
-- another worker resumes where a stopped one left off.
CREATE TABLE jobs (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  kind text NOT NULL,
  state text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'running', 'completed', 'failed')),
  -- Job input, such as { "targetKekVersion": "local:2" }. Never personal data.
  params jsonb NOT NULL DEFAULT '{}'::jsonb,
  -- Last key processed; the job continues after it.
  cursor text,
  done bigint NOT NULL DEFAULT 0,
  total bigint NOT NULL DEFAULT 0,
  attempts integer NOT NULL DEFAULT 0,
  lease_until timestamptz,
  last_error_code text,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  completed_at timestamptz
);
CREATE INDEX jobs_open ON jobs (kind, id) WHERE state IN ('pending', 'running');
