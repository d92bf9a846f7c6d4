import { DomicileError } from '../policy/errors.ts';
import type { FieldPolicy, Policy } from '../policy/schema.ts';
import { deterministicToken, parseToken } from '../tokenizer/deterministic.ts';
import { formatPreservingDetokenize, formatPreservingToken } from '../tokenizer/format-preserving.ts';
import { destinationNamespace, fieldNamespace, formatPreservingOptions, tokenKindOf } from '../tokenizer/form.ts';
import { normalizeValue } from '../tokenizer/normalize.ts';
import { appendAudit } from './audit.ts';
import { withTransaction, type Queryable } from './database.ts';
import { namespaceRandomToken, resolveRandomToken, type NamespaceKeys } from './token-mappings.ts';
import type { Actor } from './types.ts';
import type { VaultDeps } from './vault-common.ts';

/**
 * Batch tokenize and detokenize. Each item succeeds or fails on its own: a
 * client mistake in one item is an item error, never a failed batch. Every
 * call writes its audit entries in the same transaction as its mappings, so a
 * failed audit write fails the call and reveals nothing.
 */

export type ItemErrorCode = 'invalid_request' | 'invalid_value' | 'forbidden' | 'not_found' | 'not_reversible';

export interface ItemError {
  code: ItemErrorCode;
  message: string;
  /** JSON path of the item's member at fault, such as `$.items[3].value`. */
  path: string;
}

export interface TokenizeItem {
  recordType: string;
  field: string;
  value: unknown;
}

export interface TokenizeInput {
  actor: Actor;
  /** Record types that the caller's credential may use. */
  recordTypes: readonly string[];
  items: readonly TokenizeItem[];
}

/** `keyVersion` is the keyring version of the token; format-preserving tokens cannot carry it, so callers keep it. */
export type TokenizeResult = { token: string; keyVersion: number } | { error: ItemError };

export interface DetokenizeItem {
  recordType: string;
  field: string;
  token: string;
  /** Keyring version of a format-preserving token; the current version when absent. Other tokens carry theirs. */
  keyVersion?: number;
  /** Destination whose own token namespace made the token; the shared namespace when absent. */
  destination?: string;
}

export interface DetokenizeInput {
  actor: Actor;
  purpose: string;
  recordTypes: readonly string[];
  items: readonly DetokenizeItem[];
}

export type DetokenizeResult = { value: string | number | boolean } | { error: ItemError };

interface ResolvedField {
  recordType: string;
  fieldName: string;
  field: FieldPolicy;
  namespace: string;
}

function itemError(code: ItemErrorCode, path: string, message: string): { error: ItemError } {
  return { error: { code, path, message } };
}

/** Checks an item's record type, field and scope; returns the field or an item error. */
function resolveField(
  policy: Policy,
  recordTypes: readonly string[],
  item: { recordType: string; field: string; destination?: string },
  at: string,
): ResolvedField | { error: ItemError } {
  const recordType = Object.hasOwn(policy.recordTypes, item.recordType) ? policy.recordTypes[item.recordType] : undefined;
  if (recordType === undefined) {
    return itemError('invalid_request', `${at}.recordType`, 'names a record type that the data policy does not declare');
  }
  if (!recordTypes.includes(item.recordType)) {
    return itemError('forbidden', `${at}.recordType`, `credential lacks access to record type ${item.recordType}`);
  }
  const field = Object.hasOwn(recordType.fields, item.field) ? recordType.fields[item.field] : undefined;
  if (field === undefined) {
    return itemError('invalid_request', `${at}.field`, 'names a field that the record type does not declare');
  }
  if (field.egress === 'never') {
    return itemError('forbidden', `${at}.field`, 'has the egress rule never, so it has no tokens');
  }

  let namespace = fieldNamespace(item.recordType, item.field, field);
  if (item.destination !== undefined) {
    const destination = Object.hasOwn(policy.destinations, item.destination) ? policy.destinations[item.destination] : undefined;
    if (destination === undefined) {
      return itemError('invalid_request', `${at}.destination`, 'names a destination that the data policy does not declare');
    }
    if (destination.tokenNamespace === 'own') {
      namespace = destinationNamespace(item.destination, namespace);
    }
  }
  return { recordType: item.recordType, fieldName: item.field, field, namespace };
}

function isItemError(value: object): value is { error: ItemError } {
  return 'error' in value;
}

/** Field tokens of one audit entry per record type: which fields and how many items succeeded. */
class BatchAudit {
  private readonly groups = new Map<string, { fields: Set<string>; counts: Record<string, number> }>();

