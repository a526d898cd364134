import { describe, expect, it } from 'vitest';
import {
  crossedBelow, finalUnitActionOf, nextScheduledAt, planRecharges, smallestRechargeMinor, sponsorsInOrder, unitsBought,
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

describe('crossedBelow', () => {
  it.each([
    [100, 90, 95, true], [100, 95, 95, false], [94, 80, 95, false], [95, 94, 95, true], [100, 50, undefined, false],
  ])('from %i to %i with level %s: %s', (before, after, level, crossed) => expect(crossedBelow(before, after, level)).toBe(crossed));
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
