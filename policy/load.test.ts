import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { DomicileError, isAtLeastAsStrong, loadPolicyFile, parsePolicy } from './index.ts';

const examplePolicyFile = fileURLToPath(new URL('../examples/policy.yaml', import.meta.url));

function minimalPolicy(): Record<string, unknown> {
  return {
    version: 1,
    defaultRegion: 'DE',
    purposes: ['support'],
    recordTypes: {
      customer: {
        fields: {
          name: { type: 'string', class: 'direct', egress: 'never' },
          email: { type: 'email', class: 'direct', egress: 'token' },
        },
      },
    },
    destinations: {
      aws: {
        target: { kind: 'folder', path: 'outbound' },
        records: { customer: { email: 'token' } },
      },
    },
  };
}

function issuesOf(run: () => unknown): { path: string; message: string }[] {
  try {
    run();
  } catch (error) {
    assert.ok(error instanceof DomicileError);
    assert.equal(error.code, 'invalid_policy');
    return [...error.issues];
  }
  assert.fail('expected the policy to be rejected');
}

describe('data policy', () => {
  it('loads the example policy', () => {
    const policy = loadPolicyFile(examplePolicyFile);
    assert.equal(policy.version, 1);
    assert.deepEqual(Object.keys(policy.recordTypes), ['customer']);
    assert.equal(policy.recordTypes.customer?.fields.email?.egress, 'token');
    assert.equal(policy.destinations.aws?.records.customer?.country, 'clear');
  });

  it('applies defaults', () => {
    const policy = parsePolicy(minimalPolicy());
    assert.equal(policy.recordTypes.customer?.fields.name?.required, false);
    assert.equal(policy.recordTypes.customer?.fields.name?.maxLength, 256);
  });

  it('orders egress forms from strongest to weakest', () => {
    assert.ok(isAtLeastAsStrong('never', 'clear'));
    assert.ok(isAtLeastAsStrong('token', 'mask'));
    assert.ok(isAtLeastAsStrong('generalize', 'generalize'));
    assert.ok(!isAtLeastAsStrong('clear', 'generalize'));
    assert.ok(!isAtLeastAsStrong('mask', 'token'));
  });

  it('rejects a projection weaker than the egress rule', () => {
    const document = minimalPolicy();
    (document.destinations as { aws: { records: { customer: Record<string, string> } } }).aws.records.customer.name = 'clear';
    const issues = issuesOf(() => parsePolicy(document));
    assert.deepEqual(issues, [
      { path: '$.destinations.aws.records.customer.name', message: "asks for form clear, weaker than the field's egress rule never" },
    ]);
  });

  it('rejects unknown record types and fields in projections', () => {
    const document = minimalPolicy();
    (document.destinations as { aws: { records: Record<string, unknown> } }).aws.records = {
      customer: { phone: 'token' },
      order: { id: 'clear' },
    };
    const issues = issuesOf(() => parsePolicy(document));
    assert.equal(issues.length, 2);
    assert.equal(issues[0]?.path, '$.destinations.aws.records.customer.phone');
    assert.equal(issues[1]?.path, '$.destinations.aws.records.order');
  });

  it('names the path of an invalid field declaration', () => {
    const document = minimalPolicy();
    (document.recordTypes as { customer: { fields: Record<string, unknown> } }).customer.fields.email = {
      type: 'mail',
      class: 'direct',
      egress: 'token',
    };
    const issues = issuesOf(() => parsePolicy(document));
    assert.equal(issues[0]?.path, '$.recordTypes.customer.fields.email.type');
  });

  it('rejects unknown keys', () => {
    const document = minimalPolicy();
    document.extra = true;
    const issues = issuesOf(() => parsePolicy(document));
    assert.equal(issues[0]?.path, '$');
    assert.match(issues[0]?.message ?? '', /extra/);
  });

  it('requires mask and generalize settings for those rules', () => {
    const document = minimalPolicy();
    (document.recordTypes as { customer: { fields: Record<string, unknown> } }).customer.fields.birthDate = {
      type: 'date',
      class: 'quasi',
      egress: 'generalize',
    };
    const issues = issuesOf(() => parsePolicy(document));
    assert.deepEqual(issues, [{ path: '$.recordTypes.customer.fields.birthDate.generalize', message: 'is required when egress is generalize' }]);
  });

  it('reports an unreadable file by name', () => {
    assert.throws(() => loadPolicyFile('/nonexistent/policy.yaml'), /cannot read data policy file \/nonexistent\/policy.yaml/);
  });
});