  asked(recordType: string, field: string): void {
    const group = this.groups.get(recordType) ?? { fields: new Set<string>(), counts: {} };
    group.fields.add(field);
    this.groups.set(recordType, group);
  }

  succeeded(recordType: string, field: string): void {
    const group = this.groups.get(recordType);
    if (group !== undefined) {
      group.counts[field] = (group.counts[field] ?? 0) + 1;
    }
  }

  async write(client: Queryable, deps: VaultDeps, entry: { actor: Actor; action: string; purpose?: string }): Promise<void> {
    if (this.groups.size === 0) {
      await appendAudit(client, deps.keyring, { ...entry, fields: [], itemCounts: {}, outcome: 'failed' });
      return;
    }
    for (const [recordType, group] of [...this.groups].sort(([a], [b]) => a.localeCompare(b))) {
      const total = Object.values(group.counts).reduce((sum, count) => sum + count, 0);
      await appendAudit(client, deps.keyring, {
        ...entry,
        recordType,
        fields: [...group.fields].sort(),
        itemCounts: group.counts,
        outcome: total > 0 ? 'ok' : 'failed',
      });
    }
  }
}

/**
 * Yields the items whose field resolves, each recorded in `audit` as requested.
 * An item that does not resolve gets its item error pushed to `results`, so
 * `results` stays in item order while the caller pushes one result per yield.
 */
function* resolvedItems<T extends TokenizeItem | DetokenizeItem>(
  policy: Policy,
  recordTypes: readonly string[],
  items: readonly T[],
  results: TokenizeResult[] | DetokenizeResult[],
  audit: BatchAudit,
): Generator<{ index: number; item: T; at: string; resolved: ResolvedField }> {
  for (const [index, item] of items.entries()) {
    const at = `$.items[${index}]`;
    const resolved = resolveField(policy, recordTypes, item, at);
    if (isItemError(resolved)) {
      results.push(resolved);
      continue;
    }
    audit.asked(resolved.recordType, resolved.fieldName);
    yield { index, item, at, resolved };
  }
}

/** Turns a value or a token into the token of the field's kind; throws DomicileError `invalid_value` for bad values. */
function tokenOf(deps: VaultDeps, resolved: ResolvedField, value: unknown): { text: string; token?: string } {
  const normalized = normalizeValue(resolved.field.type, value, { defaultRegion: deps.policy.defaultRegion, maxLength: resolved.field.maxLength });
  const text = typeof normalized === 'string' ? normalized : String(normalized);
  // A format-preserving field with `fallback: random` gives values below the FF1 domain floor a random token.
  switch (tokenKindOf(resolved.field, normalized)) {
    case 'deterministic':
      return { text, token: deterministicToken(deps.keyring, resolved.namespace, text) };
    case 'format-preserving':
      return { text, token: formatPreservingToken(deps.keyring, resolved.namespace, resolved.field.type, text, undefined, formatPreservingOptions(resolved.field)) };
    case 'random':
      return { text };
  }
}

export async function tokenizeBatch(deps: VaultDeps, namespaceKeys: NamespaceKeys, input: TokenizeInput): Promise<TokenizeResult[]> {
  const results: TokenizeResult[] = [];
  const audit = new BatchAudit();
  const pending: Array<{ index: number; resolved: ResolvedField; text: string }> = [];
  const keyVersion = deps.keyring.currentVersion;

  for (const { index, item, at, resolved } of resolvedItems(deps.policy, input.recordTypes, input.items, results, audit)) {
    try {
      const { text, token } = tokenOf(deps, resolved, item.value);
      if (token === undefined) {
        pending.push({ index, resolved, text });
        results.push(itemError('invalid_request', at, 'random token is pending'));
      } else {
        results.push({ token, keyVersion });
        audit.succeeded(resolved.recordType, resolved.fieldName);
      }
    } catch (error) {
      if (!(error instanceof DomicileError) || error.code !== 'invalid_value') {
        throw error;
      }
      results.push(itemError('invalid_value', `${at}.value`, error.message));
    }
  }

  // Namespace keys are read or created before the transaction, so a cached key is always committed.
  const namespaceKeyOf = new Map<string, Buffer>();
  for (const { resolved } of pending) {
    namespaceKeyOf.set(resolved.namespace, await namespaceKeys.get(resolved.namespace));
  }

  await withTransaction(deps.db, async (client) => {
    for (const { index, resolved, text } of pending) {
      const namespaceKey = namespaceKeyOf.get(resolved.namespace) ?? Buffer.alloc(0);
      // Fallback tokens of format-preserving fields are stable, as deterministic as the FF1 tokens they stand in for.
      const stable = resolved.field.token?.stable === true || resolved.field.token?.kind === 'format-preserving';
      const token = await namespaceRandomToken(client, deps.keyring, { namespaceKey, namespace: resolved.namespace, value: text, stable });
      results[index] = { token, keyVersion };
      audit.succeeded(resolved.recordType, resolved.fieldName);
    }
    await audit.write(client, deps, { actor: input.actor, action: 'tokens.tokenize' });
  });
  return results;
}

