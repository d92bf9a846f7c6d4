import type { RecordView } from '../store/types.ts';
import { randomTokenLookup, type RandomTokenRequest } from '../store/token-store.ts';
import { fieldNamespace } from '../tokenizer/form.ts';
import type { GatewayDeps } from './deps.ts';
import { effectiveForm, recordForCaller, type RecordResponse, type Viewer } from './egress.ts';

/**
 * Shapes a record for a caller like `recordForCaller`, first resolving or
 * creating the random tokens of the fields that the caller receives as random
 * tokens, so those fields are sent as tokens instead of being left out.
 */
export async function recordWithRandomTokens(
  deps: Pick<GatewayDeps, 'policy' | 'keyring'> & { vault: Pick<GatewayDeps['vault'], 'tokens'> },
  view: RecordView,
  viewer: Viewer,
): Promise<RecordResponse> {
  const recordType = deps.policy.recordTypes[view.recordType];
  const requests: RandomTokenRequest[] = [];
  for (const [fieldName, value] of Object.entries(view.values)) {
    const field = recordType?.fields[fieldName];
    if (field?.token?.kind !== 'random' || effectiveForm(viewer, view.recordType, fieldName, field, true) !== 'token') {
      continue;
    }
    requests.push({ namespace: fieldNamespace(view.recordType, fieldName, field), value: String(value), stable: field.token.stable === true });
  }
  if (requests.length === 0) {
    return recordForCaller(deps.policy, deps.keyring, view, viewer);
  }
  const tokens = await deps.vault.tokens.randomTokensForSubject(view.subjectToken, requests);
  return recordForCaller(deps.policy, deps.keyring, view, viewer, randomTokenLookup(tokens));
}
