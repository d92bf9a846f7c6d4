import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { DomicileError, loadPolicyFile } from '../policy/index.ts';
import { checkScopesAgainstPolicy, parseFieldGrant } from './credentials.ts';

const policy = loadPolicyFile(fileURLToPath(new URL('../examples/policy.yaml', import.meta.url)));

describe('credential scopes from the command line', () => {
  test('field grants parse into scopes', () => {
    const grants = parseFieldGrant('customer.country=clear', parseFieldGrant('customer.email=mask', {}));
    assert.deepEqual(grants, { customer: { email: 'mask', country: 'clear' } });
  });

  test('malformed field grants are rejected', () => {
    assert.throws(() => parseFieldGrant('customer.email', {}), /expected <recordType>.<field>=<form>/);
    assert.throws(() => parseFieldGrant('customer.email=plain', {}), /form must be one of/);
  });

  test('scopes that match the policy pass', () => {
    checkScopesAgainstPolicy({ operations: ['records:read'], recordTypes: ['customer'], fields: { customer: { email: 'token' } } }, policy);
  });

  test('unknown names in scopes are each reported', () => {
    try {
      checkScopesAgainstPolicy(
        { operations: ['records:read'], recordTypes: ['customer', 'pet'], fields: { customer: { shoeSize: 'clear' }, order: { id: 'clear' } } },
        policy,
      );
      assert.fail('expected the scopes to be rejected');
    } catch (error) {
      assert.ok(error instanceof DomicileError);
      assert.match(error.message, /--record-type pet is not a record type/);
      assert.match(error.message, /--field customer.shoeSize is not a field/);
      assert.match(error.message, /--field order.\* names a record type that no --record-type allows/);
    }
  });
});