/** Converts detokenized text back to the normalized type of the field. */
function fromText(field: FieldPolicy, text: string): string | number | boolean {
  if (field.type === 'number') {
    return Number(text);
  }
  if (field.type === 'boolean') {
    return text === 'true';
  }
  return text;
}

/** Detokenizes without the database where the token kind allows it; returns undefined for random tokens. */
function detokenizeLocally(deps: VaultDeps, resolved: ResolvedField, item: DetokenizeItem, at: string): DetokenizeResult | undefined {
  const kind = resolved.field.token?.kind ?? 'deterministic';
  if (kind === 'deterministic') {
    return itemError('not_reversible', `${at}.token`, 'is a deterministic token, a keyed hash that cannot be reversed; use lookup by value instead');
  }
  // No format-preserving token has the random token form (`rnd_v<n>_` and 26 base32 characters), so a fallback token is recognized by it.
  const fallbackToken = kind === 'format-preserving' && resolved.field.token?.fallback === 'random' && parseToken(item.token)?.kind === 'random';
  if (kind === 'random' || fallbackToken) {
    const parsed = parseToken(item.token);
    if (parsed?.kind !== 'random') {
      return itemError('invalid_value', `${at}.token`, 'is not a random token (rnd_v<version>_<26 base32 characters>)');
    }
    if (!deps.keyring.has(parsed.version)) {
      return itemError('not_found', `${at}.token`, `was made with tokenization key version ${parsed.version}, which is not in the keyring`);
    }
    return undefined;
  }

  const version = item.keyVersion ?? deps.keyring.currentVersion;
  if (!deps.keyring.has(version)) {
    return itemError('not_found', `${at}.keyVersion`, `tokenization key version ${version} is not in the keyring`);
  }
  try {
    const text = formatPreservingDetokenize(deps.keyring, resolved.namespace, resolved.field.type, item.token, version, formatPreservingOptions(resolved.field));
    return { value: fromText(resolved.field, text) };
  } catch (error) {
    if (error instanceof DomicileError && error.code === 'invalid_value') {
      return itemError('invalid_value', `${at}.token`, `is not a format-preserving token of this field: it ${error.message}`);
    }
    throw error;
  }
}

export async function detokenizeBatch(deps: VaultDeps, namespaceKeys: NamespaceKeys, input: DetokenizeInput): Promise<DetokenizeResult[]> {
  const results: DetokenizeResult[] = [];
  const audit = new BatchAudit();
  const pending: Array<{ index: number; resolved: ResolvedField; token: string }> = [];

  for (const { index, item, at, resolved } of resolvedItems(deps.policy, input.recordTypes, input.items, results, audit)) {
    const local = detokenizeLocally(deps, resolved, item, at);
    if (local === undefined) {
      pending.push({ index, resolved, token: item.token });
      results.push(itemError('not_found', `${at}.token`, 'random token is pending'));
      continue;
    }
    results.push(local);
    if (!isItemError(local)) {
      audit.succeeded(resolved.recordType, resolved.fieldName);
    }
  }

  const namespaceKeyOf = new Map<string, Buffer | undefined>();
  for (const { resolved } of pending) {
    namespaceKeyOf.set(resolved.namespace, await namespaceKeys.find(resolved.namespace));
  }

  await withTransaction(deps.db, async (client) => {
    for (const { index, resolved, token } of pending) {
      const text = await resolveRandomToken(client, deps.keys, namespaceKeyOf.get(resolved.namespace), resolved.namespace, token);
      if (text === undefined) {
        results[index] = itemError('not_found', `$.items[${index}].token`, 'is not a random token of this field, or its subject was erased');
        continue;
      }
      results[index] = { value: fromText(resolved.field, text) };
      audit.succeeded(resolved.recordType, resolved.fieldName);
    }
    await audit.write(client, deps, { actor: input.actor, action: 'tokens.detokenize', purpose: input.purpose });
  });
  return results;
}
