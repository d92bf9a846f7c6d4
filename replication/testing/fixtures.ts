import { randomBytes } from 'node:crypto';
import { parsePolicy } from '../../policy/load.ts';
import type { Policy } from '../../policy/schema.ts';
import { Keyring } from '../../tokenizer/keyring.ts';

/**
 * Returns the document of a policy for replication tests. `customer` has a
 * field for every egress rule, and three folder destinations receive some of
 * them: `aws`, `analytics` (a stronger form than the rule) and `partner` (own
 * token namespaces and a random token). Tests may replace `destinations`
 * before parsing.
 */
export function testPolicyDocument(): { [key: string]: unknown } {
  return {
    version: 3,
    defaultRegion: 'DE',
    purposes: ['signup', 'support'],
    recordTypes: {
      customer: {
        fields: {
          name: { type: 'string', class: 'direct', egress: 'never', required: true },
          email: { type: 'email', class: 'direct', egress: 'token', required: true, searchable: true },
          phone: { type: 'phone', class: 'direct', egress: 'never', mask: { keep: 'last', count: 2 } },
          nickname: { type: 'string', class: 'direct', egress: 'mask', mask: { keep: 'first', count: 2, maskChar: '*' } },
          birthDate: { type: 'date', class: 'quasi', egress: 'generalize', generalize: { date: 'year' } },
          postalCode: { type: 'postalCode', class: 'quasi', egress: 'generalize', generalize: { prefix: 2 } },
          country: { type: 'country', class: 'public', egress: 'clear' },
          vip: { type: 'boolean', class: 'public', egress: 'clear' },
          loyaltyId: { type: 'string', class: 'direct', egress: 'token', token: { kind: 'random' } },
        },
      },
      ticket: {
        fields: {
          subject: { type: 'string', class: 'sensitive', egress: 'never', required: true },
        },
      },
    },
    destinations: {
      aws: {
        target: { kind: 'folder', path: 'outbound' },
        records: {
          customer: { email: 'token', nickname: 'mask', birthDate: 'generalize', postalCode: 'generalize', country: 'clear', vip: 'clear' },
        },
      },
      analytics: {
        target: { kind: 'folder', path: 'analytics' },
        // A stronger form than the rule is allowed: country leaves as a token here.
        records: { customer: { country: 'token' } },
      },
      partner: {
        target: { kind: 'folder', path: 'partner' },
        // Tokens in this destination's own namespaces cannot be joined with those of the API or other destinations.
        tokenNamespace: 'own',
        records: { customer: { email: 'token', loyaltyId: 'token' } },
      },
    },
  };
}

export function testPolicy(): Policy {
  return parsePolicy(testPolicyDocument());
}

export function testKeyring(): Keyring {
  return new Keyring(new Map([[1, randomBytes(32)]]), 1);
}
