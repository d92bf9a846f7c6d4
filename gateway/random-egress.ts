import type { RecordView } from '../store/types.ts';
import { randomTokenLookup, type RandomTokenRequest } from '../store/token-store.ts';
import { parseToken } from '../tokenizer/deterministic.ts';
import { fieldNamespace, tokenKindOf } from '../tokenizer/form.ts';
import type { Keyring } from '../tokenizer/keyring.ts';
import type { GatewayDeps } from './deps.ts';
import { effectiveForm, recordForCaller, type RecordResponse, type Viewer } from './egress.ts';

export interface TokenizedRecordResponse extends RecordResponse {
  /**
   * Tokenization key version of each field sent as a token. Format-preserving
   * tokens cannot carry it, and detokenizing them needs it. Absent when no
   * field is a token.
   */
  tokenVersions?: Record<string, number>;
}

/** Adds the key version of every token in the response, read from the token where it carries one. */
function withTokenVersions(response: RecordResponse, keyring: Keyring): TokenizedRecordResponse {
  const tokenVersions: Record<string, number> = {};
  for (const [fieldName, form] of Object.entries(response.forms)) {
    const value = response.values[fieldName];
    if (form === 'token' && value !== undefined) {
      tokenVersions[fieldName] = (typeof value === 'string' ? parseToken(value)?.version : undefined) ?? keyring.currentVersion;
    }
  }
  return Object.keys(tokenVersions).length === 0 ? response : { ...response, tokenVersions };
}

/**
 * Shapes a record for a caller like `recordForCaller`, first resolving or
 * creating the random tokens of the fields that the caller receives as random
 * tokens, so those fields are sent as tokens instead of being left out.
 */
export async function recordWithRandomTokens(
  deps: Pick<GatewayDeps, 'policy' | 'keyring'> & { vault: Pick<GatewayDeps['vault'], 'tokens'> },
  view: RecordView,
  viewer: Viewer,
): Promise<TokenizedRecordResponse> {
  const recordType = deps.policy.recordTypes[view.recordType];
  const requests: RandomTokenRequest[] = [];
  for (const [fieldName, value] of Object.entries(view.values)) {
    const field = recordType?.fields[fieldName];
    if (field === undefined || tokenKindOf(field, value) !== 'random' || effectiveForm(viewer, view.recordType, fieldName, field, true) !== 'token') {
      continue;
    }
    // Fallback tokens of format-preserving fields are stable, like the FF1 tokens they stand in for.
    requests.push({ namespace: fieldNamespace(view.recordType, fieldName, field), value: String(value), stable: field.token?.stable === true || field.token?.kind === 'format-preserving' });
  }
  if (requests.length === 0) {
    return withTokenVersions(recordForCaller(deps.policy, deps.keyring, view, viewer), deps.keyring);
  }
  const tokens = await deps.vault.tokens.randomTokensForSubject(view.subjectToken, requests);
  return withTokenVersions(recordForCaller(deps.policy, deps.keyring, view, viewer, randomTokenLookup(tokens)), deps.keyring);
}
