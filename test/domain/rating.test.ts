import { describe, expect, it } from 'vitest';
import { incrementalPriceOf, priceOf, priceOrNull, unitsAffordable } from '../../functions/domain/rating.js';
import fc from 'fast-check';
import { computeGrant } from '../../functions/domain/reservation.js';
import { rateUsage } from '../../functions/domain/session.js';

const perMinute = { amountMinor: 2, perUnits: 60 };
const perHour = { amountMinor: 100, perUnits: 3600 };
/** A session whose `usedUnits` were charged their full price. */
const paidUpTo = (usedUnits: number, price = perMinute) => ({ usedUnits, chargedMinor: priceOf(usedUnits, price) });

describe('priceOf rounds started blocks up', () => {
  it.each([
    [0, 0], [1, 2], [59, 2], [60, 2], [61, 4], [600, 20], [601, 22],
  ])('%i seconds cost %i', (units, amount) => expect(priceOf(units, perMinute)).toBe(amount));
});

describe('incrementalPriceOf rates the running total, not each report', () => {
  it.each([
    [0, 30, 2], [30, 30, 0], [60, 1, 2], [59, 2, 2], [0, 0, 0],
  ])('from %i units, %i more cost %i', (before, more, amount) => expect(incrementalPriceOf(before, more, perMinute)).toBe(amount));

  it('ten reports of 30 s cost what one report of 300 s costs', () => {
    let total = 0;
    for (let i = 0; i < 10; i++) total += incrementalPriceOf(i * 30, 30, perMinute);
    expect(total).toBe(priceOf(300, perMinute));
  });
});

describe('unitsAffordable counts whole blocks', () => {
  it.each([[0, 0], [1, 0], [2, 60], [3, 60], [20, 600]])('%i minor units buy %i seconds', (amount, units) =>
    expect(unitsAffordable(amount, perMinute)).toBe(units));
  it('a free service is never short', () => expect(unitsAffordable(0, { amountMinor: 0, perUnits: 1 })).toBe(Number.MAX_SAFE_INTEGER));
});

describe('computeGrant', () => {
  it.each([
    { requested: { units: 600 }, available: 1000, grant: { units: 600, amountMinor: 20 } },
    { requested: { units: 600 }, available: 20, grant: { units: 600, amountMinor: 20 } },
    { requested: { units: 600 }, available: 19, grant: { units: 540, amountMinor: 18 } },
    { requested: { units: 600 }, available: 2, grant: { units: 60, amountMinor: 2 } },
    { requested: { units: 600 }, available: 1, grant: null },
    { requested: { units: 600 }, available: 0, grant: null },
    { requested: { units: 30 }, available: 100, grant: { units: 30, amountMinor: 2 } },
    { requested: { amount: 10 }, available: 100, grant: { units: 300, amountMinor: 10 } },
    { requested: { amount: 11 }, available: 100, grant: { units: 300, amountMinor: 10 } },
    { requested: { amount: 10 }, available: 5, grant: { units: 120, amountMinor: 4 } },
    { requested: { amount: 1 }, available: 100, grant: null },
  ])('$requested with $available available grants $grant', ({ requested, available, grant }) =>
    expect(computeGrant(requested, perMinute, available)).toEqual(grant));
});

