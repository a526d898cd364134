// Request schemas. Money and units are safe positive integers; identifiers one pattern.
import { z } from 'zod';

export const identifier = z.string().regex(/^[A-Za-z0-9._:-]{1,128}$/, 'must match ^[A-Za-z0-9._:-]{1,128}$');
const count = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);
const positive = z.number().int().min(1).max(Number.MAX_SAFE_INTEGER);
const timestamp = z.string().datetime({ offset: false }).transform((s) => new Date(s).toISOString());

export const requested = z.union([z.strictObject({ units: positive }), z.strictObject({ amount: positive })]);

export const serviceBody = z.object({
  unit: z.enum(['seconds', 'kilobytes', 'events', 'money']),
  price: z.object({ amount: count, per: positive }).optional(),
  validitySeconds: positive.max(86_400 * 30).default(300),
  interimIntervalSeconds: positive.max(86_400).default(30),
  establishedInterimIntervalSeconds: positive.max(86_400).optional(),
  combined: z.object({
    discounts: z.array(z.object({ withServiceId: identifier, percent: z.number().int().min(1).max(100) })).max(20).optional(),
    duplicates: identifier.optional(),
  }).optional(),
}).refine((s) => s.unit === 'money' || s.price !== undefined, { message: 'price is required unless unit is money', path: ['price'] });

export const accountBody = z.object({
  accountId: identifier,
  currency: z.string().regex(/^[A-Z]{3}$/, 'an ISO 4217 code such as EUR'),
  kind: z.enum(['prepaid', 'postpaid']),
  creditLimit: count.optional(),
  mainAccountId: identifier.optional(),
  consumptionLimit: count.optional(),
  validUntil: timestamp.optional(),
  lowBalanceThreshold: count.optional(),
});

export const topUpBody = z.object({ requestId: identifier, amount: positive });

export const reserveBody = z.object({
  requestId: identifier,
  accountId: identifier,
  clientId: identifier,
  serviceId: identifier,
  requested,
  multiSessionId: identifier.optional(),
  notifyUri: z.string().url().max(2048).optional(),
});

const principle = z.discriminatedUnion('type', [
  z.object({ type: z.literal('loser-pays') }),
  z.object({ type: z.literal('split') }),
  z.object({ type: z.literal('initiator-pays') }),
  z.object({ type: z.literal('shares'), shares: z.record(identifier, z.number().int().min(0).max(100)) }),
]);

/** A multi-party proposal: `parties` and a `principle` instead of `accountId`. */
export const proposeBody = z.object({
  requestId: identifier,
  parties: z.array(z.object({ accountId: identifier })).min(2).max(20),
  principle,
  clientId: identifier,
  serviceId: identifier,
  requested: z.strictObject({ units: positive }),
  multiSessionId: identifier.optional(),
});

export const agreeBody = z.object({ requestId: identifier, accountId: identifier });

export const updateBody = z.object({
  requestId: identifier,
  used: z.strictObject({ units: count }),
  requested: requested.optional(),
});

export const debitBody = z.object({
  requestId: identifier,
  used: z.strictObject({ units: count }),
  outcome: z.object({ loser: identifier.optional() }).optional(),
});

export const refundBody = z.object({
  requestId: identifier,
  amount: positive.optional(),
  reason: z.string().max(512).optional(),
});

export const directDebitBody = z.object({
  requestId: identifier,
  accountId: identifier,
  clientId: identifier,
  serviceId: identifier,
  units: positive.optional(),
  amount: positive.optional(),
  multiSessionId: identifier.optional(),
}).refine((b) => (b.units === undefined) !== (b.amount === undefined), { message: 'give exactly one of units and amount' });

export const ledgerQuery = z.object({
  limit: z.coerce.number().int().min(1).max(1000).optional(),
  next: z.string().max(1024).optional(),
});
