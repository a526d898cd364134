// Request schemas of service accounts, recharges, sponsors and PATCH /accounts (seeds 002-004),
// in the style of schemas.ts (zod/mini, built through `schema()` so unused ones tree-shake).
import * as z from 'zod/mini';
import { identifier } from './schemas.js';

// @__NO_SIDE_EFFECTS__
function schema<T>(build: () => T): T {
  return build();
}

// Amounts of money and units stay far below 2^53 so products (amount × units of a rate)
// stay exact: 10^12 minor units is ten billion euros.
const MAX_AMOUNT = 1e12;
const count = schema(() => z.number().check(z.int(), z.gte(0), z.lte(MAX_AMOUNT)));
const positive = schema(() => z.number().check(z.int(), z.gte(1), z.lte(MAX_AMOUNT)));

export const serviceAccountBody = schema(() => z.object({
  unit: z.enum(['seconds', 'kilobytes', 'events']),
  rate: z.object({ amount: z.number().check(z.int(), z.gte(1), z.lte(1e6)), units: z.number().check(z.int(), z.gte(1), z.lte(1e6)) }),
  priority: z.number().check(z.int(), z.gte(0), z.lte(1000)),
  minimumLevel: z.optional(count),
  rechargeAmount: z.optional(positive),
  schedule: z.optional(z.object({
    every: z.enum(['day', 'week', 'month']),
    at: z.optional(z.number().check(z.int(), z.gte(0), z.lte(31))),
  }).check(z.refine((s) => s.at === undefined
    || (s.every === 'day' && s.at <= 23) || (s.every === 'week' && s.at >= 1 && s.at <= 7) || (s.every === 'month' && s.at >= 1),
  { message: 'at: an hour 0-23 (day), an ISO weekday 1-7 (week) or a day of month 1-31 (month)', path: ['at'] }))),
  onEmpty: z.enum(['deny', 'redirect', 'restrict']),
  redirectUrl: z.optional(z.string().check(z.url(), z.maxLength(2048))),
}).check(
  z.refine((b) => b.onEmpty !== 'redirect' || b.redirectUrl !== undefined, { message: 'redirectUrl is required when onEmpty is redirect', path: ['redirectUrl'] }),
  z.refine((b) => (b.minimumLevel === undefined && b.schedule === undefined) || b.rechargeAmount !== undefined,
    { message: 'rechargeAmount is required with minimumLevel or schedule (what an automatic recharge moves)', path: ['rechargeAmount'] }),
));

export const rechargeBody = schema(() => z.object({ requestId: identifier, amount: z.optional(positive) }));

/** PATCH /accounts/{id}: what the owner may change at any time. */
export const accountPatchBody = schema(() => z.object({
  consumptionLimit: z.optional(z.nullable(count)),
  sponsors: z.optional(z.array(z.object({ accountId: identifier, priority: z.number().check(z.int(), z.gte(0), z.lte(1000)) })).check(z.maxLength(10))),
}).check(z.refine((b) => b.consumptionLimit !== undefined || b.sponsors !== undefined, { message: 'give consumptionLimit and/or sponsors' })));
