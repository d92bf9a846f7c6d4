import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { DomicileError } from './errors.ts';
import { parsePolicy } from './load.ts';

function policyWith(token: Record<string, unknown>, destination: Record<string, unknown> = {}): unknown {
  return {
    version: 1,
    defaultRegion: 'DE',
    purposes: ['support'],
    recordTypes: { member: { fields: { code: { type: 'string', class: 'direct', egress: 'token', token } } } },
    destinations: { partner: { target: { kind: 'folder', path: 'partner' }, records: { member: { code: 'token' } }, ...destination } },
  };
}

function issuePaths(document: unknown): string[] {
  try {
    parsePolicy(document);
  } catch (error) {
    assert.ok(error instanceof DomicileError);
    return error.issues.map((issue) => issue.path);
  }
  return [];
}

describe('policy token options', () => {
  test('stable random token accepted', () => {
    const policy = parsePolicy(policyWith({ kind: 'random', stable: true }));
    assert.equal(policy.recordTypes.member?.fields.code?.token?.stable, true);
  });

  test('stable rejected for other kinds', () => {
    assert.deepEqual(issuePaths(policyWith({ kind: 'deterministic', stable: true })), ['$.recordTypes.member.fields.code.token.stable']);
    assert.deepEqual(issuePaths(policyWith({ stable: true })), ['$.recordTypes.member.fields.code.token.stable']);
  });

  test('format-preserving options accepted', () => {
    const policy = parsePolicy(policyWith({ kind: 'format-preserving', checkDigit: 'luhn', fallback: 'random' }));
    assert.equal(policy.recordTypes.member?.fields.code?.token?.checkDigit, 'luhn');
    assert.equal(policy.recordTypes.member?.fields.code?.token?.fallback, 'random');
  });

  test('format-preserving options rejected for other kinds', () => {
    assert.deepEqual(issuePaths(policyWith({ kind: 'random', checkDigit: 'luhn' })), ['$.recordTypes.member.fields.code.token.checkDigit']);
    assert.deepEqual(issuePaths(policyWith({ kind: 'deterministic', fallback: 'random' })), ['$.recordTypes.member.fields.code.token.fallback']);
    assert.deepEqual(issuePaths(policyWith({ kind: 'format-preserving', checkDigit: 'crc32' })), ['$.recordTypes.member.fields.code.token.checkDigit']);
  });

  test('emailDomain only on email fields', () => {
    assert.deepEqual(issuePaths(policyWith({ kind: 'format-preserving', emailDomain: 'keep' })), ['$.recordTypes.member.fields.code.token.emailDomain']);
  });

  test('tokenNamespace own or shared', () => {
    assert.equal(parsePolicy(policyWith({ kind: 'random' })).destinations.partner?.tokenNamespace, undefined);
    assert.equal(parsePolicy(policyWith({ kind: 'random' }, { tokenNamespace: 'own' })).destinations.partner?.tokenNamespace, 'own');
    assert.deepEqual(issuePaths(policyWith({ kind: 'random' }, { tokenNamespace: 'private' })), ['$.destinations.partner.tokenNamespace']);
  });
});
