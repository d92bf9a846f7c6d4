import { withTransaction } from './database.ts';
import { unwrapDataKey } from './record-crypto.ts';
import { detokenizeBatch, tokenizeBatch, type DetokenizeInput, type DetokenizeResult, type TokenizeInput, type TokenizeResult } from './token-batch.ts';
import { NamespaceKeys, subjectRandomToken } from './token-mappings.ts';
import { findSubject, requireNotErased, type VaultDeps } from './vault-common.ts';

export type { DetokenizeInput, DetokenizeItem, DetokenizeResult, ItemError, TokenizeInput, TokenizeItem, TokenizeResult } from './token-batch.ts';

/** One value of a subject that an egress path shows as a random token. */
export interface RandomTokenRequest {
  /** Token namespace, already prefixed for destinations with their own namespace. */
  namespace: string;
  /** Normalized value as text, as `applyForm` passes it to its `randomToken` callback. */
  value: string;
  stable: boolean;
}

/** Random tokens by `randomTokenKey(namespace, value)`. */
export type RandomTokens = ReadonlyMap<string, string>;

export interface TokenStore {
  /** Resolves or creates the random tokens of a subject's values in one transaction. */
  randomTokensForSubject(subjectToken: string, requests: readonly RandomTokenRequest[]): Promise<RandomTokens>;
  /** Records the keyring version of the tokens in the partial copy that a destination now receives. */
  recordTokenVersion(input: { destination: string; subjectToken: string; recordType: string; keyVersion: number }): Promise<void>;
  tokenize(input: TokenizeInput): Promise<TokenizeResult[]>;
  detokenize(input: DetokenizeInput): Promise<DetokenizeResult[]>;
}

/** Key of a value in `RandomTokens`; NUL occurs in neither part. */
export function randomTokenKey(namespace: string, value: string): string {
  return `${namespace}\u0000${value}`;
}

/** Returns the `applyForm` callback that reads tokens prepared by `randomTokensForSubject`. */
export function randomTokenLookup(tokens: RandomTokens): (namespace: string, value: string) => string {
  return (namespace, value) => {
    const token = tokens.get(randomTokenKey(namespace, value));
    if (token === undefined) {
      throw new Error('random token was not prepared before projection');
    }
    return token;
  };
}

/** Creates the store part of random tokens and of the tokenize and detokenize API. */
export function createTokenStore(deps: VaultDeps): TokenStore {
  const namespaceKeys = new NamespaceKeys(deps.db, deps.keys);
  return {
    randomTokensForSubject: (subjectToken, requests) => randomTokensForSubject(deps, subjectToken, requests),
    recordTokenVersion: (input) => recordTokenVersion(deps, input),
    tokenize: (input) => tokenizeBatch(deps, namespaceKeys, input),
    detokenize: (input) => detokenizeBatch(deps, namespaceKeys, input),
  };
}

async function randomTokensForSubject(deps: VaultDeps, subjectToken: string, requests: readonly RandomTokenRequest[]): Promise<RandomTokens> {
  const tokens = new Map<string, string>();
  if (requests.length === 0) {
    return tokens;
  }
  await withTransaction(deps.db, async (client) => {
    const subject = await findSubject(client, subjectToken, { lock: false });
    requireNotErased(subject);
    const dataKey = await unwrapDataKey(client, deps.keys, subject);
    try {
      for (const request of requests) {
        const token = await subjectRandomToken(client, deps.keyring, { subject, dataKey, ...request });
        tokens.set(randomTokenKey(request.namespace, request.value), token);
      }
    } finally {
      dataKey.fill(0);
    }
  });
  return tokens;
}

async function recordTokenVersion(
  deps: VaultDeps,
  input: { destination: string; subjectToken: string; recordType: string; keyVersion: number },
): Promise<void> {
  // An erased subject matches no row, so nothing is recorded for it.
  await deps.db.pool.query(
    `INSERT INTO token_version_uses (destination, subject_id, record_type, key_version)
     SELECT $1, id, $3, $4 FROM subjects WHERE token = $2 AND erased_at IS NULL
     ON CONFLICT (destination, subject_id, record_type) DO UPDATE SET key_version = EXCLUDED.key_version, updated_at = now()`,
    [input.destination, input.subjectToken, input.recordType, input.keyVersion],
  );
}
