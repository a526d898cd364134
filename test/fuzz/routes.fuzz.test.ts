// Property tests of every route in functions/http/routes.ts with malformed and hostile input,
// through `dispatch` (the API Gateway 2.0 event fed to the real Lambda handler) against
// DynamoDB Local. Properties:
//   1. never a 5xx; every non-2xx answer is application/problem+json with a string `code`
//      and a numeric `status` equal to the HTTP status; every answer body is JSON;
//   2. requests invalid by construction write nothing: the table's item count, a probe
//      account's balance, reserved, ops and ledger length, its two sessions, and its service
//      account `data` (every attribute, its ledger length, its schedule marker) are unchanged
//      by a batch of them;
//   3. Object.prototype is never polluted.
// Every route has a spec (valid params and body, typed fields); a route added later without
// one is still fuzzed by property 1 with generic input (specOf) and said so in the output.
// The seed is fixed and printed; FUZZ_SEED=<n> runs another one, FUZZ_RUNS=<n> changes the
// number of runs per route, FUZZ_INCLUDE_KNOWN=1 keeps known bugs' inputs. Inputs that trigger
// the bugs listed in KNOWN are left out of property 1 and counted; none is open now (the
// guards of the fixed ones are at the end of this file).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { GetCommand, QueryCommand, ScanCommand } from '@aws-sdk/lib-dynamodb';
import { dispatch } from '../../infra/local/api-gateway.js';
import { routes, type Route } from '../../functions/http/routes.js';
import { useStore, apiToken } from '../../functions/config.js';
import { logger } from '../../functions/http/handler.js';
import type { Store } from '../../functions/store/db.js';
import { testStore } from '../helpers.js';

const SEED = Number(process.env.FUZZ_SEED ?? 20_260_101);
const RUNS = Number(process.env.FUZZ_RUNS ?? 150);
/** FUZZ_INCLUDE_KNOWN=1 keeps the inputs of known bugs in property 1 (to check a fix). */
const INCLUDE_KNOWN = process.env.FUZZ_INCLUDE_KNOWN === '1';
const INVALID_BATCHES = Number(process.env.FUZZ_INVALID_BATCHES ?? 60);

/**
 * Open bugs found by this file: inputs that trigger them are kept out of property 1 (counted,
 * and printed after the run), each with `it.fails` regression tests at the end of this file.
 * None is open now.
 * Fixed, with their regression tests at the end of this file (and their inputs back in
 * property 1): hugeNumbers (money or unit counts valid up to 2^53-1 that overflowed in
 * rating or in the balance and answered 500; a huge top-up was written and left the account
 * unreadable), prototypeRequestIds (requestIds that are Object.prototype property names,
 * __proto__, constructor, toString, ..., refused with 409 idempotency_conflict, or 500 on reserve),
 * serviceAccountUnits (a recharge whose units passed 2^53-1, alone or added to the units held,
 * answered 500; added, it was written first and left the service account and its owner
 * unreadable: now refused with 400 before anything moves, as a top-up past MAX_BALANCE_MINOR),
 * prototypeClassifications (a service account named __proto__ was created but never listed,
 * and charges of the service __proto__ on its owner answered 500: the name is refused at PUT).
 */
type BugName = 'hugeNumbers' | 'prototypeRequestIds' | 'serviceAccountUnits' | 'prototypeClassifications';
const KNOWN: Partial<Record<BugName, string>> = {};
const knownHits = new Map<string, number>();
const statusTally = new Map<string, Map<number, number>>();
const HUGE = 1e12;

let store: Store;
let headers: Record<string, string>;
let sessions: { fuzz: string; party: string; probe: string; probeClosed: string };

interface Request {
  method: string;
  path: string;
  body: string;
}

interface Answer {
  status: number;
  contentType: string;
  text: string;
  json: any;
}

async function send(request: Request): Promise<Answer> {
  const result = await dispatch(request.method, new URL(`http://fuzz.local${request.path}`), headers, request.body);
  const text = result.body ?? '';
  let json: unknown;
  try { json = text === '' ? undefined : JSON.parse(text); } catch { json = Symbol('not json'); }
  return { status: result.statusCode ?? 200, contentType: String((result.headers as Record<string, unknown> | undefined)?.['content-type'] ?? ''), text, json };
}

function checkAnswer(request: Request, answer: Answer) {
  const where = `${request.method} ${request.path} ${request.body.slice(0, 300)} → ${answer.status} ${answer.text.slice(0, 300)}`;
  expect(answer.status, where).toBeLessThan(500);
  expect(typeof answer.json, `body is not JSON: ${where}`).not.toBe('symbol');
  if (answer.status >= 300) {
    expect(answer.contentType, where).toContain('application/problem+json');
    expect(typeof answer.json?.code, where).toBe('string');
    expect(answer.json?.status, where).toBe(answer.status);
  }
}

// ------------------------------------------------------------------------- generators

const NAMES_OF_THE_PROTOTYPE = Object.getOwnPropertyNames(Object.prototype);

const hostileString = fc.oneof(
  fc.string({ maxLength: 40 }),
  fc.string({ unit: 'grapheme', maxLength: 40 }),
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.constantFrom('', ' ', '__proto__', 'constructor', 'prototype', 'toString', 'valueOf', '60', '1e3', '-1', '0x10', 'NaN', 'Infinity', 'null', 'true',
    '\u0000', '\ud800', 'e\u0301', '😀'.repeat(40), '%00', '%', '../../etc/passwd', '${jndi:ldap://x}', "'; DROP TABLE x;--", '<script>alert(1)</script>',
    'ses_AAAAAAAAAAAAAAAAAAAAAAAA', 'a'.repeat(128), 'a'.repeat(129)),
  fc.string({ minLength: 129, maxLength: 400 }),
  fc.constant('x'.repeat(100_000)),
);
const hostileNumber = fc.oneof(
  fc.integer(),
  fc.double({ noNaN: false }),
  fc.constantFrom(0, -0, -1, 0.5, 1.5, 59.999, 2 ** 31, 2 ** 53 - 1, 2 ** 53, 2 ** 53 + 2, -(2 ** 53), 1e21, 1e300, Number.MAX_VALUE, Number.MIN_VALUE, Number.EPSILON),
);
const hostileKey = fc.oneof(fc.string({ maxLength: 12 }), fc.constantFrom('__proto__', 'constructor', 'prototype', 'requestId', 'amount', 'units', 'used', 'requested', 'accountId'));
const { value: hostileValue } = fc.letrec((tie) => ({
  value: fc.oneof({ depthSize: 'small', withCrossShrink: true },
    hostileString, hostileNumber, fc.boolean(), fc.constant(null),
    fc.array(tie('value'), { maxLength: 4 }),
    fc.dictionary(hostileKey, tie('value'), { maxKeys: 4 })),
}));

