-- Audit entries written by operations and not yet chained. An operation
-- writes its entries here in its own transaction, without a lock; the sealer
-- locks audit_head, chains the committed entries into audit_log in id order
-- and deletes them here, in one transaction. Values appear only as keyed
-- HMACs, as in audit_log. `mac` is an HMAC of the entry and its random
-- `nonce` under an audit key, so the sealer rejects an entry that was edited
-- or inserted by anyone without the keyring, and a copied entry breaks the
-- unique nonce.
CREATE TABLE audit_pending (
  id bigserial PRIMARY KEY,
  at timestamptz NOT NULL,
  actor_id text NOT NULL,
  actor_location text NOT NULL,
  action text NOT NULL,
  purpose text,
  subject_token text,
  record_type text,
  fields text[] NOT NULL,
  value_hmacs jsonb NOT NULL,
  item_counts jsonb,
  outcome text NOT NULL,
  key_version integer NOT NULL,
  nonce bytea NOT NULL UNIQUE,
  mac bytea NOT NULL
);

-- The nonce of a pending entry stays with it in audit_log, inside the chain
-- hash, so a copy of an entry replayed into audit_pending after its seal is
-- rejected by the next seal. Rows chained before this column have none.
ALTER TABLE audit_log ADD COLUMN nonce bytea;
CREATE UNIQUE INDEX audit_log_nonce ON audit_log (nonce) WHERE nonce IS NOT NULL;
