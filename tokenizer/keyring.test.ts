import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AUDIT_NAMESPACES, generateTokenizationSecret, Keyring } from './keyring.ts';

test('a retired version serves its audit keys and nothing else', () => {
  const full = new Keyring(new Map([[1, generateTokenizationSecret()], [2, generateTokenizationSecret()]]), 2);
  const bundle = full.auditKeyBundle(1);
  const retired = new Keyring(new Map([[2, generateTokenizationSecret()]]), 2, new Map([[1, bundle]]));
  for (const namespace of AUDIT_NAMESPACES) {
    assert.deepEqual(retired.derive('audit', namespace, 1), full.derive('audit', namespace, 1));
  }
  assert.equal(retired.has(1), false);
  assert.equal(retired.hasAuditKeys(1), true);
  assert.deepEqual(retired.auditVersions(), [1, 2]);
  assert.throws(() => retired.derive('deterministic', 'customer.email', 1), /not in the keyring/);
  assert.throws(() => retired.derive('audit', 'other-namespace', 1), /not in the keyring/);
});

test('a bundle stored before a namespace was appended still loads', () => {
  const full = new Keyring(new Map([[1, generateTokenizationSecret()], [2, generateTokenizationSecret()]]), 2);
  const shorter = full.auditKeyBundle(1).subarray(0, 4 * 32);
  const retired = new Keyring(new Map([[2, generateTokenizationSecret()]]), 2, new Map([[1, Buffer.from(shorter)]]));
  assert.deepEqual(retired.derive('audit', 'audit-chain', 1), full.derive('audit', 'audit-chain', 1));
  assert.throws(() => retired.derive('audit', 'audit-pending', 1), /not in the keyring/);
});

test('malformed bundles are rejected', () => {
  const secrets = new Map([[2, generateTokenizationSecret()]]);
  assert.throws(() => new Keyring(secrets, 2, new Map([[1, Buffer.alloc(33)]])), /malformed/);
  assert.throws(() => new Keyring(secrets, 2, new Map([[1, Buffer.alloc(0)]])), /malformed/);
  assert.throws(() => new Keyring(secrets, 2, new Map([[1, Buffer.alloc(32 * (AUDIT_NAMESPACES.length + 1))]])), /malformed/);
  assert.throws(() => new Keyring(secrets, 2, new Map([[2, Buffer.alloc(32)]])), /malformed/);
});