/** A deeply nested JSON text, built by hand (JSON.stringify would recurse as deep). */
const deepJson = fc.record({ depth: fc.integer({ min: 50, max: 5000 }), key: fc.constantFrom('units', 'a', 'requested', '__proto__') })
  .map(({ depth, key }) => `${`{"${key}":`.repeat(depth)}1${'}'.repeat(depth)}`);

const validId = fc.stringMatching(/^[A-Za-z0-9._:-]{1,24}$/);
/** Identifiers the API must refuse (never '.' or '..': URL normalisation would change the route). */
const badId = fc.oneof(
  fc.constantFrom('a b', 'a/b', 'ñ', '😀', '<x>', 'a\u0000b', 'a'.repeat(129), 'x'.repeat(5000), 'a%2Fb', '%', '..%2F..', 'a#b', 'a?b', '\\', 'ses_😀'),
  fc.string({ minLength: 1, maxLength: 40 }).filter((s) => !/^[A-Za-z0-9._:-]{1,128}$/.test(s)),
).filter((s) => s !== '.' && s !== '..');
const anyId = fc.oneof(validId, badId, hostileString.filter((s) => s.length > 0 && s !== '.' && s !== '..'));

// A valid body per route: the starting point for mutations.
type Kind = 'id' | 'positive' | 'count' | 'requested' | 'used' | 'unit' | 'kind' | 'currency' | 'timestamp' | 'price' | 'url' | 'reason' | 'record' | 'limit'
  // Service accounts (functions/http/account-schemas.ts): money and units there are capped at
  // 10^12 (saAmount 1..10^12, saLevel 0..10^12), a rate's terms at 10^6, a priority at 1000.
  | 'saUnit' | 'rate' | 'priority' | 'saAmount' | 'saLevel' | 'schedule' | 'onEmpty'
  // A multi-party proposal (seed 000) and PATCH's sponsors (seed 003) and status (seed 002).
  | 'parties' | 'principle' | 'sponsors' | 'status';
interface Form {
  body: (rid: string) => Record<string, unknown>;
  fields: Record<string, { kind: Kind; required: boolean }>;
}
interface Spec {
  params: Record<string, fc.Arbitrary<string>>;
  validParams: () => Record<string, string>;
  body?: (rid: string) => Record<string, unknown>;
  fields?: Record<string, { kind: Kind; required: boolean }>;
  /** Other valid bodies the route takes (a proposal on POST /sessions), fuzzed alike. */
  forms?: Form[];
  query?: boolean;
}

/** The body forms of a spec: its body and fields, then its other forms. */
const formsOf = (spec: Spec): Form[] => [...(spec.body ? [{ body: spec.body, fields: spec.fields ?? {} }] : []), ...(spec.forms ?? [])];

const requiredId = { kind: 'id' as const, required: true };
/** The probe's data account (set up in beforeAll), and the valid body of the PUT route. */
const PROBE_DATA_ACCOUNT = {
  unit: 'kilobytes', rate: { amount: 100, units: 1024 }, priority: 1, minimumLevel: 1024, rechargeAmount: 200,
  schedule: { every: 'month', at: 1 }, onEmpty: 'redirect', redirectUrl: 'https://shop.example/data',
} as const;
const specs: Record<string, Spec> = {
  'GET /health': { params: {}, validParams: () => ({}) },
  'PUT /services/{serviceId}': {
    params: { serviceId: fc.oneof(fc.constant('fz-svc'), anyId) },
    validParams: () => ({ serviceId: 'fz-svc' }),
    body: () => ({ unit: 'seconds', price: { amount: 2, per: 60 }, validitySeconds: 300, interimIntervalSeconds: 30 }),
    fields: { unit: { kind: 'unit', required: true }, price: { kind: 'price', required: false }, validitySeconds: { kind: 'positive', required: false }, interimIntervalSeconds: { kind: 'positive', required: false } },
  },
  'GET /services/{serviceId}': { params: { serviceId: fc.oneof(fc.constantFrom('voice', 'sms'), anyId) }, validParams: () => ({ serviceId: 'voice' }) },
  'POST /accounts': {
    params: {},
    validParams: () => ({}),
    body: (rid) => ({ accountId: `fz-new-${rid}`, currency: 'EUR', kind: 'postpaid', creditLimit: 100, validUntil: '2030-01-01T00:00:00Z', lowBalanceThreshold: 5 }),
    fields: { accountId: requiredId, currency: { kind: 'currency', required: true }, kind: { kind: 'kind', required: true }, creditLimit: { kind: 'count', required: false }, mainAccountId: { kind: 'id', required: false }, consumptionLimit: { kind: 'count', required: false }, validUntil: { kind: 'timestamp', required: false }, lowBalanceThreshold: { kind: 'count', required: false } },
  },
  'GET /accounts/{accountId}': { params: { accountId: fc.oneof(fc.constantFrom('fz-acc', 'probe'), anyId) }, validParams: () => ({ accountId: 'probe' }) },
  'PATCH /accounts/{accountId}': {
    params: { accountId: fc.oneof(fc.constantFrom('fz-acc', 'fz-child'), anyId) },
    validParams: () => ({ accountId: 'probe' }),
    body: () => ({ consumptionLimit: 100 }),
    fields: { consumptionLimit: { kind: 'limit', required: true } },
    forms: [
      { body: () => ({ sponsors: [{ accountId: 'fz-acc2', priority: 1, maxTransfer: 500 }, { accountId: 'fz-owner', priority: 2 }] }), fields: { sponsors: { kind: 'sponsors', required: true } } },
      // (Only `active`: property 1 must not suspend the accounts the other routes charge.)
      { body: () => ({ status: 'active' }), fields: { status: { kind: 'status', required: true } } },
    ],
  },
  'POST /accounts/{accountId}/topup': {
    params: { accountId: fc.oneof(fc.constant('fz-acc'), anyId) },
    validParams: () => ({ accountId: 'probe' }),
    body: (rid) => ({ requestId: rid, amount: 10 }),
    fields: { requestId: requiredId, amount: { kind: 'positive', required: true } },
  },
  'GET /accounts/{accountId}/ledger': { params: { accountId: fc.oneof(fc.constantFrom('fz-acc', 'probe'), anyId) }, validParams: () => ({ accountId: 'probe' }), query: true },
  'GET /accounts/{accountId}/notifications': { params: { accountId: fc.oneof(fc.constantFrom('fz-acc', 'probe'), anyId) }, validParams: () => ({ accountId: 'probe' }) },
  // Service accounts: fz-owner's are fuzzed freely; probe's (classification `data`) is the one
  // property 2 aims at. `required` of rechargeAmount and redirectUrl is relative to the rest of
  // the valid body: minimumLevel and schedule need rechargeAmount, onEmpty redirect needs redirectUrl.
  'PUT /accounts/{accountId}/service-accounts/{classification}': {
    params: { accountId: fc.oneof(fc.constant('fz-owner'), anyId), classification: fc.oneof(fc.constantFrom('data', 'voice', 'fz-games', 'fz-bulk'), anyId) },
    validParams: () => ({ accountId: 'probe', classification: 'data' }),
    body: () => ({ ...PROBE_DATA_ACCOUNT }),
    fields: {
      unit: { kind: 'saUnit', required: true }, rate: { kind: 'rate', required: true }, priority: { kind: 'priority', required: true },
      minimumLevel: { kind: 'saLevel', required: false }, rechargeAmount: { kind: 'saAmount', required: true }, schedule: { kind: 'schedule', required: false },
      onEmpty: { kind: 'onEmpty', required: true }, redirectUrl: { kind: 'url', required: true },
    },
  },
  'GET /accounts/{accountId}/service-accounts/{classification}': {
    params: { accountId: fc.oneof(fc.constantFrom('fz-owner', 'probe'), anyId), classification: fc.oneof(fc.constantFrom('data', 'fz-games', 'fz-bulk'), anyId) },
    validParams: () => ({ accountId: 'probe', classification: 'data' }),
  },
  'GET /accounts/{accountId}/service-accounts/{classification}/ledger': {
    params: { accountId: fc.oneof(fc.constantFrom('fz-owner', 'probe'), anyId), classification: fc.oneof(fc.constantFrom('data', 'fz-games', 'fz-bulk'), anyId) },
    validParams: () => ({ accountId: 'probe', classification: 'data' }),
    query: true,
  },
  'POST /accounts/{accountId}/service-accounts/{classification}/recharge': {
    params: { accountId: fc.oneof(fc.constant('fz-owner'), anyId), classification: fc.oneof(fc.constantFrom('data', 'fz-games', 'fz-bulk'), anyId) },
    validParams: () => ({ accountId: 'probe', classification: 'data' }),
    body: (rid) => ({ requestId: rid, amount: 100 }),
    fields: { requestId: requiredId, amount: { kind: 'saAmount', required: false } },
  },
  'POST /sessions': {
    params: {},
    validParams: () => ({}),
    body: (rid) => ({ requestId: rid, accountId: 'fz-acc', clientId: 'fuzz', serviceId: 'voice', requested: { units: 60 }, multiSessionId: 'fz-multi', notifyUri: 'https://client.example/notify' }),
    fields: { requestId: requiredId, accountId: requiredId, clientId: requiredId, serviceId: requiredId, requested: { kind: 'requested', required: true }, multiSessionId: { kind: 'id', required: false }, notifyUri: { kind: 'url', required: false } },
    forms: [{
      body: (rid) => ({ requestId: rid, parties: [{ accountId: 'fz-acc' }, { accountId: 'fz-acc2' }], principle: { type: 'shares', shares: { 'fz-acc': 70, 'fz-acc2': 30 } }, clientId: 'fuzz', serviceId: 'voice', requested: { units: 60 } }),
      fields: { requestId: requiredId, parties: { kind: 'parties', required: true }, principle: { kind: 'principle', required: true }, clientId: requiredId, serviceId: requiredId, requested: { kind: 'requested', required: true } },
    }],
  },
  'POST /sessions/{sessionId}/update': {
    params: { sessionId: fc.oneof(fc.constant('@fuzz-session'), anyId) },
    validParams: () => ({ sessionId: '@probe-session' }),
    body: (rid) => ({ requestId: rid, used: { units: 10 }, requested: { units: 60 } }),
    fields: { requestId: requiredId, used: { kind: 'used', required: true }, requested: { kind: 'requested', required: false } },
  },
  'POST /sessions/{sessionId}/debit': {
    params: { sessionId: fc.oneof(fc.constant('@fuzz-session'), anyId) },
    validParams: () => ({ sessionId: '@probe-session' }),
    body: (rid) => ({ requestId: rid, used: { units: 10 }, outcome: { reason: 'normal' } }),
    fields: { requestId: requiredId, used: { kind: 'used', required: true }, outcome: { kind: 'record', required: false } },
  },
  'POST /sessions/{sessionId}/refund': {
    params: { sessionId: fc.oneof(fc.constant('@fuzz-session'), anyId) },
    validParams: () => ({ sessionId: '@probe-closed' }),
    body: (rid) => ({ requestId: rid, amount: 1, reason: 'goodwill' }),
    fields: { requestId: requiredId, amount: { kind: 'positive', required: false }, reason: { kind: 'reason', required: false } },
  },
  'POST /sessions/{sessionId}/agree': {
    params: { sessionId: fc.oneof(fc.constantFrom('@fuzz-session', '@fuzz-party'), anyId) },
    validParams: () => ({ sessionId: '@probe-session' }),
    body: (rid) => ({ requestId: rid, accountId: 'fz-acc' }),
    fields: { requestId: requiredId, accountId: requiredId },
  },
  'GET /sessions/{sessionId}': { params: { sessionId: fc.oneof(fc.constant('@fuzz-session'), anyId) }, validParams: () => ({ sessionId: '@probe-session' }) },
  'GET /multi-sessions/{multiSessionId}': { params: { multiSessionId: fc.oneof(fc.constantFrom('fz-multi', '@fuzz-session'), anyId) }, validParams: () => ({ multiSessionId: '@probe-session' }) },
  'POST /debits': {
    params: {},
    validParams: () => ({}),
    body: (rid) => ({ requestId: rid, accountId: 'fz-acc', clientId: 'smsc', serviceId: 'sms', units: 1 }),
    fields: { requestId: requiredId, accountId: requiredId, clientId: requiredId, serviceId: requiredId, units: { kind: 'positive', required: false }, amount: { kind: 'positive', required: false } },
  },
};

const routeKey = (route: Route) => `${route.method} ${route.path}`;

/** A route added after this file was written is still fuzzed, with no knowledge of its body. */
function specOf(route: Route): Spec {
  const known = specs[routeKey(route)];
  if (known) return known;
  const names = [...route.path.matchAll(/\{(\w+)\}/g)].map((m) => m[1]!);
  return {
    params: Object.fromEntries(names.map((n) => [n, fc.oneof(fc.constantFrom('fz-acc', '@fuzz-session'), anyId)])),
    validParams: () => Object.fromEntries(names.map((n) => [n, 'probe'])),
  };
}

function buildPath(route: Route, params: Record<string, string>, query?: Record<string, string>): string {
  const path = route.path.replace(/\{(\w+)\}/g, (_, name: string) => {
    let value = params[name]!;
    if (value === '@fuzz-session') value = sessions.fuzz;
    if (value === '@fuzz-party') value = sessions.party;
    if (value === '@probe-session') value = sessions.probe;
    if (value === '@probe-closed') value = sessions.probeClosed;
    // A lone surrogate cannot travel in a URL: the client would have replaced it.
    return encodeURIComponent((value as string & { toWellFormed(): string }).toWellFormed());
  });
  const search = query && Object.keys(query).length ? `?${new URLSearchParams(query).toString()}` : '';
  return `${path}${search}`;
}

/** Values the schema of `kind` must refuse. */
function invalidFor(kind: Kind): fc.Arbitrary<unknown> {
  const notString = fc.oneof(hostileNumber, fc.boolean(), fc.constant(null), fc.constant([]), fc.constant({}));
  const notInteger = fc.oneof(
    fc.constantFrom(0.5, 1.5, 59.999, 2 ** 53, 2 ** 53 + 2, 1e21, 1e300, -1.5, Number.MAX_VALUE, Number.MIN_VALUE),
    fc.double({ noNaN: true, noDefaultInfinity: true }).filter((x) => !Number.isInteger(x)),
    fc.constantFrom('60', '1', '', 'ten', '1e3'), fc.boolean(), fc.constant(null), fc.constant([1]), fc.constant({ value: 1 }),
  );
  switch (kind) {
    case 'id': return fc.oneof(badId, notString);
    case 'positive': return fc.oneof(notInteger, fc.integer({ max: 0 }), fc.constant(-0));
    case 'count': return fc.oneof(notInteger, fc.integer({ max: -1 }));
    case 'requested': return fc.oneof(
      invalidFor('positive').map((units) => ({ units })),
      invalidFor('positive').map((amount) => ({ amount })),
      fc.constant({ units: 1, amount: 1 }), fc.constant({}), fc.constant({ unit: 60 }), fc.constant({ units: 60, extra: 1 }),
      fc.constant({ __proto__: null, units: 60, constructor: 1 }),
      notString, hostileString);
    case 'used': return fc.oneof(
      invalidFor('count').map((units) => ({ units })),
      fc.constant({}), fc.constant({ units: 1, amount: 1 }), fc.constant([{ units: 1 }]), notString, hostileString);
    case 'unit': return fc.oneof(fc.constantFrom('parsecs', 'SECONDS', 'second', '', 'money '), notString);
    case 'kind': return fc.oneof(fc.constantFrom('free', 'Prepaid', 'pre-paid', ''), notString);
    case 'currency': return fc.oneof(fc.constantFrom('euro', 'eur', 'EU', 'EURO', '€', '', '123'), notString);
    case 'timestamp': return fc.oneof(fc.constantFrom('yesterday', '2026-13-01T00:00:00Z', '2026-01-01', '2026-01-01T00:00:00+01:00', '', '1767225600'), hostileNumber, fc.constant(null));
    case 'price': return fc.oneof(
      invalidFor('count').map((amount) => ({ amount, per: 60 })),
      invalidFor('positive').map((per) => ({ amount: 2, per })),
      fc.constant({ amount: 2 }), notString, hostileString);
    case 'url': return fc.oneof(fc.constantFrom('not a url', 'http//x', '', `https://x/${'a'.repeat(2100)}`), notString);
    case 'reason': return fc.oneof(fc.string({ minLength: 513, maxLength: 800 }), hostileNumber, fc.boolean(), fc.constant({}), fc.constant([]));
    case 'record': return fc.oneof(hostileNumber, fc.string(), fc.boolean());
    // null is valid here (it removes the limit).
    case 'limit': return fc.oneof(fc.constantFrom(0.5, 1.5, 2 ** 53, 1e21, -1.5, '60', '', 'ten', true, [1], { value: 1 }), fc.integer({ max: -1 }), fc.constant(undefined));
    case 'saUnit': return fc.oneof(fc.constantFrom('money', 'parsecs', 'KILOBYTES', 'kilobyte', 'bytes', '', 'seconds '), notString);
    case 'saAmount': return fc.oneof(invalidFor('positive'), fc.integer({ min: 1e12 + 1, max: Number.MAX_SAFE_INTEGER }), fc.constantFrom(1e12 + 1, 2 ** 53 - 1));
    case 'saLevel': return fc.oneof(invalidFor('count'), fc.integer({ min: 1e12 + 1, max: Number.MAX_SAFE_INTEGER }), fc.constant(1e12 + 1));
    case 'priority': return fc.oneof(notInteger, fc.integer({ max: -1 }), fc.integer({ min: 1001 }), fc.constantFrom(1001, 2 ** 53 - 1));
    case 'rate': {
      const badTerm = fc.oneof(notInteger, fc.integer({ max: 0 }), fc.integer({ min: 1e6 + 1 }), fc.constantFrom(-0, 1e6 + 1, 1e12));
      return fc.oneof(
        badTerm.map((amount) => ({ amount, units: 1024 })),
        badTerm.map((units) => ({ amount: 100, units })),
        fc.constantFrom({ amount: 100 }, { units: 1024 }, {}, { amount: 100, per: 1024 }, [100, 1024]),
        notString, hostileString);
    }
    case 'schedule': return fc.oneof(
      // `at` out of range for its `every`: an hour 0-23, an ISO weekday 1-7, a day of month 1-31.
      fc.constantFrom(
        { every: 'day', at: 24 }, { every: 'day', at: 31 }, { every: 'day', at: -1 }, { every: 'week', at: 0 }, { every: 'week', at: 8 },
        { every: 'month', at: 0 }, { every: 'month', at: 32 }, { every: 'month', at: -1 }, { every: 'month', at: 1.5 }, { every: 'day', at: '1' },
        { every: 'day', at: null }, { every: 'year' }, { every: 'Day' }, { every: '' }, { at: 1 }, {}, { every: ['day'] }),
      fc.constantFrom('day', 'week', 'month').chain((every) => fc.oneof(notInteger, fc.integer({ min: 32 }), fc.integer({ max: -1 })).map((at) => ({ every, at }))),
      fc.constantFrom('day', 'monthly', '0 0 1 * *'), notString);
    case 'onEmpty': return fc.oneof(fc.constantFrom('terminate', 'Deny', 'DENY', 'redirect ', 'block', ''), notString);
    // Against the proposal's valid body (parties fz-acc and fz-acc2, or probe and fz-acc).
    case 'parties': return fc.oneof(
      fc.constantFrom([], [{ accountId: 'fz-acc' }], [{ accountId: 'fz-acc' }, { accountId: 'fz-acc' }], [{ accountId: 'a b' }, { accountId: 'fz-acc' }],
        [{}, { accountId: 'fz-acc' }], ['fz-acc', 'fz-acc2'], { accountId: 'fz-acc' },
        Array.from({ length: 21 }, (_, i) => ({ accountId: `p${i}` }))),
      invalidFor('id').map((accountId) => [{ accountId }, { accountId: 'fz-acc2' }]), notString);
    case 'principle': return fc.oneof(
      fc.constantFrom({ type: 'winner-pays' }, {}, { type: 'shares' }, { type: 'shares', shares: {} }, { type: 'shares', shares: { 'fz-acc': 100 } },
        { type: 'shares', shares: { 'fz-acc': 70, 'fz-acc2': 31 } }, { type: 'shares', shares: { 'fz-acc': 70, other: 30 } }, { type: 'Split' }, [{ type: 'split' }]),
      invalidFor('count').map((share) => ({ type: 'shares', shares: { 'fz-acc': share, 'fz-acc2': 30 } })),
      fc.constantFrom('split', 'loser-pays'), notString);
    case 'sponsors': return fc.oneof(
      fc.constantFrom([{ accountId: 'fz-acc2' }], [{ accountId: 'fz-acc2', priority: 1001 }], [{ accountId: 'fz-acc2', priority: 1, maxTransfer: 0 }],
        'fz-acc2', { accountId: 'fz-acc2', priority: 1 },
        Array.from({ length: 11 }, (_, i) => ({ accountId: `s${i}`, priority: i }))),
      invalidFor('id').map((accountId) => [{ accountId, priority: 1 }]),
      invalidFor('positive').map((maxTransfer) => [{ accountId: 'fz-acc2', priority: 1, maxTransfer }]),
      notString);
    case 'status': return fc.oneof(fc.constantFrom('deleted', 'Active', 'SUSPENDED', 'expired', '', 'active '), notString);
  }
}

const requestIds = (() => { let n = 0; return () => `fz-${SEED}-${++n}`; })();

/** Valid but extreme values of a field's kind: the edges of what the schema accepts. */
function boundaryFor(kind: Kind): fc.Arbitrary<unknown> | null {
  switch (kind) {
    case 'id': return fc.constantFrom('__proto__', 'constructor', 'toString', 'hasOwnProperty', 'a'.repeat(128), '0', ':', '-', '.x', '..x');
    case 'positive': return fc.constantFrom(1, 2, 2 ** 31 - 1, 2 ** 32, 1e12, 1e15, 2 ** 53 - 2, 2 ** 53 - 1);
    case 'count':
    case 'limit': return fc.constantFrom(0, 1, 2 ** 31 - 1, 1e15, 2 ** 53 - 1);
    case 'requested': return fc.constantFrom(1, 2 ** 31 - 1, 1e15, 2 ** 53 - 1).chain((n) => fc.constantFrom({ units: n }, { amount: n }));
    case 'used': return fc.constantFrom(0, 1, 2 ** 31 - 1, 1e15, 2 ** 53 - 1).map((units) => ({ units }));
    case 'price': return fc.constantFrom({ amount: 0, per: 1 }, { amount: 2 ** 53 - 1, per: 1 }, { amount: 1, per: 2 ** 53 - 1 });
    case 'saUnit': return fc.constantFrom('seconds', 'kilobytes', 'events');
    case 'saAmount': return fc.constantFrom(1, 2, 2 ** 31 - 1, 1e9, 1e11, 1e12);
    case 'saLevel': return fc.constantFrom(0, 1, 2 ** 31 - 1, 1e12);
    case 'priority': return fc.constantFrom(0, 1000);
    case 'rate': return fc.constantFrom({ amount: 1, units: 1 }, { amount: 1e6, units: 1e6 }, { amount: 1, units: 1e6 }, { amount: 1e6, units: 1 });
    case 'schedule': return fc.constantFrom(
      { every: 'day' }, { every: 'day', at: 0 }, { every: 'day', at: 23 }, { every: 'week' }, { every: 'week', at: 1 }, { every: 'week', at: 7 },
      { every: 'month' }, { every: 'month', at: 1 }, { every: 'month', at: 29 }, { every: 'month', at: 31 });
    case 'onEmpty': return fc.constantFrom('deny', 'redirect', 'restrict');
    default: return null;
  }
}

/** Property 1: anything at all. */
/** '.' and '..' are dot segments: URL normalisation would turn the path into another route. */
const noDotSegments = (params: Record<string, string>) => Object.values(params).every((v) => v !== '.' && v !== '..');

function anyRequest(route: Route): fc.Arbitrary<Request> {
  const spec = specOf(route);
  const params = fc.record(spec.params).filter(noDotSegments);
  const query = spec.query
    ? fc.oneof(
      fc.record({ limit: fc.oneof(fc.integer({ min: -5, max: 2000 }).map(String), hostileString) }, { requiredKeys: [] }),
      fc.record({ next: fc.oneof(fc.base64String({ maxLength: 200 }), hostileString, fc.constant(Buffer.from('2026-01-01T00:00:00.000Z#x', 'utf8').toString('base64url'))) }, { requiredKeys: [] }),
      fc.dictionary(hostileKey, hostileString, { maxKeys: 3 }))
    : fc.oneof(fc.constant(undefined), fc.dictionary(hostileKey, hostileString, { maxKeys: 2 }));
  const bodies: Array<fc.Arbitrary<string>> = [
    fc.constant(''),
    hostileValue.map((v) => JSON.stringify(v) ?? 'null'),
    fc.string({ maxLength: 60 }),
    deepJson,
  ];
  for (const { body: valid, fields: fieldKinds } of formsOf(spec)) {
    const fields = Object.keys(fieldKinds);
    bodies.push(
      fc.constant(null).map(() => JSON.stringify(valid(requestIds()))),
      fc.record({ field: fc.constantFrom(...fields), value: hostileValue }).map(({ field, value }) => JSON.stringify({ ...valid(requestIds()), [field]: value })),
      fc.record({ field: fc.constantFrom(...fields) }).map(({ field }) => { const b = valid(requestIds()); delete b[field]; return JSON.stringify(b); }),
      // Valid, at the edges: huge amounts, identifiers that are JavaScript property names.
      ...Object.entries(fieldKinds).flatMap(([field, { kind }]) => {
        const edge = boundaryFor(kind);
        return edge ? [edge.map((value) => JSON.stringify({ ...valid(requestIds()), [field]: value }))] : [];
      }),
      fc.dictionary(hostileKey, hostileValue, { maxKeys: 3 }).map((extra) => JSON.stringify({ ...extra, ...valid(requestIds()) })),
      // Prototype pollution attempts, as raw JSON text so the keys are really there.
      fc.constantFrom('{"__proto__":{"polluted":"yes"}}', '{"constructor":{"prototype":{"polluted":"yes"}}}')
        .map((prefix) => `${prefix.slice(0, -1)},${JSON.stringify(valid(requestIds())).slice(1)}`),
    );
  }
  return fc.record({ params, query, body: fc.oneof(...bodies) }).map(({ params: p, query: q, body }) => ({
    method: route.method,
    path: buildPath(route, p as Record<string, string>, q as Record<string, string> | undefined),
    body: route.method === 'GET' ? (body.length < 200 ? body : '') : body,
  }));
}

/** Property 2: requests the API must refuse, aimed at the probe account and its sessions. */
function invalidRequest(route: Route): fc.Arbitrary<Request> | null {
  const spec = specs[routeKey(route)];
  if (!spec) return null;
  const options: Array<fc.Arbitrary<Request>> = [];
  const base = () => ({ method: route.method, validParams: spec.validParams() });
  /** A form's valid body, aimed at the probe (a proposal's first party is the probe). */
  const probeBody = (form: Form, rid: string) => {
    const body = form.body(rid);
    if ('accountId' in body && routeKey(route) !== 'POST /accounts') body.accountId = 'probe';
    if (Array.isArray(body.parties)) {
      body.parties = [{ accountId: 'probe' }, { accountId: 'fz-acc' }];
      body.principle = { type: 'shares', shares: { probe: 70, 'fz-acc': 30 } };
    }
    return body;
  };
  const forms = formsOf(spec);
  // A bad identifier in the path.
  for (const name of Object.keys(spec.params)) {
    options.push(badId.map((bad) => {
      const { method, validParams } = base();
      return { method, path: buildPath(route, { ...validParams, [name]: bad }), body: forms.length ? JSON.stringify(probeBody(forms[0]!, requestIds())) : '' };
    }));
  }
  for (const form of forms) {
    const fields = Object.entries(form.fields);
    // One field made invalid.
    options.push(fc.constantFrom(...fields).chain(([field, { kind }]) => invalidFor(kind).map((value) => {
      const body = probeBody(form, requestIds());
      body[field] = value;
      return { method: route.method, path: buildPath(route, spec.validParams()), body: JSON.stringify(body) };
    })));
    // A required field missing.
    const required = fields.filter(([, f]) => f.required).map(([k]) => k);
    if (required.length) {
      options.push(fc.constantFrom(...required).map((field) => {
        const body = probeBody(form, requestIds());
        delete body[field];
        return { method: route.method, path: buildPath(route, spec.validParams()), body: JSON.stringify(body) };
      }));
    }
  }
  if (forms.length) {
    // Not JSON, or JSON that is not an object.
    options.push(fc.oneof(
      fc.constantFrom('{', '{"requestId": ', 'nul', '[1,2', "{'a':1}", '\u0000', '{"a":1}}', 'undefined'),
      fc.oneof(hostileNumber, hostileString, fc.constant(null), fc.array(hostileValue, { maxLength: 3 })).map((v) => JSON.stringify(v) ?? 'null'),
    ).map((body) => ({ method: route.method, path: buildPath(route, spec.validParams()), body })));
    // Deeply nested where an object is expected.
    options.push(deepJson.map((body) => ({ method: route.method, path: buildPath(route, spec.validParams()), body })));
  }
  if (spec.query) {
    options.push(fc.oneof(
      fc.constantFrom('0', '-1', '1001', '1.5', 'ten', '', '1e9').map((limit) => ({ limit })),
      fc.oneof(fc.constantFrom('garbage', '!!!', 'x'.repeat(1025)), fc.string({ minLength: 1, maxLength: 50 }).filter((s) => !/^\d{4}-\d\d-\d\dT[^#]+#.+$/.test(Buffer.from(s, 'base64url').toString('utf8'))))
        .map((next) => ({ next })),
    ).map((query) => ({ method: route.method, path: buildPath(route, spec.validParams(), query as Record<string, string>), body: '' })));
  }
  return options.length ? fc.oneof(...options) : null;
}

/** Inputs that trigger a known bug (see KNOWN): left out of property 1, and counted. */
function knownBug(request: Request): BugName | null {
  return detectBugs(request).find((bug) => bug in KNOWN) ?? null;
}

/**
 * What the answers of property 1 (and the setup) showed of each service account, by
 * "accountId/classification": the detector of serviceAccountUnits needs the units held and
 * the rate. Balances only grow there (nothing charges fz-owner's service accounts), so the
 * largest balance seen is kept (a repeated requestId answers an older balance).
 */
const seenServiceAccounts = new Map<string, { balance: number; rate: { amount: number; units: number }; rechargeAmount?: number }>();
const serviceAccountPath = /^\/accounts\/([^/?]+)\/service-accounts\/([^/?]+)(\/recharge)?(?:\?.*)?$/;
const serviceAccountKey = (match: RegExpExecArray) => `${decodeURIComponent(match[1]!)}/${decodeURIComponent(match[2]!)}`;

function noteAnswer(request: Request, answer: Answer) {
  const match = serviceAccountPath.exec(request.path);
  if (!match || answer.status >= 300) return;
  const view = answer.json?.serviceAccount ?? answer.json;
  if (typeof view?.balance !== 'number' || typeof view?.rate?.units !== 'number') return;
  const key = serviceAccountKey(match);
  const balance = Math.max(view.balance, seenServiceAccounts.get(key)?.balance ?? 0);
  seenServiceAccounts.set(key, { balance, rate: view.rate, rechargeAmount: view.rechargeAmount });
}

/** The detectors of the bugs listed in KNOWN, now and once (kept for the next one). */
function detectBugs(request: Request): BugName[] {
  let body: any;
  try { body = JSON.parse(request.body); } catch { return []; }
  const bugs: BugName[] = [];
  const recharge = request.method === 'POST' ? serviceAccountPath.exec(request.path) : null;
  if (recharge?.[3] && body && typeof body === 'object') {
    // A service account never seen does not exist: only a PUT creates one, and every answer
    // of property 1 and of the setup is seen (property 2 sends no valid PUT).
    const sa = seenServiceAccounts.get(serviceAccountKey(recharge));
    const amount: unknown = 'amount' in body ? body.amount : sa?.rechargeAmount;
    if (sa && Number.isSafeInteger(amount) && (amount as number) >= 1 && (amount as number) <= 1e12
      && sa.balance + Math.floor(((amount as number) * sa.rate.units) / sa.rate.amount) > Number.MAX_SAFE_INTEGER) bugs.push('serviceAccountUnits');
  }
  bugs.push(...detectRequestBugs(body));
  return bugs;
}

function detectRequestBugs(body: any): BugName[] {
  if (body && typeof body === 'object' && typeof body.requestId === 'string' && NAMES_OF_THE_PROTOTYPE.includes(body.requestId)) return ['prototypeRequestIds'];
  let huge = false;
  const visit = (value: unknown, depth: number) => {
    if (depth > 20) return;
    if (typeof value === 'number' && Number.isSafeInteger(value) && Math.abs(value) > HUGE) huge = true;
    else if (value && typeof value === 'object') for (const v of Object.values(value)) visit(v, depth + 1);
  };
  visit(body, 0);
  return huge ? ['hugeNumbers'] : [];
}

// ------------------------------------------------------------------------------- setup

async function snapshot() {
  let count = 0;
  let start: Record<string, any> | undefined;
  do {
    const page = await store.db.send(new ScanCommand({ TableName: store.tableName, Select: 'COUNT', ExclusiveStartKey: start }));
    count += page.Count ?? 0;
    start = page.LastEvaluatedKey;
  } while (start);
  const { Item: probe } = await store.db.send(new GetCommand({ TableName: store.tableName, Key: { pk: 'ACC#probe', sk: 'ACCOUNT' }, ConsistentRead: true }));
  const ledgerCount = async (accountId: string) => (await store.db.send(new QueryCommand({ TableName: store.tableName, KeyConditionExpression: 'pk = :pk', ExpressionAttributeValues: { ':pk': `LEDGER#${accountId}` }, Select: 'COUNT', ConsistentRead: true }))).Count;
  const item = async (pk: string, sk: string) => (await store.db.send(new GetCommand({ TableName: store.tableName, Key: { pk, sk }, ConsistentRead: true }))).Item;
  const session = async (id: string) => {
    const { Item } = await store.db.send(new GetCommand({ TableName: store.tableName, Key: { pk: `SES#${id}`, sk: 'SESSION' }, ConsistentRead: true }));
    return { state: Item?.state, seq: Item?.seq, refunded: Item?.refundedMinor, answers: Object.keys(Item?.answers ?? {}).length };
  };
  return {
    items: count,
    probe: { balance: probe?.balance, reserved: probe?.reserved, available: probe?.available, ops: JSON.stringify(probe?.ops), serviceAccounts: JSON.stringify(probe?.serviceAccounts) },
    ledgerEntries: await ledgerCount('probe'),
    // The probe's data account: every attribute (units and settings), its ledger, its schedule marker.
    dataAccount: await item('ACC#probe~data', 'ACCOUNT'),
    dataLedgerEntries: await ledgerCount('probe~data'),
    dataSchedule: await item('RCH#probe~data', 'SCHEDULE'),
    sessions: [await session(sessions.probe), await session(sessions.probeClosed)],
  };
}

beforeAll(async () => {
  console.log(`fuzz seed ${SEED}, ${RUNS} runs per route, ${INVALID_BATCHES} batches of invalid requests (FUZZ_SEED / FUZZ_RUNS / FUZZ_INVALID_BATCHES to change)`);
  logger.setLogLevel('SILENT');
  store = await testStore();
  useStore(store);
  headers = { 'content-type': 'application/json' };
  const token = apiToken();
  if (token) headers.authorization = `Bearer ${token}`;
  const setup = async (method: string, path: string, body: unknown, status: number) => {
    const request = { method, path, body: JSON.stringify(body) };
    const answer = await send(request);
    expect(answer.status, `${method} ${path}: ${answer.text}`).toBe(status);
    noteAnswer(request, answer);
    return answer.json;
  };
  await setup('PUT', '/services/voice', { unit: 'seconds', price: { amount: 2, per: 60 }, validitySeconds: 300 }, 200);
  await setup('PUT', '/services/sms', { unit: 'events', price: { amount: 5, per: 1 }, validitySeconds: 300 }, 200);
  await setup('POST', '/accounts', { accountId: 'fz-acc', currency: 'EUR', kind: 'prepaid' }, 201);
  await setup('POST', '/accounts/fz-acc/topup', { requestId: 'fz-seed', amount: 100_000_000_000 }, 200);
  await setup('POST', '/accounts', { accountId: 'fz-acc2', currency: 'EUR', kind: 'postpaid', creditLimit: 100_000 }, 201);
  await setup('POST', '/accounts', { accountId: 'fz-child', currency: 'EUR', kind: 'prepaid', mainAccountId: 'fz-acc', consumptionLimit: 5000 }, 201);
  const party = await setup('POST', '/sessions', { requestId: 'fz-propose', parties: [{ accountId: 'fz-acc' }, { accountId: 'fz-acc2' }], principle: { type: 'split' }, clientId: 'fuzz', serviceId: 'voice', requested: { units: 600 } }, 201);
  await setup('POST', '/accounts', { accountId: 'probe', currency: 'EUR', kind: 'prepaid' }, 201);
  await setup('POST', '/accounts/probe/topup', { requestId: 'probe-seed', amount: 1000 }, 200);
  const fuzz = await setup('POST', '/sessions', { requestId: 'fz-open', accountId: 'fz-acc', clientId: 'fuzz', serviceId: 'voice', requested: { units: 600 }, multiSessionId: 'fz-multi' }, 201);
  const probe = await setup('POST', '/sessions', { requestId: 'probe-open', accountId: 'probe', clientId: 'probe', serviceId: 'voice', requested: { units: 600 } }, 201);
  const closed = await setup('POST', '/sessions', { requestId: 'probe-open-2', accountId: 'probe', clientId: 'probe', serviceId: 'voice', requested: { units: 600 } }, 201);
  await setup('POST', `/sessions/${closed.sessionId}/debit`, { requestId: 'probe-close-2', used: { units: 300 } }, 200);
  // Service accounts: the probe's (aimed at by property 2) and fz-owner's (fuzzed by property 1).
  await setup('PUT', '/services/data', { unit: 'kilobytes', price: { amount: 100, per: 1024 }, validitySeconds: 300 }, 200);
  await setup('PUT', '/accounts/probe/service-accounts/data', PROBE_DATA_ACCOUNT, 201);
  await setup('POST', '/accounts/probe/service-accounts/data/recharge', { requestId: 'probe-data-r1', amount: 200 }, 200);
  await setup('POST', '/accounts', { accountId: 'fz-owner', currency: 'EUR', kind: 'prepaid' }, 201);
  await setup('POST', '/accounts/fz-owner/topup', { requestId: 'fz-owner-seed', amount: 100_000_000_000 }, 200);
  await setup('PUT', '/accounts/fz-owner/service-accounts/data', PROBE_DATA_ACCOUNT, 201);
  await setup('PUT', '/accounts/fz-owner/service-accounts/fz-games', { unit: 'events', rate: { amount: 50, units: 1 }, priority: 0, onEmpty: 'deny' }, 201);
  // The most generous rate the schema allows: a minor unit buys 10^6 kilobytes.
  await setup('PUT', '/accounts/fz-owner/service-accounts/fz-bulk', { unit: 'kilobytes', rate: { amount: 1, units: 1e6 }, priority: 1000, onEmpty: 'restrict' }, 201);
  sessions = { fuzz: fuzz.sessionId, party: party.sessionId, probe: probe.sessionId, probeClosed: closed.sessionId };
});

afterAll(() => {
  const lines = [...statusTally].map(([route, tally]) => `  ${route}: ${[...tally].sort((a, b) => a[0] - b[0]).map(([st, n]) => `${st}×${n}`).join(' ')}`);
  if (lines.length) console.log(`statuses answered (property 1):\n${lines.join('\n')}`);
  if (knownHits.size) console.log(`inputs left out as known bugs: ${JSON.stringify(Object.fromEntries(knownHits))}`);
});

// --------------------------------------------------------------------------- properties

describe('every route in functions/http/routes.ts', () => {
  it('is fuzzed (routes without a dedicated spec get generic input)', () => {
    const generic = routes.filter((route) => !specs[routeKey(route)]).map(routeKey);
    if (generic.length) console.log(`routes fuzzed with generic input only (add a spec in ${import.meta.url.split('/').slice(-2).join('/')}): ${generic.join(', ')}`);
    expect(routes.length).toBeGreaterThan(0);
  });
});

describe.each(routes.map((route, i) => [routeKey(route), route, i] as const))('%s', (_name, route, index) => {
  it('never answers 5xx; every problem is well-formed JSON with code and status', { timeout: 120_000 }, async () => {
    await fc.assert(
      fc.asyncProperty(anyRequest(route), async (request) => {
        const bug = INCLUDE_KNOWN ? null : knownBug(request);
        if (bug) { knownHits.set(bug, (knownHits.get(bug) ?? 0) + 1); return; }
        const answer = await send(request);
        noteAnswer(request, answer);
        const tally = statusTally.get(routeKey(route)) ?? new Map<number, number>();
        tally.set(answer.status, (tally.get(answer.status) ?? 0) + 1);
        statusTally.set(routeKey(route), tally);
        checkAnswer(request, answer);
      }),
      { seed: SEED + index, numRuns: RUNS, endOnFailure: true },
    );
  });
});

describe('invalid requests', () => {
  it('are refused with a problem and write nothing (table item count, probe account, its ledger, sessions and service account)', { timeout: 120_000 }, async () => {
    const generators = routes.map(invalidRequest).filter((g): g is fc.Arbitrary<Request> => g !== null);
    expect(generators.length).toBeGreaterThan(0);
    // What the valid params point at is there: the probe's sessions and its service account.
    const start = await snapshot();
    expect(start.dataAccount?.classification).toBe('data');
    expect(start.dataSchedule?.dueAt).toBeDefined();
    expect(start.sessions.map((session) => session.state)).toEqual(['active', 'closed']);
    await fc.assert(
      fc.asyncProperty(fc.array(fc.oneof(...generators), { minLength: 1, maxLength: 8 }), async (batch) => {
        const before = await snapshot();
        for (const request of batch) {
          const answer = await send(request);
          checkAnswer(request, answer);
          expect(answer.status, `${request.method} ${request.path} ${request.body.slice(0, 200)} was accepted: ${answer.text.slice(0, 200)}`).toBeGreaterThanOrEqual(400);
        }
        expect(await snapshot()).toEqual(before);
      }),
      { seed: SEED + 1000, numRuns: INVALID_BATCHES, endOnFailure: true },
    );
  });

  it('never pollute Object.prototype', () => {
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(Object.getOwnPropertyNames(Object.prototype).sort()).toEqual(NAMES_OF_THE_PROTOTYPE.slice().sort());
  });
});

// ------------------------------------------------------------- fixed bugs (regression guards)

describe('fuzz findings (bugs in functions/, fixed: kept as guards)', () => {
  // On a table of their own: the properties above may have used these very requestIds (a
  // session id derives from its requestId), and a requestId reused with another body is
  // rightly 409.
  beforeAll(async () => {
    useStore(await testStore());
    await send({ method: 'PUT', path: '/services/voice', body: JSON.stringify({ unit: 'seconds', price: { amount: 2, per: 60 }, validitySeconds: 300 }) });
    await send({ method: 'PUT', path: '/services/sms', body: JSON.stringify({ unit: 'events', price: { amount: 5, per: 1 }, validitySeconds: 300 }) });
  });
  // Each on its own funded account, so nothing the properties above did can change the outcome.
  const funded = async (accountId: string) => {
    const created = await send({ method: 'POST', path: '/accounts', body: JSON.stringify({ accountId, currency: 'EUR', kind: 'prepaid' }) });
    const topUp = await send({ method: 'POST', path: `/accounts/${accountId}/topup`, body: JSON.stringify({ requestId: `${accountId}-seed`, amount: 1_000_000 }) });
    if (created.status !== 201 || topUp.status !== 200) throw new Error(`setup of ${accountId} failed: ${created.text} ${topUp.text}`);
    return accountId;
  };

  it('hugeNumbers: a direct debit of 2^53-1 events is refused with a 4xx, not 500', async () => {
    const accountId = await funded('kb-1');
    const answer = await send({ method: 'POST', path: '/debits', body: JSON.stringify({ requestId: 'big-1', accountId, clientId: 'c', serviceId: 'sms', units: 2 ** 53 - 1 }) });
    expect(answer.status, answer.text).toBeLessThan(500);
  });

  it('hugeNumbers: a reserve of { amount: 2^53-1 } is answered 201 or 402, not 500', async () => {
    const accountId = await funded('kb-2');
    const answer = await send({ method: 'POST', path: '/sessions', body: JSON.stringify({ requestId: 'big-2', accountId, clientId: 'c', serviceId: 'voice', requested: { amount: 2 ** 53 - 1 } }) });
    expect(answer.status, answer.text).toBeLessThan(500);
  });

  it('hugeNumbers: an update reporting 2^53-1 used units after some usage is answered with a 4xx, not 500', async () => {
    const accountId = await funded('kb-5');
    const opened = await send({ method: 'POST', path: '/sessions', body: JSON.stringify({ requestId: 'big-5', accountId, clientId: 'c', serviceId: 'voice', requested: { units: 60 } }) });
    if (opened.status !== 201) throw new Error(`setup: ${opened.text}`);
    const first = await send({ method: 'POST', path: `/sessions/${opened.json.sessionId}/update`, body: JSON.stringify({ requestId: 'big-5b', used: { units: 10 }, requested: { units: 60 } }) });
    if (first.status !== 200) throw new Error(`setup: ${first.text}`);
    // The running total 10 + (2^53 - 1) is past 2^53 - 1.
    const answer = await send({ method: 'POST', path: `/sessions/${opened.json.sessionId}/update`, body: JSON.stringify({ requestId: 'big-6', used: { units: 2 ** 53 - 1 } }) });
    expect(answer.status, answer.text).toBeLessThan(500);
  });

  it('hugeNumbers: a top-up that would carry the balance past 2^53-1 is refused and leaves the account readable', async () => {
    await send({ method: 'POST', path: '/accounts', body: JSON.stringify({ accountId: 'fz-big', currency: 'EUR', kind: 'prepaid' }) });
    await send({ method: 'POST', path: '/accounts/fz-big/topup', body: JSON.stringify({ requestId: 'big-3', amount: 1000 }) });
    const topUp = await send({ method: 'POST', path: '/accounts/fz-big/topup', body: JSON.stringify({ requestId: 'big-4', amount: 2 ** 53 - 1 }) });
    const read = await send({ method: 'GET', path: '/accounts/fz-big', body: '' });
    expect(topUp.status, topUp.text).toBeLessThan(500);
    expect(read.status, read.text).toBe(200);
  });

  it('prototypeRequestIds: an update whose requestId is "constructor" is applied, not refused as idempotency_conflict', async () => {
    const accountId = await funded('kb-6');
    const opened = await send({ method: 'POST', path: '/sessions', body: JSON.stringify({ requestId: 'proto-open', accountId, clientId: 'c', serviceId: 'voice', requested: { units: 60 } }) });
    if (opened.status !== 201) throw new Error(`setup: ${opened.text}`);
    const answer = await send({ method: 'POST', path: `/sessions/${opened.json.sessionId}/update`, body: JSON.stringify({ requestId: 'constructor', used: { units: 1 }, requested: { units: 60 } }) });
    expect(answer.status, answer.text).toBe(200);
  });

  it('prototypeRequestIds: a reserve whose requestId is "__proto__" is answered 201, not 500', async () => {
    const accountId = await funded('kb-7');
    const answer = await send({ method: 'POST', path: '/sessions', body: JSON.stringify({ requestId: '__proto__', accountId, clientId: 'c', serviceId: 'voice', requested: { units: 60 } }) });
    expect(answer.status, answer.text).toBe(201);
  });
});

// ------------------------------------------------------------- findings of the service-account specs (fixed; kept as guards)

describe('fuzz findings (bugs in functions/, fixed: kept as guards)', () => {
  // On a table of their own, as the guards above.
  beforeAll(async () => {
    useStore(await testStore());
    await send({ method: 'PUT', path: '/services/__proto__', body: JSON.stringify({ unit: 'events', price: { amount: 5, per: 1 }, validitySeconds: 300 }) });
  });
  const call = async (method: string, path: string, body?: unknown) => send({ method, path, body: body === undefined ? '' : JSON.stringify(body) });
  /** An owner holding `balance` with a service account `classification` in `settings`. */
  const owner = async (accountId: string, balance: number, classification: string, settings: Record<string, unknown>) => {
    const created = await call('POST', '/accounts', { accountId, currency: 'EUR', kind: 'prepaid' });
    const topUp = await call('POST', `/accounts/${accountId}/topup`, { requestId: `${accountId}-seed`, amount: balance });
    const sa = await call('PUT', `/accounts/${accountId}/service-accounts/${classification}`, settings);
    if (created.status !== 201 || topUp.status !== 200) throw new Error(`setup of ${accountId} failed: ${created.text} ${topUp.text}`);
    return sa;
  };
  const bulk = { unit: 'kilobytes', rate: { amount: 1, units: 1e6 }, priority: 0, onEmpty: 'deny' };

  // Was: 500 (the invariant of unitsBought threw: 10^10 × 10^6 = 10^16 units), nothing written.
  // Should: a 4xx (400 validation_failed or 409 conflict: the amount buys more units than an
  // account can hold), since amount (≤ 10^12) and rate (≤ 10^6 units) are each valid.
  it('serviceAccountUnits: a recharge of 10^10 at { amount: 1, units: 10^6 } (10^16 kilobytes) is refused with a 4xx, not 500', async () => {
    await owner('ko-1', 100_000_000_000, 'bulk', bulk);
    const answer = await call('POST', '/accounts/ko-1/service-accounts/bulk/recharge', { requestId: 'ko-1-r1', amount: 1e10 });
    expect(answer.status, answer.text).toBeGreaterThanOrEqual(400);
    expect(answer.status, answer.text).toBeLessThan(500);
  });

  // Was: the second of two recharges of 9·10^15 units was committed (the owner paid) but
  // answered 500, as was its repeat; from then on GET of the service account, GET of the
  // owner, PUT of the service account and every recharge of it answered 500 (an item holding
  // a number past 2^53-1 cannot be read). Now a service account holds at most
  // MAX_BALANCE_MINOR (10^15) units, as any account: a recharge of 9·10^15 units is refused up
  // front, and two of 9·10^14 are refused at the second by the transaction's condition, before
  // anything moves; both accounts stay readable, and the repeat answers the same.
  it('serviceAccountUnits: a recharge that would carry the units held past what an account may hold is refused, moves nothing, and leaves the service account and its owner readable', async () => {
    await owner('ko-2', 100_000_000_000, 'bulk', bulk);
    const tooMany = await call('POST', '/accounts/ko-2/service-accounts/bulk/recharge', { requestId: 'ko-2-r0', amount: 9e9 });
    expect([tooMany.status, tooMany.json?.code]).toEqual([400, 'validation_failed']);
    const first = await call('POST', '/accounts/ko-2/service-accounts/bulk/recharge', { requestId: 'ko-2-r1', amount: 9e8 });
    expect(first.status, first.text).toBe(200);
    const second = await call('POST', '/accounts/ko-2/service-accounts/bulk/recharge', { requestId: 'ko-2-r2', amount: 9e8 });
    expect([second.status, second.json?.code, second.json?.maxBalance]).toEqual([400, 'validation_failed', 1e15]);
    expect(await call('POST', '/accounts/ko-2/service-accounts/bulk/recharge', { requestId: 'ko-2-r2', amount: 9e8 })).toEqual(second);
    const read = await call('GET', '/accounts/ko-2/service-accounts/bulk');
    const ownerRead = await call('GET', '/accounts/ko-2');
    expect(read.status, read.text).toBe(200);
    expect(read.json.balance).toBe(9e14);
    expect(ownerRead.status, ownerRead.text).toBe(200);
    expect(ownerRead.json.balance).toBe(100_000_000_000 - 9e8);
  });

  // Was: PUT answered 201, but the owner's map `serviceAccounts.__proto__` is read back by
  // unmarshall as the prototype of the map, not as an own key: GET /accounts/ko-3 lists no
  // service account. Should: listed (or the classification refused at PUT with a 400).
  it('prototypeClassifications: a service account named "__proto__" is listed by GET /accounts/{owner}, or refused at PUT', async () => {
    const put = await owner('ko-3', 1000, '__proto__', { unit: 'events', rate: { amount: 1, units: 1 }, priority: 0, onEmpty: 'deny' });
    if (put.status >= 400 && put.status < 500) return;
    expect(put.status, put.text).toBe(201);
    const read = await call('GET', '/accounts/ko-3');
    expect(read.json?.serviceAccounts?.map((sa: { classification: string }) => sa.classification), read.text).toEqual(['__proto__']);
  });

  // Was: both answered 500: the owner's write is refused by its condition
  // (attribute_not_exists(serviceAccounts.#svc)) as it should be, but
  // Object.hasOwn(account.serviceAccounts, '__proto__') is false on the unmarshalled item, so
  // the refusal is not taken for routing (functions/store/ops.ts) and the handler fails.
  // Should: 201, drawn from the service account (as for any other classification,
  // "constructor" included).
  it('prototypeClassifications: an event charge and a session of the service "__proto__" draw from the service account "__proto__", not 500', async () => {
    const put = await owner('ko-4', 1000, '__proto__', { unit: 'events', rate: { amount: 1, units: 1 }, priority: 0, onEmpty: 'deny' });
    if (put.status >= 400 && put.status < 500) return;
    const recharge = await call('POST', '/accounts/ko-4/service-accounts/__proto__/recharge', { requestId: 'ko-4-r1', amount: 100 });
    if (recharge.status !== 200) throw new Error(`setup: ${recharge.text}`);
    const debit = await call('POST', '/debits', { requestId: 'ko-4-d1', accountId: 'ko-4', clientId: 'c', serviceId: '__proto__', units: 1 });
    const session = await call('POST', '/sessions', { requestId: 'ko-4-s1', accountId: 'ko-4', clientId: 'c', serviceId: '__proto__', requested: { units: 3 } });
    expect(debit.status, debit.text).toBe(201);
    expect(debit.json?.serviceAccount).toBe('__proto__');
    expect(session.status, session.text).toBe(201);
    expect(session.json?.serviceAccount).toBe('__proto__');
  });
});
