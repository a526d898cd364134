// Request schemas of service accounts, recharges, sponsors and PATCH /accounts (seeds 002-004),
// in the style of schemas.ts (valibot, built through `schema()` so unused ones tree-shake).
import * as v from 'valibot';
import { identifier, integer } from './schemas.js';

// A copy of schemas.ts's, not an import: esbuild drops unused schemas built through a local
// one, and kept about 1 KB of them per function when this file imported it.
// @__NO_SIDE_EFFECTS__
function schema<T>(build: () => T): T {
  return build();
}

// Amounts of money and units stay far below 2^53 so products (amount × units of a rate)
// stay exact: 10^12 minor units is ten billion euros.
const MAX_AMOUNT = 1e12;
const count = schema(() => integer(0, MAX_AMOUNT));
const positive = schema(() => integer(1, MAX_AMOUNT));

export const serviceAccountBody = schema(() => v.pipe(
  v.object({
    unit: v.picklist(['seconds', 'kilobytes', 'events']),
    rate: v.object({ amount: integer(1, 1e6), units: integer(1, 1e6) }),
    priority: integer(0, 1000),
    minimumLevel: v.optional(count),
    rechargeAmount: v.optional(positive),
    schedule: v.optional(v.pipe(
      v.object({
        every: v.picklist(['day', 'week', 'month']),
        at: v.optional(integer(0, 31)),
      }),
      v.forward(v.check((s) => s.at === undefined
        || (s.every === 'day' && s.at <= 23) || (s.every === 'week' && s.at >= 1 && s.at <= 7) || (s.every === 'month' && s.at >= 1),
      'at: an hour 0-23 (day), an ISO weekday 1-7 (week) or a day of month 1-31 (month)'), ['at']),
    )),
    onEmpty: v.picklist(['deny', 'redirect', 'restrict']),
    redirectUrl: v.optional(v.pipe(v.string(), v.url('must be a URL'), v.maxLength(2048, 'must be at most 2048 characters'))),
  }),
  v.forward(v.check((b) => b.onEmpty !== 'redirect' || b.redirectUrl !== undefined, 'redirectUrl is required when onEmpty is redirect'), ['redirectUrl']),
  v.forward(v.check((b) => (b.minimumLevel === undefined && b.schedule === undefined) || b.rechargeAmount !== undefined,
    'rechargeAmount is required with minimumLevel or schedule (what an automatic recharge moves)'), ['rechargeAmount']),
));

export const rechargeBody = schema(() => v.object({ requestId: identifier, amount: v.optional(positive) }));

/** PATCH /accounts/{id}: what the owner may change at any time. */
export const accountPatchBody = schema(() => v.pipe(
  // Strict: a field the owner cannot change here (mainAccountId, creditLimit…) is refused, not
  // silently dropped with a 200 that looks like it took.
  v.strictObject({
    // As POST /accounts takes it (fails before: a limit POST took was refused here; review 7).
    consumptionLimit: v.optional(v.nullable(integer(0, Number.MAX_SAFE_INTEGER))),
    sponsors: v.optional(v.pipe(v.array(v.object({ accountId: identifier, priority: integer(0, 1000), maxTransfer: v.optional(positive) })), v.maxLength(10, 'at most 10 sponsors'))),
    status: v.optional(v.picklist(['active', 'suspended'], 'status: active or suspended')),
  }, 'only consumptionLimit, sponsors and status can be changed'),
  v.check((b) => b.consumptionLimit !== undefined || b.sponsors !== undefined || b.status !== undefined, 'give consumptionLimit, sponsors and/or status'),
));
