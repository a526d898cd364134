import { describe, expect, it } from 'vitest';
import {
  costOfUnits, crossedBelow, finalUnitActionOf, nextScheduledAt, planRecharges, putAsksForRecharge, rechargeOf, smallestRechargeMinor, sponsorsInOrder, unitsBought,
} from '../../functions/domain/serviceAccount.js';

describe('unitsBought', () => {
  it.each([
    { amount: 100, rate: { amountMinor: 100, units: 1024 }, units: 1024 },
    { amount: 150, rate: { amountMinor: 100, units: 1024 }, units: 1536 },
    { name: 'rounded down: no unit nobody paid for', amount: 7, rate: { amountMinor: 3, units: 1 }, units: 2 },
    { amount: 0, rate: { amountMinor: 3, units: 1 }, units: 0 },
    { name: 'exact past 2^53 in the product', amount: 999_999_999_999, rate: { amountMinor: 999_999, units: 1_000_000 }, units: 1_000_001_000_000 },
    { name: 'the most an account may hold', amount: 1e9, rate: { amountMinor: 1, units: 1e6 }, units: 1e15 },
    { name: 'more than an account may hold: null', amount: 1e9 + 1, rate: { amountMinor: 1, units: 1e6 }, units: null },
    { name: 'far more: null, not an overflow', amount: 1e12, rate: { amountMinor: 1, units: 1e6 }, units: null },
  ])('$amount at $rate.amountMinor per $rate.units → $units', ({ amount, rate, units }) => expect(unitsBought(amount, rate)).toBe(units));
  it('the smallest recharge buys one unit', () => {
    expect(smallestRechargeMinor({ amountMinor: 3, units: 1 })).toBe(3);
    expect(smallestRechargeMinor({ amountMinor: 100, units: 1024 })).toBe(1);
  });
});

describe('rechargeOf: the owner pays only what the units bought cost', () => {
  it.each([
    { name: 'an amount the rate divides: all of it', amount: 250, rate: { amountMinor: 100, units: 1024 }, units: 2560, paid: 250 },
    { name: '1999 at 1000 per unit buys 1 unit for 1000, not 1999', amount: 1999, rate: { amountMinor: 1000, units: 1 }, units: 1, paid: 1000 },
    { name: '41 at 4 per event: 10 events for 40', amount: 41, rate: { amountMinor: 4, units: 1 }, units: 10, paid: 40 },
    { name: '7 at 3 per unit: 2 units for 6', amount: 7, rate: { amountMinor: 3, units: 1 }, units: 2, paid: 6 },
    { name: 'units cheaper than a cent: the cost rounds up to the cent', amount: 1, rate: { amountMinor: 3, units: 7 }, units: 2, paid: 1 },
    { name: '7 at 100 per 1024: 71 KB cost 6.93, paid 7', amount: 7, rate: { amountMinor: 100, units: 1024 }, units: 71, paid: 7 },
    { name: 'exact past 2^53 in the products', amount: 999_999_999_999, rate: { amountMinor: 999_999, units: 1_000_000 }, units: 1_000_001_000_000, paid: 999_999_999_999 },
    { name: 'buys nothing: costs nothing', amount: 2, rate: { amountMinor: 3, units: 1 }, units: 0, paid: 0 },
  ])('$name', ({ amount, rate, units, paid }) => expect(rechargeOf(amount, rate)).toEqual({ units, amountMinor: paid }));

  it('more than an account may hold: null', () => expect(rechargeOf(1e9 + 1, { amountMinor: 1, units: 1e6 })).toBeNull());

  it.each([
    { amountMinor: 1000, units: 1 }, { amountMinor: 100, units: 1024 }, { amountMinor: 4, units: 1 }, { amountMinor: 2, units: 60 }, { amountMinor: 7, units: 3 }, { amountMinor: 3, units: 7 },
  ])('at $amountMinor per $units, for every amount: the cost buys the very same units, one cent less buys fewer, and it is never more than the amount', (rate) => {
    for (let amount = 0; amount <= 3000; amount++) {
      const { units, amountMinor: paid } = rechargeOf(amount, rate)!;
      expect(paid).toBeLessThanOrEqual(amount);
      expect(unitsBought(paid, rate)).toBe(units);
      expect(costOfUnits(units, rate)).toBe(paid);
      if (units > 0) expect(unitsBought(paid - 1, rate)).toBeLessThan(units);
    }
  });
});

describe('crossedBelow', () => {
  it.each([
    [100, 90, 95, true], [100, 95, 95, false], [94, 80, 95, false], [95, 94, 95, true], [100, 50, undefined, false],
  ])('from %i to %i with level %s: %s', (before, after, level, crossed) => expect(crossedBelow(before, after, level)).toBe(crossed));
});

