-- Initial schema. Applied migrations never change: add a new file instead.
-- Stored formats named below (ciphertext blobs, wrapped keys, hashes) must
-- keep their meaning, because old rows are read with new code.

-- A subject is the person that records describe. It is never deleted: erasure
-- keeps the row as a tombstone (erased_at set) so replays and restores can
-- re-apply the erasure.
CREATE TABLE subjects (
  id uuid PRIMARY KEY,
  -- `sub_` + 26 lowercase base32 characters of 16 random bytes.
  token text NOT NULL UNIQUE,
  created_at timestamptz NOT NULL DEFAULT now(),
  erased_at timestamptz
);

-- One data encryption key per subject, wrapped by the KEK with the encryption
-- context { subject: <token> }. Deleting the row crypto-shreds the subject.
CREATE TABLE data_keys (
  subject_id uuid PRIMARY KEY REFERENCES subjects (id),
  kek_version text NOT NULL,
  wrapped bytea NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);

-- One record per subject and record type. `fields` maps a field name to the
-- base64 of its envelope blob (format byte 0x01 | nonce | ciphertext | tag),
-- whose plaintext is the JSON of the normalized value and whose AAD is
-- `<recordType>.<field>.<subjectToken>`.
CREATE TABLE records (
  subject_id uuid NOT NULL REFERENCES subjects (id),
  record_type text NOT NULL,
  fields jsonb NOT NULL,
  version integer NOT NULL,
  policy_version integer NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  erased_at timestamptz,
  PRIMARY KEY (subject_id, record_type)
);

-- History of every write: which fields changed, who changed them and why,
-- and the new ciphertexts (NULL after erasure).
CREATE TABLE record_versions (
  subject_id uuid NOT NULL REFERENCES subjects (id),
  record_type text NOT NULL,
  version integer NOT NULL,
  changed_fields text[] NOT NULL,
  actor_id text NOT NULL,
  actor_location text NOT NULL,
  purpose text NOT NULL,
  policy_version integer NOT NULL,
  fields jsonb,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (subject_id, record_type, version)
);

-- Keyed hashes of normalized values of searchable fields, so a record can be
-- found by value without decrypting anything. `key_version` is the keyring
-- version of the blind-index key.
CREATE TABLE blind_index (
  record_type text NOT NULL,
  field text NOT NULL,
  key_version integer NOT NULL,
  digest bytea NOT NULL,
  subject_id uuid NOT NULL REFERENCES subjects (id),
  PRIMARY KEY (record_type, field, key_version, digest, subject_id)
);
CREATE INDEX blind_index_subject ON blind_index (subject_id);

-- Tokenization secrets of the keyring, wrapped by the KEK with the encryption
-- context { purpose: 'tokenization-secret', version: '<n>' }.
CREATE TABLE tokenization_keys (
  version integer PRIMARY KEY,
  kek_version text NOT NULL,
  wrapped bytea NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);

-- Change events, written in the same transaction as the change. A worker
-- delivers only the oldest open event of a subject per destination, so
-- delivery is in order per subject.
CREATE TABLE outbox (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  destination text NOT NULL,
  subject_id uuid NOT NULL REFERENCES subjects (id),
  subject_token text NOT NULL,
  record_type text NOT NULL,
  op text NOT NULL CHECK (op IN ('upsert', 'erase')),
  record_version integer NOT NULL,
  attempts integer NOT NULL DEFAULT 0,
  available_at timestamptz NOT NULL DEFAULT now(),
  lease_until timestamptz,
  last_error_code text,
  created_at timestamptz NOT NULL DEFAULT now(),
  completed_at timestamptz
);
CREATE INDEX outbox_open ON outbox (destination, subject_id, id) WHERE completed_at IS NULL;

-- Append-only, hash-chained audit log. hash = HMAC-SHA256(audit key of
-- `key_version`, canonical JSON of prev_hash and the row's fields). Values
-- appear only as keyed HMACs in `value_hmacs`.
CREATE TABLE audit_log (
  seq bigint PRIMARY KEY,
  at timestamptz NOT NULL,
  actor_id text NOT NULL,
  actor_location text NOT NULL,
  action text NOT NULL,
  purpose text,
  subject_token text,
  record_type text,
  fields text[] NOT NULL,
  value_hmacs jsonb NOT NULL,
  outcome text NOT NULL,
  key_version integer NOT NULL,
  prev_hash bytea NOT NULL,
  hash bytea NOT NULL
);

-- The last sequence number and hash of the audit chain. Appenders lock this
-- one row, which orders concurrent appends and lets verification notice a
-- removed tail row.
CREATE TABLE audit_head (
  id integer PRIMARY KEY CHECK (id = 1),
  seq bigint NOT NULL,
  hash bytea NOT NULL
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, decode(repeat('00', 32), 'hex'));

-- API credentials. Only the SHA-256 of the secret is stored.
CREATE TABLE credentials (
  id text PRIMARY KEY,
  name text NOT NULL,
  location text NOT NULL CHECK (location IN ('in-country', 'abroad')),
  scopes jsonb NOT NULL,
  secret_hash bytea NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  revoked_at timestamptz
);

-- Idempotency keys of create requests, per actor. `request_hmac` is a keyed
-- HMAC of the normalized request, so a reused key with another request is
-- detected without storing the values.
CREATE TABLE idempotency_keys (
  actor_id text NOT NULL,
  key text NOT NULL,
  record_type text NOT NULL,
  request_hmac bytea NOT NULL,
  subject_id uuid NOT NULL REFERENCES subjects (id),
  version integer NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (actor_id, key)
);
