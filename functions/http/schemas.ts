// Request schemas. Money and units are safe positive integers; identifiers one pattern.
//
// Valibot: each schema and check is a function of its own, so a Lambda's bundle carries only
// those its handler uses (3-10 KB; zod/mini, the previous choice, carried its whole core:
// 12-31 KB). Unknown keys of an object are dropped, as zod did; `strictObject` refuses them.
import * as v from 'valibot';
import { MAX_BALANCE_MINOR } from '../domain/rating.js';

/**
 * Every schema is built through `schema(() => ...)`: built when the module loads, but marked
 * free of side effects, so esbuild drops from each Lambda's bundle the schemas its handler
 * never uses (a bare call at module scope would be kept, and built at every cold start).
 */
// @__NO_SIDE_EFFECTS__
function schema<T>(build: () => T): T {
  return build();
}

/** A whole number in [min, max]. */
// @__NO_SIDE_EFFECTS__
export function integer(min: number, max: number) {
  return v.pipe(v.number(), v.integer('must be a whole number'), v.minValue(min, `must be at least ${min}`), v.maxValue(max, `must be at most ${max}`));
}

const IDENTIFIER = /^[A-Za-z0-9._:-]{1,128}$/;
export const identifier = schema(() => v.pipe(v.string(), v.regex(IDENTIFIER, 'must match ^[A-Za-z0-9._:-]{1,128}$')));
/**
 * An identifier a URL path can name: not `.` or `..` (/multi-sessions/.. is /multi-sessions,
 * whatever the encoding): such a thing could be made but never read (review). `...` is a
 * segment like any other (fails before: refused; review 24 of stop 28).
 */
const reachable = schema(() => v.pipe(identifier, v.check((id) => id !== '.' && id !== '..', 'must not be . or ..: no URL could name it')));
const count = schema(() => integer(0, Number.MAX_SAFE_INTEGER));
const positive = schema(() => integer(1, Number.MAX_SAFE_INTEGER));
/**
 * Money an account is given to hold or owe (a credit limit): at most MAX_BALANCE_MINOR, so
 * that `available` (balance + credit limit) and its sums stay exact integers (see rating.ts).
 */
const accountMoney = schema(() => integer(0, MAX_BALANCE_MINOR));
/** An ISO 8601 UTC timestamp with seconds (`Z`, no offset), normalized to milliseconds. */
const timestamp = schema(() => v.pipe(
  v.string(),
  v.regex(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?Z$/, 'must be an ISO 8601 UTC timestamp such as 2026-01-31T23:59:59Z'),
  // The pattern lets 2026-02-30 or 24:00 through; a date that does not round-trip is not a date.
  v.check((s) => { const t = Date.parse(s); return !Number.isNaN(t) && new Date(t).toISOString().slice(0, 19) === s.slice(0, 19); }, 'is not a valid date and time'),
  v.transform((s) => new Date(s).toISOString()),
));
const url = schema(() => v.pipe(v.string(), v.url('must be a URL'), v.maxLength(2048, 'must be at most 2048 characters')));

export const requested = schema(() => v.union([v.strictObject({ units: positive }), v.strictObject({ amount: positive })], 'must be { units } or { amount }'));

export const serviceBody = schema(() => v.pipe(
  v.object({
    unit: v.picklist(['seconds', 'kilobytes', 'events', 'money']),
    price: v.optional(v.object({ amount: count, per: positive })),
    validitySeconds: v.optional(integer(1, 86_400 * 30), 300),
    // Default: 30, or the validity when shorter (set below, once the validity is known).
    interimIntervalSeconds: v.optional(integer(1, 86_400)),
    establishedInterimIntervalSeconds: v.optional(integer(1, 86_400)),
    combined: v.optional(v.object({
      discounts: v.optional(v.pipe(v.array(v.object({ withServiceId: identifier, percent: integer(1, 100) })), v.maxLength(20, 'at most 20 discounts'))),
      duplicates: v.optional(identifier),
    })),
  }),
  v.forward(v.check((s) => s.unit === 'money' || s.price !== undefined, 'price is required unless unit is money'), ['price']),
  // Requests in money are charged as they are: a price other than 1 per 1 would be ignored.
  v.forward(v.check((s) => s.unit !== 'money' || s.price === undefined || s.price.amount === s.price.per, 'a service in money is priced 1 per 1; leave price out'), ['price']),
  // A grant lapses at its validity: a client told to report less often would always be expired.
  v.forward(v.check((s) => (s.interimIntervalSeconds ?? 0) <= s.validitySeconds, 'must not exceed validitySeconds: a grant lapses before the report is due'), ['interimIntervalSeconds']),
  v.forward(v.check((s) => (s.establishedInterimIntervalSeconds ?? 0) <= s.validitySeconds, 'must not exceed validitySeconds: a grant lapses before the report is due'), ['establishedInterimIntervalSeconds']),
  v.transform((s) => ({ ...s, interimIntervalSeconds: s.interimIntervalSeconds ?? Math.min(30, s.validitySeconds) })),
));

