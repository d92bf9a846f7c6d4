import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { calendarDate, isTimeZone } from './calendar.ts';
import { DomicileError, parsePolicy } from './index.ts';

function policyWith(birthDate: Record<string, unknown>, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    version: 1,
    defaultRegion: 'DE',
    purposes: ['support'],
    recordTypes: { customer: { fields: { birthDate } } },
    ...extra,
  };
}

function issuePaths(run: () => unknown): string[] {
  try {
    run();
  } catch (error) {
    assert.ok(error instanceof DomicileError);
    return error.issues.map((issue) => issue.path);
  }
  assert.fail('expected the policy to be rejected');
}

describe('calendar dates', () => {
  // 2026-03-01 23:30 UTC is already March 2 in Tokyo and still March 1 in Honolulu.
  const lateEvening = new Date('2026-03-01T23:30:00Z');

  it('calendarDate counts days in UTC by default', () => {
    assert.equal(calendarDate(lateEvening), '2026-03-01');
  });

  it('calendarDate counts days in the time zone', () => {
    assert.equal(calendarDate(lateEvening, 'Asia/Tokyo'), '2026-03-02');
    assert.equal(calendarDate(lateEvening, 'Pacific/Honolulu'), '2026-03-01');
    assert.equal(calendarDate(new Date('2026-03-02T09:30:00Z'), 'Pacific/Honolulu'), '2026-03-01');
  });

  it('isTimeZone accepts IANA names only', () => {
    assert.equal(isTimeZone('Europe/Berlin'), true);
    assert.equal(isTimeZone('UTC'), true);
    assert.equal(isTimeZone('Mars/Olympus_Mons'), false);
    assert.equal(isTimeZone(''), false);
  });
});

describe('notAfter policy option', () => {
  it('date field accepts notAfter today', () => {
    const policy = parsePolicy(policyWith({ type: 'date', class: 'quasi', egress: 'generalize', generalize: { date: 'year' }, notAfter: 'today' }, { timeZone: 'Europe/Berlin' }));
    assert.equal(policy.recordTypes['customer']?.fields['birthDate']?.notAfter, 'today');
    assert.equal(policy.timeZone, 'Europe/Berlin');
  });

  it('string field rejects notAfter', () => {
    const paths = issuePaths(() => parsePolicy(policyWith({ type: 'string', class: 'quasi', egress: 'never', notAfter: 'today' })));
    assert.deepEqual(paths, ['$.recordTypes.customer.fields.birthDate.notAfter']);
  });

  it('notAfter takes only today', () => {
    const paths = issuePaths(() => parsePolicy(policyWith({ type: 'date', class: 'quasi', egress: 'never', notAfter: '2020-01-01' })));
    assert.deepEqual(paths, ['$.recordTypes.customer.fields.birthDate.notAfter']);
  });

  it('unknown time zone is rejected', () => {
    const paths = issuePaths(() => parsePolicy(policyWith({ type: 'date', class: 'quasi', egress: 'never' }, { timeZone: 'Europe/Atlantis' })));
    assert.deepEqual(paths, ['$.timeZone']);
  });
});
