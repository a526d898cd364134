import { describe, expect, it } from 'vitest';
import { combinedAdjustments, interimIntervalFor, nextDueAt, type CombinedRule } from '../../functions/domain/combined.js';

const rules = new Map<string, CombinedRule>([
  ['voice', { discounts: [{ withServiceId: 'data', percent: 20 }, { withServiceId: 'video', percent: 50 }] }],
  ['ps-data', { duplicates: 'ims-data' }],
  // Misconfigured both ways round: the traffic is still charged once.
  ['a-leg', { duplicates: 'b-leg' }],
  ['b-leg', { duplicates: 'a-leg' }],
]);

describe('combinedAdjustments', () => {
  it.each([
    { name: 'voice alone: nothing', members: [['s1', 'voice', 100]], expected: [] },
    { name: 'voice with data: 20 % back', members: [['s1', 'voice', 100], ['s2', 'data', 50]], expected: [{ sessionId: 's1', amountMinor: 20, reason: 'discount', percent: 20 }] },
    { name: 'the best discount wins', members: [['s1', 'voice', 100], ['s2', 'data', 1], ['s3', 'video', 1]], expected: [{ sessionId: 's1', amountMinor: 50, reason: 'discount', percent: 50 }] },
    { name: 'discounts round down', members: [['s1', 'voice', 7], ['s2', 'data', 1]], expected: [{ sessionId: 's1', amountMinor: 1, reason: 'discount', percent: 20 }] },
    { name: 'a duplicate is charged once', members: [['s1', 'ps-data', 30], ['s2', 'ims-data', 30]], expected: [{ sessionId: 's1', amountMinor: 30, reason: 'duplicate' }] },
    { name: 'a duplicate alone is charged', members: [['s1', 'ps-data', 30]], expected: [] },
    { name: 'nothing charged, nothing given back', members: [['s1', 'voice', 0], ['s2', 'data', 5]], expected: [] },
    // A member that charged nothing (opened, released unused) did not take part.
    { name: 'a data session that carried nothing earns no discount', members: [['s1', 'voice', 100], ['s2', 'data', 0]], expected: [] },
    { name: 'the best discount among the services that charged', members: [['s1', 'voice', 100], ['s2', 'data', 1], ['s3', 'video', 0]], expected: [{ sessionId: 's1', amountMinor: 20, reason: 'discount', percent: 20 }] },
    { name: 'a duplicate of a service that charged nothing is charged (once)', members: [['s1', 'ps-data', 30], ['s2', 'ims-data', 0]], expected: [] },
    { name: 'a duplicate gets back at most what the duplicated service charged', members: [['s1', 'ps-data', 30], ['s2', 'ims-data', 20]], expected: [{ sessionId: 's1', amountMinor: 20, reason: 'duplicate' }] },
    { name: 'duplicates share what the duplicated service charged', members: [['s1', 'ps-data', 30], ['s2', 'ps-data', 30], ['s3', 'ims-data', 40], ['s4', 'ims-data', 0]], expected: [{ sessionId: 's1', amountMinor: 30, reason: 'duplicate' }, { sessionId: 's2', amountMinor: 10, reason: 'duplicate' }] },
    { name: 'two services duplicating each other: charged once, not zero times', members: [['s1', 'a-leg', 30], ['s2', 'b-leg', 30]], expected: [{ sessionId: 's1', amountMinor: 30, reason: 'duplicate' }] },
    // An event charge (not refundable) takes part and is what a duplicate is measured against, but gets nothing back.
    { name: 'an event of data earns the discount', members: [['s1', 'voice', 100], ['event:e', 'data', 5, false]], expected: [{ sessionId: 's1', amountMinor: 20, reason: 'discount', percent: 20 }] },
    { name: 'a duplicate of an event is given back', members: [['s1', 'ps-data', 30], ['event:e', 'ims-data', 30, false]], expected: [{ sessionId: 's1', amountMinor: 30, reason: 'duplicate' }] },
    { name: 'an event that duplicates is not given back', members: [['event:e', 'ps-data', 30, false], ['s1', 'ims-data', 30]], expected: [] },
    // A member joined after a run gave back on s2: s2 is given the same again, the newcomer what is left (review 11 of stop 27).
    { name: 'a duplicate joining after the settlement gets only what the earlier ones left', members: [['s0', 'ps-data', 10], ['s1', 'ims-data', 10], ['s2', 'ps-data', 10, true, 10]], expected: [{ sessionId: 's2', amountMinor: 10, reason: 'duplicate' }] },
    { name: 'one joining after a capped give-back', members: [['s0', 'ps-data', 30], ['s1', 'ims-data', 40], ['s2', 'ps-data', 30, true, 30]], expected: [{ sessionId: 's2', amountMinor: 30, reason: 'duplicate' }, { sessionId: 's0', amountMinor: 10, reason: 'duplicate' }] },
    // The earlier duplicate counts by what it got (10), not what it would get now (15): 10 are left (review 15 of stop 27).
    { name: 'late joiners of both services: the earlier give-back is repeated, and the newcomer gets what is left', members: [['v1', 'ims-data', 10], ['p1', 'ps-data', 15, true, 10], ['v2', 'ims-data', 10], ['p2', 'ps-data', 10]], expected: [{ sessionId: 'p1', amountMinor: 10, reason: 'duplicate' }, { sessionId: 'p2', amountMinor: 10, reason: 'duplicate' }] },
    { name: 'a discount is the same again, and a newcomer earns its own', members: [['s0', 'voice', 50], ['s1', 'voice', 100, true, 20], ['s2', 'data', 1]], expected: [{ sessionId: 's1', amountMinor: 20, reason: 'discount', percent: 20 }, { sessionId: 's0', amountMinor: 10, reason: 'discount', percent: 20 }] },
  ])('$name', ({ members, expected }) => {
    const list = members.map(([sessionId, serviceId, netChargedMinor, refundable, givenBackMinor]) => ({ sessionId: sessionId as string, serviceId: serviceId as string, netChargedMinor: netChargedMinor as number, ...(refundable === false ? { refundable: false } : {}), ...(givenBackMinor ? { givenBackMinor: givenBackMinor as number } : {}) }));
    expect(combinedAdjustments(list, rules)).toEqual(expected);
  });
});

describe('interim intervals', () => {
  const service = { interimIntervalSeconds: 30, establishedInterimIntervalSeconds: 90 };
  it.each([[false, 30], [true, 90]])('reported %s → %i s', (reported, seconds) => expect(interimIntervalFor(service, reported)).toBe(seconds));
  it('without an established interval the first one stays', () => expect(interimIntervalFor({ interimIntervalSeconds: 30 }, true)).toBe(30));
  it.each([
    ['2026-01-01T00:00:00.000Z', 30, '2026-01-01T00:05:00.000Z', '2026-01-01T00:00:30.000Z'],
    ['2026-01-01T00:00:00.000Z', 600, '2026-01-01T00:05:00.000Z', '2026-01-01T00:05:00.000Z'],
  ])('due next: last %s, every %i s, valid until %s → %s', (last, interval, valid, due) => expect(nextDueAt(last, interval, valid)).toBe(due));
});
