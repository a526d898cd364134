// The request schemas, table-driven: what is accepted (and how it comes out), what is refused
// and at which path. Every route's bad input is also fuzzed (test/fuzz/routes.fuzz.test.ts).
import { describe, expect, it } from 'vitest';
import { parse } from '../../functions/http/handler.js';
import { accountBody, directDebitBody, pageQuery, proposeBody, reserveBody, serviceBody, updateBody } from '../../functions/http/schemas.js';
import { accountPatchBody, serviceAccountBody } from '../../functions/http/account-schemas.js';
import { ChargingError } from '../../functions/domain/errors.js';

const reserve = { requestId: 'r-1', accountId: 'alice', clientId: 'scscf-1', serviceId: 'voice', requested: { units: 600 } };
const account = { accountId: 'alice', currency: 'EUR', kind: 'prepaid' };

function refusal(schema: Parameters<typeof parse>[0], value: unknown): string[] {
  try {
    parse(schema, value);
  } catch (error) {
    expect(error).toBeInstanceOf(ChargingError);
    expect((error as ChargingError).code).toBe('validation_failed');
    return ((error as ChargingError).extra.errors as { path: string }[]).map((e) => e.path);
  }
  throw new Error(`accepted: ${JSON.stringify(value)}`);
}

describe('request schemas', () => {
  it.each([
    ['a reserve', reserveBody, reserve, reserve],
    ['unknown keys are dropped', reserveBody, { ...reserve, extra: 1 }, reserve],
    ['a reserve in money', reserveBody, { ...reserve, requested: { amount: 5 } }, { ...reserve, requested: { amount: 5 } }],
    ['a timestamp, normalized to milliseconds', accountBody, { ...account, validUntil: '2028-02-29T10:00:00Z' }, { ...account, validUntil: '2028-02-29T10:00:00.000Z' }],
    ['a service with its defaults', serviceBody, { unit: 'money' }, { unit: 'money', validitySeconds: 300, interimIntervalSeconds: 30 }],
    ['a validity under 30 s: the interval defaults to it (fails before: 400, naming a field not sent)', serviceBody, { unit: 'money', validitySeconds: 20 }, { unit: 'money', validitySeconds: 20, interimIntervalSeconds: 20 }],
    ['a page size (ledger, notifications) from the query string', pageQuery, { limit: '50' }, { limit: 50 }],
    ['an update without a new request', updateBody, { requestId: 'u-1', used: { units: 0 } }, { requestId: 'u-1', used: { units: 0 } }],
    ['a consumption limit lifted', accountPatchBody, { consumptionLimit: null }, { consumptionLimit: null }],
    ['a consumption limit of 2^53-1, as POST /accounts takes it (fails before: 400 above 10^12; review 7 of stop 26)', accountPatchBody, { consumptionLimit: Number.MAX_SAFE_INTEGER }, { consumptionLimit: Number.MAX_SAFE_INTEGER }],
    ['an account suspended', accountPatchBody, { status: 'suspended' }, { status: 'suspended' }],
    ['an account id of three dots, a path segment like any other (fails before; review 24 of stop 28)', accountBody, { ...account, accountId: '...' }, { ...account, accountId: '...' }],
    ['a multiSessionId of three dots', reserveBody, { ...reserve, multiSessionId: '...' }, { ...reserve, multiSessionId: '...' }],
    ['a sponsor with a cap on each transfer', accountPatchBody, { sponsors: [{ accountId: 'mum', priority: 1, maxTransfer: 500 }] }, { sponsors: [{ accountId: 'mum', priority: 1, maxTransfer: 500 }] }],
  ] as const)('accepts %s', (_what, schema, value, expected) => {
    expect(parse(schema, value)).toEqual(expected);
  });

  it.each([
    ['a float', reserveBody, { ...reserve, requested: { units: 1.5 } }, 'requested.units'],
    ['a negative', updateBody, { requestId: 'u-1', used: { units: -1 } }, 'used.units'],
    ['a number above 2^53-1', reserveBody, { ...reserve, requested: { units: 2 ** 53 } }, 'requested.units'],
    ['a string for a number', reserveBody, { ...reserve, requested: { units: '600' } }, 'requested'],
    ['both units and amount', reserveBody, { ...reserve, requested: { units: 1, amount: 1 } }, 'requested'],
    ['a bad identifier', reserveBody, { ...reserve, accountId: 'al ice' }, 'accountId'],
    ['a missing field', reserveBody, { ...reserve, clientId: undefined }, 'clientId'],
    ['not a URL', reserveBody, { ...reserve, notifyUri: 'not a url' }, 'notifyUri'],
    ['an account id of dots alone (no URL reaches it; fails before)', accountBody, { ...account, accountId: '..' }, 'accountId'],
    ['an account id __proto__ (a shares map could never name it; fails before)', accountBody, { ...account, accountId: '__proto__' }, 'accountId'],
    ['a day that does not exist', accountBody, { ...account, validUntil: '2026-02-30T00:00:00Z' }, 'validUntil'],
    ['an hour that does not exist', accountBody, { ...account, validUntil: '2026-01-01T24:00:00Z' }, 'validUntil'],
    ['a local time', accountBody, { ...account, validUntil: '2026-01-01T10:00:00+02:00' }, 'validUntil'],
    ['a price missing', serviceBody, { unit: 'seconds' }, 'price'],
    ['an interim interval past the validity (every client that obeys it expires)', serviceBody, { unit: 'money', validitySeconds: 10, interimIntervalSeconds: 30 }, 'interimIntervalSeconds'],
    ['an established interim interval past the validity', serviceBody, { unit: 'money', establishedInterimIntervalSeconds: 600 }, 'establishedInterimIntervalSeconds'],
    ['a price other than 1 per 1 for a service in money (it would be ignored)', serviceBody, { unit: 'money', price: { amount: 2, per: 60 } }, 'price'],
    ['a field PATCH cannot change (it was dropped with a 200)', accountPatchBody, { consumptionLimit: 5, mainAccountId: 'other' }, 'mainAccountId'],
    ['a status that is not active or suspended', accountPatchBody, { status: 'expired' }, 'status'],
    ['a sponsor capped at 0', accountPatchBody, { sponsors: [{ accountId: 'mum', priority: 1, maxTransfer: 0 }] }, 'sponsors.0.maxTransfer'],
    ['neither units nor amount', directDebitBody, { requestId: 'e-1', accountId: 'alice', clientId: 'smsc', serviceId: 'sms' }, ''],
    ['a page size of 0', pageQuery, { limit: '0' }, 'limit'],
    ['a page size in words', pageQuery, { limit: 'ten' }, 'limit'],
    ['a schedule hour of 24', serviceAccountBody, { unit: 'kilobytes', rate: { amount: 1, units: 1 }, priority: 1, rechargeAmount: 1, schedule: { every: 'day', at: 24 }, onEmpty: 'deny' }, 'schedule.at'],
    ['a redirect without its URL', serviceAccountBody, { unit: 'kilobytes', rate: { amount: 1, units: 1 }, priority: 1, onEmpty: 'redirect' }, 'redirectUrl'],
    ['a body that is not an object', reserveBody, null, ''],
    ['a multi-party proposal that names an accountId too (API.md: parties instead of accountId)', proposeBody, { requestId: 'p-1', parties: [{ accountId: 'a' }, { accountId: 'b' }], principle: { type: 'split' }, clientId: 'as', serviceId: 'voice', requested: { units: 60 }, accountId: 'a' }, 'accountId'],
    ['a multi-party proposal in a multi-session', proposeBody, { requestId: 'p-1', parties: [{ accountId: 'a' }, { accountId: 'b' }], principle: { type: 'split' }, clientId: 'as', serviceId: 'voice', requested: { units: 60 }, multiSessionId: 'GS-1' }, 'multiSessionId'],
  ] as const)('refuses %s', (_what, schema, value, path) => {
    expect(refusal(schema, value)).toContain(path);
  });
});
