-- A process keeps the keyring it loaded at start, so one started before a
-- tokenization key rotation still writes blind indexes, token mappings and
-- partial-copy versions under the old version. Once that version is retired,
-- such rows can no longer be found or detokenized. These triggers make the
-- database reject them, with SQLSTATE DK001, so the write fails whole and the
-- process can be restarted instead of storing rows that no key can match.
-- `domicile keys retire-tokenization` takes SHARE locks on the three tables
-- before it counts what uses the version, so a write that committed before
-- the retirement is counted and one that commits after it is rejected.
CREATE FUNCTION domicile_reject_retired_key_versions() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  retired integer;
BEGIN
  SELECT k.version INTO retired
  FROM written_rows w JOIN tokenization_keys k ON k.version = w.key_version
  WHERE k.retired_at IS NOT NULL
  LIMIT 1;
  IF retired IS NOT NULL THEN
    RAISE EXCEPTION 'tokenization key version % is retired', retired
      USING ERRCODE = 'DK001',
            HINT = 'restart every process that loaded the tokenization keys before the version was retired';
  END IF;
  RETURN NULL;
END;
$$;

CREATE TRIGGER blind_index_retired_key_version
  AFTER INSERT ON blind_index REFERENCING NEW TABLE AS written_rows
  FOR EACH STATEMENT EXECUTE FUNCTION domicile_reject_retired_key_versions();

CREATE TRIGGER token_mappings_retired_key_version
  AFTER INSERT ON token_mappings REFERENCING NEW TABLE AS written_rows
  FOR EACH STATEMENT EXECUTE FUNCTION domicile_reject_retired_key_versions();

CREATE TRIGGER token_version_uses_inserted_retired_key_version
  AFTER INSERT ON token_version_uses REFERENCING NEW TABLE AS written_rows
  FOR EACH STATEMENT EXECUTE FUNCTION domicile_reject_retired_key_versions();

CREATE TRIGGER token_version_uses_updated_retired_key_version
  AFTER UPDATE ON token_version_uses REFERENCING NEW TABLE AS written_rows
  FOR EACH STATEMENT EXECUTE FUNCTION domicile_reject_retired_key_versions();
