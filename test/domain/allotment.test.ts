import { describe, expect, it } from 'vitest';
import { allotmentFor, excessOverLimit, heldFromMain } from '../../functions/domain/allotment.js';

describe('allotmentFor', () => {
  it.each([
    { name: 'ten times the need', input: { neededMinor: 20, mainAvailableMinor: 10_000, takenMinor: 0 }, out: { give: 200 } },
    { name: 'capped at half of what the main account has left', input: { neededMinor: 20, mainAvailableMinor: 100, takenMinor: 0 }, out: { give: 50 } },
    { name: 'but always the need', input: { neededMinor: 20, mainAvailableMinor: 30, takenMinor: 0 }, out: { give: 20 } },
    { name: 'twice as much for a member that came back once', input: { neededMinor: 20, mainAvailableMinor: 100_000, takenMinor: 0, streak: 1 }, out: { give: 400 } },
    { name: 'at most 8 times the ten times', input: { neededMinor: 20, mainAvailableMinor: 100_000, takenMinor: 0, streak: 9 }, out: { give: 1600 } },
    { name: 'a grown chunk still takes at most half of what is left', input: { neededMinor: 20, mainAvailableMinor: 1000, takenMinor: 0, streak: 3 }, out: { give: 500 } },
    { name: 'optimistic first try', input: { neededMinor: 20, takenMinor: 0 }, out: { give: 200 } },
    { name: 'capped by the consumption limit', input: { neededMinor: 20, mainAvailableMinor: 10_000, consumptionLimitMinor: 100, takenMinor: 30 }, out: { give: 70 } },
    { name: 'partial when the main account is short', input: { neededMinor: 20, mainAvailableMinor: 7, takenMinor: 0 }, out: { give: 7 } },
    { name: 'partial up to the limit', input: { neededMinor: 20, mainAvailableMinor: 100, consumptionLimitMinor: 35, takenMinor: 30 }, out: { give: 5 } },
    { name: 'refused at the limit', input: { neededMinor: 20, mainAvailableMinor: 100, consumptionLimitMinor: 30, takenMinor: 30 }, out: { refuse: 'limit' } },
    { name: 'refused when the main account is empty', input: { neededMinor: 20, mainAvailableMinor: 0, takenMinor: 0 }, out: { refuse: 'insufficient' } },
  ])('$name', ({ input, out }) => expect(allotmentFor(input)).toEqual(out));
});

describe('excessOverLimit', () => {
  it.each([[100, 60, 50, 40], [100, 60, 10, 10], [50, 60, 50, 0]])('taken %i, limit %i, unspent %i: %i back', (taken, limit, unspent, back) =>
    expect(excessOverLimit(taken, limit, unspent)).toBe(back));
});

describe('heldFromMain', () => {
  it.each([
    { name: 'not a member (nothing taken)', member: { balance: 500, reserved: 20 }, out: { heldMinor: 0, reservedMinor: 0 } },
    { name: 'an unspent allotment, partly reserved', member: { balance: 200, reserved: 30, takenMinor: 200 }, out: { heldMinor: 200, reservedMinor: 30 } },
    { name: 'what was charged is the main account\'s no more', member: { balance: 180, reserved: 0, takenMinor: 200 }, out: { heldMinor: 180, reservedMinor: 0 } },
    { name: 'a refund brings back what was charged', member: { balance: 190, reserved: 0, takenMinor: 200 }, out: { heldMinor: 190, reservedMinor: 0 } },
    { name: 'a member ever topped up: its money is not told apart', member: { balance: 50, reserved: 40, takenMinor: 20, ownMoney: true }, out: { heldMinor: 0, reservedMinor: 0 } },
    { name: 'a postpaid member below zero holds nothing of its main account', member: { balance: -10, reserved: 5, takenMinor: 20 }, out: { heldMinor: 0, reservedMinor: 0 } },
  ])('$name', ({ member, out }) => expect(heldFromMain(member)).toEqual(out));
});
