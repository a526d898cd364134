// Request schemas. Money and units are safe positive integers; identifiers one pattern.
//
// zod/mini, not zod: the same validators (zod 4 core) with a functional API that a bundler
// can tree-shake, so each Lambda carries ~10-30 KB of zod instead of ~450 KB. Every schema
// below is the one-to-one translation of the chained zod original (`.int()` ->
// `.check(z.int())`, `.min(n)` -> `z.gte(n)`, `.optional()` -> `z.optional(...)`, ...):
// the same inputs are accepted and rejected, with the same issues (path and message).
import * as z from 'zod/mini';
import { en } from 'zod/locales';
import { MAX_BALANCE_MINOR } from '../domain/rating.js';

/**
 * Every schema is built through `schema(() => ...)`: built when the module loads, as before,
 * but marked free of side effects, so esbuild drops from each Lambda's bundle the schemas
 * its handler never uses (a bare `z.x().check(...)` at module scope would be kept, and built
 * at every cold start, in every function).
 */
// @__NO_SIDE_EFFECTS__
function schema<T>(build: () => T): T {
  return build();
}

// zod/mini loads no locale: without this every message would read "Invalid input". The
// English locale is what zod (classic) installs by default, so messages stay as they were.
if (!z.config().localeError) z.config(en());

export const identifier = schema(() => z.string().check(z.regex(/^[A-Za-z0-9._:-]{1,128}$/, 'must match ^[A-Za-z0-9._:-]{1,128}$')));
const count = schema(() => z.number().check(z.int(), z.gte(0), z.lte(Number.MAX_SAFE_INTEGER)));
const positive = schema(() => z.number().check(z.int(), z.gte(1), z.lte(Number.MAX_SAFE_INTEGER)));
/**
 * Money an account is given to hold or owe (a credit limit): at most MAX_BALANCE_MINOR, so
 * that `available` (balance + credit limit) and its sums stay exact integers (see rating.ts).
 */
const accountMoney = schema(() => z.number().check(z.int(), z.gte(0), z.lte(MAX_BALANCE_MINOR)));
const timestamp = schema(() => z.pipe(
  z.string().check(z.iso.datetime({ offset: false })),
  z.transform((s: string) => new Date(s).toISOString()),
));

export const requested = schema(() => z.union([z.strictObject({ units: positive }), z.strictObject({ amount: positive })]));

export const serviceBody = schema(() => z.object({
  unit: z.enum(['seconds', 'kilobytes', 'events', 'money']),
  price: z.optional(z.object({ amount: count, per: positive })),
  validitySeconds: z._default(positive.check(z.lte(86_400 * 30)), 300),
  interimIntervalSeconds: z._default(positive.check(z.lte(86_400)), 30),
  establishedInterimIntervalSeconds: z.optional(positive.check(z.lte(86_400))),
  combined: z.optional(z.object({
    discounts: z.optional(z.array(z.object({ withServiceId: identifier, percent: z.number().check(z.int(), z.gte(1), z.lte(100)) })).check(z.maxLength(20))),
    duplicates: z.optional(identifier),
  })),
}).check(z.refine((s) => s.unit === 'money' || s.price !== undefined, { message: 'price is required unless unit is money', path: ['price'] })));

export const accountBody = schema(() => z.object({
  accountId: identifier,
  currency: z.string().check(z.regex(/^[A-Z]{3}$/, 'an ISO 4217 code such as EUR')),
  kind: z.enum(['prepaid', 'postpaid']),
  creditLimit: z.optional(accountMoney),
  mainAccountId: z.optional(identifier),
  consumptionLimit: z.optional(count),
  validUntil: z.optional(timestamp),
  lowBalanceThreshold: z.optional(count),
}));

export const topUpBody = schema(() => z.object({ requestId: identifier, amount: positive }));

export const reserveBody = schema(() => z.object({
  requestId: identifier,
  accountId: identifier,
  clientId: identifier,
  serviceId: identifier,
  requested,
  multiSessionId: z.optional(identifier),
  notifyUri: z.optional(z.string().check(z.url(), z.maxLength(2048))),
}));

const principle = schema(() => z.discriminatedUnion('type', [
  z.object({ type: z.literal('loser-pays') }),
  z.object({ type: z.literal('split') }),
  z.object({ type: z.literal('initiator-pays') }),
  z.object({ type: z.literal('shares'), shares: z.record(identifier, z.number().check(z.int(), z.gte(0), z.lte(100))) }),
]));

/** A multi-party proposal: `parties` and a `principle` instead of `accountId`. */
export const proposeBody = schema(() => z.object({
  requestId: identifier,
  parties: z.array(z.object({ accountId: identifier })).check(z.minLength(2), z.maxLength(20)),
  principle,
  clientId: identifier,
  serviceId: identifier,
  requested: z.strictObject({ units: positive }),
  multiSessionId: z.optional(identifier),
}));

export const agreeBody = schema(() => z.object({ requestId: identifier, accountId: identifier }));

export const updateBody = schema(() => z.object({
  requestId: identifier,
  used: z.strictObject({ units: count }),
  requested: z.optional(requested),
}));

export const debitBody = schema(() => z.object({
  requestId: identifier,
  used: z.strictObject({ units: count }),
  outcome: z.optional(z.object({ loser: z.optional(identifier) })),
}));

export const refundBody = schema(() => z.object({
  requestId: identifier,
  amount: z.optional(positive),
  reason: z.optional(z.string().check(z.maxLength(512))),
}));

export const directDebitBody = schema(() => z.object({
  requestId: identifier,
  accountId: identifier,
  clientId: identifier,
  serviceId: identifier,
  units: z.optional(positive),
  amount: z.optional(positive),
  multiSessionId: z.optional(identifier),
}).check(z.refine((b) => (b.units === undefined) !== (b.amount === undefined), { message: 'give exactly one of units and amount' })));

export const ledgerQuery = schema(() => z.object({
  limit: z.optional(z.coerce.number().check(z.int(), z.gte(1), z.lte(1000))),
  next: z.optional(z.string().check(z.maxLength(1024))),
}));