describe('computeGrant after usage: a grant costs what it adds to the running total\'s price', () => {
  it.each([
    // 30 s used: the rest of its minute is paid.
    { used: 30, requested: { units: 30 }, available: 0, grant: { units: 30, amountMinor: 0 } },
    { used: 30, requested: { units: 30 }, available: 100, grant: { units: 30, amountMinor: 0 } },
    { used: 30, requested: { units: 90 }, available: 100, grant: { units: 90, amountMinor: 2 } },
    { used: 30, requested: { units: 90 }, available: 1, grant: { units: 30, amountMinor: 0 } },
    { used: 30, requested: { units: 600 }, available: 4, grant: { units: 150, amountMinor: 4 } },
    // On a block boundary nothing is paid ahead.
    { used: 60, requested: { units: 30 }, available: 1, grant: null },
    { used: 60, requested: { units: 30 }, available: 2, grant: { units: 30, amountMinor: 2 } },
    { used: 0, requested: { units: 30 }, available: 1, grant: null },
    // { amount } buys whole blocks' worth of units, then costs what they add.
    { used: 30, requested: { amount: 2 }, available: 100, grant: { units: 60, amountMinor: 2 } },
  ])('$used used, $requested with $available available grants $grant', ({ used, requested, available, grant }) =>
    expect(computeGrant(requested, perMinute, available, paidUpTo(used))).toEqual(grant));

  // A report over its grant is charged at most the hold: the block it started is not paid.
  it.each([
    // 3601 s reported on 3600 s held at 100 an hour: 100 charged, the second hour unpaid.
    { used: 3601, charged: 100, requested: { units: 3600 }, available: 1000, grant: { units: 3600, amountMinor: 200 } },
    { used: 3601, charged: 100, requested: { units: 3600 }, available: 0, grant: null },
    { used: 3601, charged: 100, requested: { units: 3600 }, available: 99, grant: null },
    // 100 pays the second hour first: its 3599 s left.
    { used: 3601, charged: 100, requested: { units: 3600 }, available: 100, grant: { units: 3599, amountMinor: 100 } },
    { used: 3601, charged: 100, requested: { units: 3600 }, available: 150, grant: { units: 3599, amountMinor: 100 } },
    { used: 3601, charged: 100, requested: { units: 3600 }, available: 200, grant: { units: 3600, amountMinor: 200 } },
    { used: 3601, charged: 100, requested: { units: 7200 }, available: 200, grant: { units: 7199, amountMinor: 200 } },
    // The same usage, paid: the rest of the second hour costs nothing more.
    { used: 3601, charged: 200, requested: { units: 3599 }, available: 0, grant: { units: 3599, amountMinor: 0 } },
    // An { amount } never holds more than it asks: it pays the unpaid hour first (review 5: it held 200).
    { used: 3601, charged: 100, requested: { amount: 150 }, available: 1000, grant: { units: 3599, amountMinor: 100 } },
    { used: 3601, charged: 100, requested: { amount: 100 }, available: 1000, grant: { units: 3599, amountMinor: 100 } },
    { used: 3601, charged: 100, requested: { amount: 200 }, available: 1000, grant: { units: 7199, amountMinor: 200 } },
    { used: 3601, charged: 100, requested: { amount: 99 }, available: 1000, grant: null },
    // Paid: whole blocks' worth, as before (the rest of the paid block is not counted).
    { used: 3601, charged: 200, requested: { amount: 100 }, available: 1000, grant: { units: 3600, amountMinor: 100 } },
  ])('$used used and $charged charged, $requested with $available available grants $grant', ({ used, charged, requested, available, grant }) =>
    expect(computeGrant(requested, perHour, available, { usedUnits: used, chargedMinor: charged })).toEqual(grant));

  it('never prices the running total past 2^53-1: a huge request after usage is cut to what can be charged', () => {
    const perKb = { amountMinor: 3, perUnits: 1 };
    const grant = computeGrant({ units: 2 ** 52 }, perKb, Number.MAX_SAFE_INTEGER, paidUpTo(1, perKb))!;
    expect(Number.isSafeInteger(grant.amountMinor)).toBe(true);
    expect(grant.amountMinor).toBe((1 + grant.units) * 3 - 3);
    expect((1 + grant.units) * 3).toBeLessThanOrEqual(Number.MAX_SAFE_INTEGER);
    // With 1000 available: what 1000 buys, 333 kB.
    expect(computeGrant({ units: 2 ** 52 }, perKb, 1000, paidUpTo(1, perKb))).toEqual({ units: 333, amountMinor: 999 });
  });

  it('after usage already priced past 2^53-1, grants nothing (such usage could not be rated)', () =>
    expect(computeGrant({ units: 100 }, { amountMinor: 1000, perUnits: 1 }, Number.MAX_SAFE_INTEGER, { usedUnits: 1e13, chargedMinor: 0 })).toBeNull());

  it('never takes the usage past 2^53-1 units', () =>
    expect(computeGrant({ units: 600 }, perMinute, 1000, paidUpTo(Number.MAX_SAFE_INTEGER - 10))).toEqual({ units: 10, amountMinor: expect.any(Number) }));
});

describe('computeGrant properties (seeded)', () => {
  const seed = 20261124;
  const big = fc.oneof(fc.integer({ min: 0, max: 10_000 }), fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }));
  it(`a grant costs exactly what takes the session's charge to the price of its running total with the grant used, within what can be spent, and usage inside it is charged in full (seed ${seed})`, () => {
    fc.assert(fc.property(
      fc.integer({ min: 0, max: 1000 }), fc.integer({ min: 1, max: 3600 }), big, big, fc.integer({ min: 1, max: 2 ** 40 }), fc.oneof(fc.constant(0), big),
      (amountMinor, perUnits, usedUnits, available, wanted, unpaidMinor) => {
        const price = { amountMinor, perUnits };
        const before = priceOrNull(usedUnits, price);
        // What the session charged: the price of its usage, or less after a report over its grant.
        const chargedMinor = before === null ? 0 : before - Math.min(unpaidMinor, before);
        const grant = computeGrant({ units: wanted }, price, available, { usedUnits, chargedMinor });
        // Asked in money, a grant never holds more than the amount asked.
        const byAmount = before === null ? null : computeGrant({ amount: wanted }, price, available, { usedUnits, chargedMinor });
        if (byAmount) expect(byAmount.amountMinor).toBeLessThanOrEqual(wanted);
        if (before === null) {
          expect(grant).toBeNull();
          return;
        }
        if (!grant) return;
        expect(grant.units).toBeGreaterThan(0);
        expect(grant.units).toBeLessThanOrEqual(wanted);
        expect(Number.isSafeInteger(grant.amountMinor) && grant.amountMinor >= 0 && grant.amountMinor <= available).toBe(true);
        const after = priceOrNull(usedUnits + grant.units, price)!;
        expect(chargedMinor + grant.amountMinor).toBe(after);
        // Using it all is charged what was held (rateUsage charges the running total, capped at the hold).
        const hold = { seq: 1, holdMinor: grant.amountMinor, grantedUnits: grant.units, usedUnits, chargedMinor };
        expect(rateUsage(hold, grant.units, price).chargeMinor).toBe(grant.amountMinor);
      }), { seed, numRuns: 3000 });
  });
});

