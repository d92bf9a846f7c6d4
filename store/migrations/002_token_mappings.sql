-- Random tokens and the key versions that tokens abroad depend on.

-- Data keys of token namespaces, for random tokens that the tokenize API makes
-- without a subject. Wrapped by the KEK with the encryption context
-- { purpose: 'token-namespace', namespace: <namespace> }.
CREATE TABLE namespace_keys (
  namespace text PRIMARY KEY,
  kek_version text NOT NULL,
  wrapped bytea NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);

-- One row per random token and owner. `token` is `rnd_v<key_version>_` + 26
-- base32 characters. `ciphertext` is an envelope blob (format byte 0x01 |
-- nonce | ciphertext | tag) of the normalized value: under the subject's data
-- key when `subject_id` is set (erasure deletes these rows and shreds the key),
-- else under the namespace's data key. The AAD is `token.<namespace>.<token>`,
-- followed by `.<subjectToken>` for subject rows.
-- `value_digest` is HMAC-SHA256 under the keyring's blind-index key of
-- namespace `random-token/<namespace>` and version `key_version`; it is NULL
-- for tokens that are neither stable nor owned by a subject. A stable token
-- is shared by every row of the same namespace and digest, so several subjects
-- may hold rows with one token.
CREATE TABLE token_mappings (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  token text NOT NULL,
  namespace text NOT NULL,
  subject_id uuid REFERENCES subjects (id),
  key_version integer NOT NULL,
  value_digest bytea,
  stable boolean NOT NULL,
  ciphertext bytea NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX token_mappings_token ON token_mappings (token, namespace);
CREATE INDEX token_mappings_subject ON token_mappings (subject_id) WHERE subject_id IS NOT NULL;
CREATE UNIQUE INDEX token_mappings_subject_value ON token_mappings (subject_id, namespace, key_version, value_digest)
  WHERE subject_id IS NOT NULL;
CREATE UNIQUE INDEX token_mappings_stable_shared ON token_mappings (namespace, key_version, value_digest)
  WHERE subject_id IS NULL AND stable;
CREATE INDEX token_mappings_stable ON token_mappings (namespace, key_version, value_digest) WHERE stable;

-- Keyring version of the tokens in the last partial copy projected for each
-- destination and record. Format-preserving tokens cannot carry their key
-- version, so this table tells whether a version is still needed before it is
-- retired. Erasure deletes the subject's rows.
CREATE TABLE token_version_uses (
  destination text NOT NULL,
  subject_id uuid NOT NULL REFERENCES subjects (id),
  record_type text NOT NULL,
  key_version integer NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (destination, subject_id, record_type)
);
CREATE INDEX token_version_uses_version ON token_version_uses (key_version);

-- Item counts of batch operations (tokenize, detokenize) by field name. The
-- audit chain hash covers the column only when it is not NULL, so rows
-- written before this migration verify unchanged.
ALTER TABLE audit_log ADD COLUMN item_counts jsonb;
