import { describe, expect, it } from 'vitest';
import { chargeNothing, movementFor, rateUsage, regrant, refundable, type Hold } from '../../functions/domain/session.js';

const perMinute = { amountMinor: 2, perUnits: 60 };
const hold = (h: Partial<Hold>): Hold => ({ seq: 1, holdMinor: 20, grantedUnits: 600, usedUnits: 0, chargedMinor: 0, ...h });

describe('rateUsage', () => {
  it.each([
    { name: 'usage inside the grant', hold: hold({}), used: 90, charge: 4, uncharged: 0, remainder: 16 },
    { name: 'nothing used', hold: hold({}), used: 0, charge: 0, uncharged: 0, remainder: 20 },
    { name: 'usage over the grant is capped at the hold', hold: hold({}), used: 900, charge: 20, uncharged: 10, remainder: 0 },
    { name: 'continuing a started block costs nothing more', hold: hold({ usedUnits: 30, chargedMinor: 2 }), used: 30, charge: 0, uncharged: 0, remainder: 20 },
    // 61 s reported on a grant of 60 held at 2: the second minute was not paid. The next report pays it.
    { name: 'a block a report over its grant left unpaid is charged by the next report', hold: hold({ usedUnits: 61, chargedMinor: 2 }), used: 59, charge: 2, uncharged: 0, remainder: 18 },
    { name: 'even one that reports nothing more', hold: hold({ usedUnits: 61, chargedMinor: 2 }), used: 0, charge: 2, uncharged: 0, remainder: 18 },
  ])('$name', ({ hold: h, used, charge, uncharged, remainder }) => {
    const usage = rateUsage(h, used, perMinute);
    expect(usage.chargeMinor).toBe(charge);
    expect(usage.unchargedMinor).toBe(uncharged);
    expect(usage.remainderMinor).toBe(remainder);
    expect(usage.chargedMinorTotal).toBe(h.chargedMinor + charge);
  });
});

describe('movementFor keeps available = balance - reserved', () => {
  it.each([
    { used: 90, newHold: 20 }, { used: 0, newHold: 0 }, { used: 600, newHold: 40 }, { used: 900, newHold: 0 },
  ])('used $used, new hold $newHold', ({ used, newHold }) => {
    const h = hold({});
    const movement = movementFor(h, rateUsage(h, used, perMinute), newHold);
    expect(movement.availableDelta).toBe(movement.balanceDelta - movement.reservedDelta);
    expect(movement.reservedDelta).toBe(newHold - h.holdMinor);
  });
});

describe('regrant', () => {
  const usage = rateUsage(hold({}), 90, perMinute); // remainder 16
  it('without a request grants nothing', () => expect(regrant(undefined, perMinute, usage)).toEqual({ units: 0, amountMinor: 0 }));
  it('first asks for everything', () => expect(regrant({ units: 600 }, perMinute, usage)).toEqual({ units: 600, amountMinor: 20 }));
  it('then fits in what the account had plus what the report released, after the paid rest of the block the usage is in', () =>
    expect(regrant({ units: 600 }, perMinute, usage, 2)).toEqual({ units: 570, amountMinor: 18 })); // 30 paid + 9 blocks
  it('units inside the block the usage is in cost nothing more: granted with nothing left to pay', () =>
    expect(regrant({ units: 30 }, perMinute, rateUsage(hold({ holdMinor: 2, usedUnits: 0 }), 30, perMinute), 0)).toEqual({ units: 30, amountMinor: 0 }));
  it('unless the report went past the hold: the block it started is paid first (fails before: granted free)', () => {
    const over = rateUsage(hold({ holdMinor: 0, usedUnits: 0 }), 30, perMinute);
    expect(over).toMatchObject({ chargeMinor: 0, unchargedMinor: 2 });
    expect(regrant({ units: 30 }, perMinute, over, 0)).toBeNull();
    expect(regrant({ units: 30 }, perMinute, over, 1)).toBeNull();
    expect(regrant({ units: 30 }, perMinute, over, 2)).toEqual({ units: 30, amountMinor: 2 });
    expect(regrant({ units: 30 }, perMinute, over)).toEqual({ units: 30, amountMinor: 2 });
  });
  it('or nothing when not one block fits', () => expect(regrant({ units: 600 }, perMinute, rateUsage(hold({ holdMinor: 0 }), 0, perMinute), 1)).toBeNull());
});

describe('chargeNothing: a release or an expiry', () => {
  it('charges nothing, even what a report over its grant left unpaid, and gives the whole hold back', () =>
    expect(chargeNothing(hold({ usedUnits: 61, chargedMinor: 2 }))).toEqual({ chargeMinor: 0, unchargedMinor: 0, usedUnitsTotal: 61, chargedMinorTotal: 2, remainderMinor: 20 }));
});

describe('refundable', () => {
  it.each([[10, 0, 10], [10, 4, 6], [10, 10, 0], [0, 0, 0]])('charged %i, refunded %i: %i left', (c, r, left) => expect(refundable(c, r)).toBe(left));
});
