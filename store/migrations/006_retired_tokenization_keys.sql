-- A retired tokenization key version keeps its row: `wrapped` then holds its
-- audit keys instead of its secret, wrapped by the KEK under the same
-- context, so the audit log, its anchors and the erasure log written under
-- that version stay verifiable while nothing can derive tokens from it.
ALTER TABLE tokenization_keys ADD COLUMN retired_at timestamptz;