export const accountBody = schema(() => v.object({
  // An id of dots alone is a path segment no URL reaches (/accounts/.. is /): such an account
  // could be charged but never read or topped up (review).
  accountId: v.pipe(
    reachable,
    // A JSON object key `__proto__` is dropped by every parser on the way (a multi-party
    // `shares` map could never name such an account: a 400 for a valid game; review).
    v.check((id) => id !== '__proto__', 'must not be __proto__: no JSON object could key it'),
  ),
  currency: v.pipe(v.string(), v.regex(/^[A-Z]{3}$/, 'an ISO 4217 code such as EUR')),
  kind: v.picklist(['prepaid', 'postpaid']),
  creditLimit: v.optional(accountMoney),
  mainAccountId: v.optional(identifier),
  consumptionLimit: v.optional(count),
  validUntil: v.optional(timestamp),
  lowBalanceThreshold: v.optional(count),
}));

export const topUpBody = schema(() => v.object({ requestId: identifier, amount: positive }));

export const reserveBody = schema(() => v.object({
  requestId: identifier,
  accountId: identifier,
  clientId: identifier,
  serviceId: identifier,
  requested,
  multiSessionId: v.optional(reachable),
  notifyUri: v.optional(url),
}));

/**
 * Account ids to percents, key by key: valibot's record drops the keys `constructor` and
 * `prototype`, which name accounts like any other (fails before: such a party could never be
 * in a `shares` game, and such a key named no party unseen; review 7 of stop 26).
 */
const sharesMap = schema(() => v.pipe(
  v.custom<Record<string, number>>((m) => typeof m === 'object' && m !== null && !Array.isArray(m), 'must be an object of account ids to percents'),
  v.check((m) => Object.keys(m).every((id) => IDENTIFIER.test(id)), 'keys are account ids: ^[A-Za-z0-9._:-]{1,128}$'),
  v.check((m) => Object.values(m).every((n) => Number.isSafeInteger(n) && n >= 0 && n <= 100), 'percents are whole numbers from 0 to 100'),
  v.transform((m) => ({ ...m })),
));

const principle = schema(() => v.variant('type', [
  v.object({ type: v.literal('loser-pays') }),
  v.object({ type: v.literal('split') }),
  v.object({ type: v.literal('initiator-pays') }),
  v.object({ type: v.literal('shares'), shares: sharesMap }),
]));

/** A multi-party proposal: `parties` and a `principle` instead of `accountId`. */
export const proposeBody = schema(() => v.object({
  requestId: identifier,
  parties: v.pipe(v.array(v.object({ accountId: identifier })), v.minLength(2, 'at least 2 parties'), v.maxLength(20, 'at most 20 parties')),
  principle,
  clientId: identifier,
  serviceId: identifier,
  // { units } or { amount }, like any reserve: an amount is the units it buys at the service's price.
  requested,
  // Its parties share one hold each, and a combined rating could not be settled on it (no
  // refund of a party session): refused rather than accepted and left out of the multi-session.
  multiSessionId: v.optional(v.never('a multi-party session cannot be part of a multi-session')),
  // API.md: `parties` come instead of `accountId`; both is a request that means two things.
  accountId: v.optional(v.never('a multi-party session names its accounts in parties, not accountId')),
}));

export const agreeBody = schema(() => v.object({ requestId: identifier, accountId: identifier }));

export const updateBody = schema(() => v.object({
  requestId: identifier,
  used: v.strictObject({ units: count }),
  requested: v.optional(requested),
}));

export const debitBody = schema(() => v.object({
  requestId: identifier,
  used: v.strictObject({ units: count }),
  outcome: v.optional(v.object({ loser: v.optional(identifier) })),
}));

export const refundBody = schema(() => v.object({
  requestId: identifier,
  amount: v.optional(positive),
  reason: v.optional(v.pipe(v.string(), v.maxLength(512, 'must be at most 512 characters'))),
}));

export const directDebitBody = schema(() => v.pipe(
  v.object({
    requestId: identifier,
    accountId: identifier,
    clientId: identifier,
    serviceId: identifier,
    units: v.optional(positive),
    amount: v.optional(positive),
    multiSessionId: v.optional(reachable),
  }),
  v.check((b) => (b.units === undefined) !== (b.amount === undefined), 'give exactly one of units and amount'),
));

export const pageQuery = schema(() => v.object({
  // Query parameters are strings: a number in decimal.
  limit: v.optional(v.pipe(v.string(), v.regex(/^\d{1,4}$/, 'must be a whole number from 1 to 1000'), v.transform(Number), integer(1, 1000))),
  next: v.optional(v.pipe(v.string(), v.maxLength(1024, 'must be at most 1024 characters'))),
}));
