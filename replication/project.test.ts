import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { DomicileError } from '../policy/errors.ts';
import type { EgressForm, Policy } from '../policy/schema.ts';
import type { RecordView } from '../store/types.ts';
import { deterministicToken } from '../tokenizer/deterministic.ts';
import { applyForm, destinationNamespace } from '../tokenizer/form.ts';
import { projectRecord, randomTokenRequests, serializePartialCopy } from './project.ts';
import { testKeyring, testPolicy } from './testing/fixtures.ts';

const keyring = testKeyring();

function customerView(values: RecordView['values']): RecordView {
  return {
    subjectToken: 'sub_aaaaaaaaaaaaaaaaaaaaaaaaaa',
    recordType: 'customer',
    version: 4,
    policyVersion: 3,
    updatedAt: '2026-03-01T10:00:00.000Z',
    values,
  };
}

const fullCustomer = customerView({
  name: 'Erika Mustermann',
  email: 'erika@example.de',
  phone: '+4915112345678',
  nickname: 'Rikki',
  birthDate: '1984-08-12',
  postalCode: '10115',
  country: 'DE',
  vip: true,
});

describe('projectRecord', () => {
  test('copies the record metadata', () => {
    const copy = projectRecord(testPolicy(), 'aws', fullCustomer, keyring);

    assert.equal(copy.subjectToken, fullCustomer.subjectToken);
    assert.equal(copy.recordType, 'customer');
    assert.equal(copy.version, 4);
    assert.equal(copy.policyVersion, 3);
    assert.equal(copy.updatedAt, '2026-03-01T10:00:00.000Z');
  });

  test('sends only the projected fields', () => {
    const copy = projectRecord(testPolicy(), 'aws', fullCustomer, keyring);

    assert.deepEqual(Object.keys(copy.fields).sort(), ['birthDate', 'country', 'email', 'nickname', 'postalCode', 'vip']);
    assert.equal('name' in copy.fields, false);
    assert.equal('phone' in copy.fields, false);
  });

  test('turns each field into its form', () => {
    const policy = testPolicy();
    const postalCode = policy.recordTypes.customer?.fields.postalCode;
    assert.ok(postalCode);
    const copy = projectRecord(policy, 'aws', fullCustomer, keyring);

    assert.equal(copy.fields.email, deterministicToken(keyring, 'customer.email', 'erika@example.de'));
    assert.match(String(copy.fields.email), /^det_v1_[a-z2-7]{32}$/);
    assert.equal(copy.fields.nickname, 'Ri***');
    assert.equal(String(copy.fields.birthDate), '1984');
    assert.equal(copy.fields.postalCode, applyForm(postalCode, 'generalize', '10115', { keyring, namespace: 'customer.postalCode' }));
    assert.notEqual(copy.fields.postalCode, '10115');
    assert.equal(copy.fields.country, 'DE');
    assert.equal(copy.fields.vip, true);
  });

  test('names the key version of each token', () => {
    const copy = projectRecord(testPolicy(), 'aws', fullCustomer, keyring);

    assert.deepEqual(copy.tokenVersions, { email: 1 });
    assert.equal(projectRecord(testPolicy(), 'aws', customerView({ name: 'Max Muster' }), keyring).tokenVersions, undefined);
  });

  test('applies a form stronger than the rule', () => {
    const copy = projectRecord(testPolicy(), 'analytics', fullCustomer, keyring);

    assert.deepEqual(Object.keys(copy.fields), ['country']);
    assert.equal(copy.fields.country, deterministicToken(keyring, 'customer.country', 'DE'));
  });

  test('own namespace prefixes tokens', () => {
    const copy = projectRecord(testPolicy(), 'partner', fullCustomer, keyring);

    assert.equal(copy.fields.email, deterministicToken(keyring, destinationNamespace('partner', 'customer.email'), 'erika@example.de'));
    assert.notEqual(copy.fields.email, deterministicToken(keyring, 'customer.email', 'erika@example.de'));
  });

  test('random tokens come from the callback', () => {
    const view = customerView({ ...fullCustomer.values, loyaltyId: 'LOY-1234' });
    const calls: Array<[string, string]> = [];
    const randomToken = (namespace: string, value: string): string => {
      calls.push([namespace, value]);
      return 'rnd_v1_aaaaaaaaaaaaaaaaaaaaaaaaaa';
    };

    const copy = projectRecord(testPolicy(), 'partner', view, keyring, { randomToken });

    assert.equal(copy.fields.loyaltyId, 'rnd_v1_aaaaaaaaaaaaaaaaaaaaaaaaaa');
    assert.deepEqual(calls, [['destination:partner:customer.loyaltyId', 'LOY-1234']]);
    assert.throws(() => projectRecord(testPolicy(), 'partner', view, keyring), DomicileError);
  });

  test('randomTokenRequests lists random fields', () => {
    const view = customerView({ ...fullCustomer.values, loyaltyId: 'LOY-1234' });

    assert.deepEqual(randomTokenRequests(testPolicy(), 'partner', view), [
      { namespace: 'destination:partner:customer.loyaltyId', value: 'LOY-1234', stable: false },
    ]);
    assert.deepEqual(randomTokenRequests(testPolicy(), 'partner', fullCustomer), []);
    assert.deepEqual(randomTokenRequests(testPolicy(), 'aws', view), []);
  });

  test('leaves out fields without a value', () => {
    const copy = projectRecord(testPolicy(), 'aws', customerView({ name: 'Max Muster', email: 'max@example.de' }), keyring);

    assert.deepEqual(Object.keys(copy.fields), ['email']);
  });

  test('serialized copy contains no withheld value', () => {
    const body = serializePartialCopy(projectRecord(testPolicy(), 'aws', fullCustomer, keyring)).toString('utf8');

    for (const withheld of ['Erika', 'Mustermann', 'erika@example.de', '+4915112345678', '1984-08-12', 'Rikki', '10115']) {
      assert.equal(body.includes(withheld), false, `body must not contain ${withheld}`);
    }
    assert.ok(body.endsWith('\n'));
    assert.deepEqual(Object.keys(JSON.parse(body) as object), ['subjectToken', 'recordType', 'version', 'policyVersion', 'updatedAt', 'fields', 'tokenVersions']);
  });

  test('rejects a form weaker than the rule', () => {
    // parsePolicy rejects these; the projection checks again in case a policy object was built or changed in memory.
    const weaker: Array<[string, EgressForm]> = [
      ['email', 'clear'],
      ['email', 'mask'],
      ['name', 'token'],
      ['name', 'never'],
      ['birthDate', 'clear'],
    ];
    for (const [field, form] of weaker) {
      const policy: Policy = structuredClone(testPolicy());
      const projection = policy.destinations.aws?.records.customer;
      assert.ok(projection);
      projection[field] = form;

      assert.throws(
        () => projectRecord(policy, 'aws', fullCustomer, keyring),
        (error: unknown) => error instanceof DomicileError && error.code === 'internal' && error.message.includes(`$.destinations.aws.records.customer.${field}`),
        `${field} as ${form}`,
      );
    }
  });

  test('rejects an undeclared field', () => {
    const policy: Policy = structuredClone(testPolicy());
    const projection = policy.destinations.aws?.records.customer;
    assert.ok(projection);
    projection.shoeSize = 'clear';

    assert.throws(() => projectRecord(policy, 'aws', fullCustomer, keyring), DomicileError);
  });

  test('rejects unknown destination or record type', () => {
    assert.throws(() => projectRecord(testPolicy(), 'nowhere', fullCustomer, keyring), DomicileError);
    assert.throws(() => projectRecord(testPolicy(), 'aws', { ...fullCustomer, recordType: 'ticket', values: { subject: 'x' } }, keyring), DomicileError);
  });

  test('error messages contain no value', () => {
    const policy: Policy = structuredClone(testPolicy());
    const projection = policy.destinations.aws?.records.customer;
    assert.ok(projection);
    projection.email = 'clear';

    assert.throws(
      () => projectRecord(policy, 'aws', fullCustomer, keyring),
      (error: unknown) => error instanceof Error && !error.message.includes('erika'),
    );
  });
});