describe('putAsksForRecharge: settings written while the level is below the minimum, which no charge will cross', () => {
  const settings = { minimumLevel: 2048, rechargeAmountMinor: 500 };
  it.each([
    { name: 'created with a minimum (empty): below it from the start', before: undefined, after: settings, level: 0, asks: true },
    { name: 'created with a minimum of 0', before: undefined, after: { ...settings, minimumLevel: 0 }, level: 0, asks: false },
    { name: 'created without a rechargeAmount', before: undefined, after: { minimumLevel: 2048 }, level: 0, asks: false },
    { name: 'minimum set on an empty one', before: { rechargeAmountMinor: 500 }, after: settings, level: 0, asks: true },
    { name: 'minimum set', before: { rechargeAmountMinor: 500 }, after: settings, level: 1620, asks: true },
    { name: 'minimum raised', before: { ...settings, minimumLevel: 1024 }, after: settings, level: 1620, asks: true },
    { name: 'rechargeAmount added', before: { minimumLevel: 2048 }, after: settings, level: 1620, asks: true },
    { name: 'rechargeAmount changed: a request is pending already', before: { ...settings, rechargeAmountMinor: 200 }, after: settings, level: 1620, asks: false },
    { name: 'minimum unchanged: a request is pending already', before: settings, after: settings, level: 1620, asks: false },
    { name: 'minimum lowered', before: { ...settings, minimumLevel: 4096 }, after: settings, level: 1620, asks: false },
    { name: 'minimum raised, still reached', before: { ...settings, minimumLevel: 1024 }, after: settings, level: 2048, asks: false },
    { name: 'no minimum', before: { minimumLevel: 1024, rechargeAmountMinor: 500 }, after: { rechargeAmountMinor: 500 }, level: 0, asks: false },
    { name: 'no rechargeAmount', before: { minimumLevel: 1024 }, after: { minimumLevel: 2048 }, level: 1620, asks: false },
  ])('$name: $asks', ({ before, after, level, asks }) => expect(putAsksForRecharge(before, after, level)).toBe(asks));
});

describe('finalUnitActionOf', () => {
  it.each([
    [{ onEmpty: 'deny' as const }, { action: 'terminate' }],
    [{ onEmpty: 'redirect' as const, redirectUrl: 'https://buy.example/' }, { action: 'redirect', redirectUrl: 'https://buy.example/' }],
    [{ onEmpty: 'restrict' as const }, { action: 'restrict' }],
    [undefined, { action: 'terminate' }],
  ])('%j → %j', (settings, action) => expect(finalUnitActionOf(settings)).toEqual(action));
});

describe('nextScheduledAt', () => {
  it.each([
    { schedule: { every: 'day' as const }, after: '2026-03-10T10:00:00Z', next: '2026-03-11T00:00:00.000Z' },
    { schedule: { every: 'day' as const, at: 12 }, after: '2026-03-10T10:00:00Z', next: '2026-03-10T12:00:00.000Z' },
    { name: 'strictly after', schedule: { every: 'day' as const, at: 12 }, after: '2026-03-10T12:00:00Z', next: '2026-03-11T12:00:00.000Z' },
    { name: 'Tuesday → next Monday', schedule: { every: 'week' as const }, after: '2026-03-10T10:00:00Z', next: '2026-03-16T00:00:00.000Z' },
    { name: 'Sunday is ISO 7', schedule: { every: 'week' as const, at: 7 }, after: '2026-03-10T10:00:00Z', next: '2026-03-15T00:00:00.000Z' },
    { schedule: { every: 'month' as const }, after: '2026-01-15T10:00:00Z', next: '2026-02-01T00:00:00.000Z' },
    { name: 'day 31 in February is its last day', schedule: { every: 'month' as const, at: 31 }, after: '2026-02-01T00:00:00Z', next: '2026-02-28T00:00:00.000Z' },
    { name: 'over the year end', schedule: { every: 'month' as const, at: 1 }, after: '2026-12-01T00:00:00Z', next: '2027-01-01T00:00:00.000Z' },
  ])('$schedule.every $schedule.at after $after', ({ schedule, after, next }) => expect(nextScheduledAt(schedule, new Date(after)).toISOString()).toBe(next));
});

describe('planRecharges', () => {
  const due = [{ id: 'data', priority: 2, amountMinor: 500 }, { id: 'content', priority: 1, amountMinor: 500 }, { id: 'games', priority: 3, amountMinor: 200 }];
  it.each([
    { available: 2000, funded: ['content', 'data', 'games'], unfunded: [] },
    { available: 700, funded: ['content', 'games'], unfunded: ['data'] },
    { available: 400, funded: ['games'], unfunded: ['content', 'data'] },
    { available: 0, funded: [], unfunded: ['content', 'data', 'games'] },
  ])('with $available available', ({ available, funded, unfunded }) => {
    const plan = planRecharges(available, due);
    expect(plan.funded.map((r) => r.id)).toEqual(funded);
    expect(plan.unfunded.map((r) => r.id)).toEqual(unfunded);
  });
});

describe('sponsorsInOrder', () => {
  it('by priority, then id', () => expect(sponsorsInOrder([{ accountId: 'b', priority: 2 }, { accountId: 'c', priority: 1 }, { accountId: 'a', priority: 2 }])
    .map((s) => s.accountId)).toEqual(['c', 'a', 'b']));
});
