import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { generalizeValue } from './generalize.ts';

const now = new Date('2024-07-14T12:00:00Z');

describe('generalizeValue', () => {
  test('date to year and year-month', () => {
    assert.equal(generalizeValue('date', '1988-07-14', { date: 'year' }), '1988');
    assert.equal(generalizeValue('date', '1988-07-14', { date: 'yearMonth' }), '1988-07');
  });

  test('age band from a date of birth', () => {
    assert.equal(generalizeValue('date', '1988-07-14', { ageBand: 10 }, now), '30-39');
    assert.equal(generalizeValue('date', '1984-07-15', { ageBand: 10 }, now), '30-39');
    assert.equal(generalizeValue('date', '1984-07-14', { ageBand: 10 }, now), '40-49');
    assert.equal(generalizeValue('date', '2000-02-29', { ageBand: 5 }, now), '20-24');
    assert.equal(generalizeValue('date', '1988-07-15', { ageBand: 1 }, now), '35');
  });

  test('rejects a date of birth in the future', () => {
    assert.throws(() => generalizeValue('date', '2030-01-01', { ageBand: 10 }, now), { code: 'invalid_value' });
  });

  test('prefix of a postal code', () => {
    assert.equal(generalizeValue('postalCode', 'EC1A 1BB', { prefix: 3 }), 'EC1');
    assert.equal(generalizeValue('postalCode', '10115', { prefix: 2 }), '10');
  });

  test('bucket of a number', () => {
    assert.equal(generalizeValue('number', 1234.5, { bucket: 100 }), 1200);
    assert.equal(generalizeValue('number', -5, { bucket: 10 }), -10);
    assert.equal(generalizeValue('number', 0.35, { bucket: 0.1 }), 0.3);
  });

  test('rejects a rule that does not fit the type', () => {
    assert.throws(() => generalizeValue('string', 'abc', { date: 'year' }), { code: 'invalid_policy' });
    assert.throws(() => generalizeValue('string', 'abc', { bucket: 10 }), { code: 'invalid_policy' });
    assert.throws(() => generalizeValue('number', 5, { prefix: 1 }), { code: 'invalid_policy' });
  });
});
