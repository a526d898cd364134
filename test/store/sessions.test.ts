// Sessions against real DynamoDB Local: the money moves, the answers, and the
// crash/retry/concurrency paths that must never charge twice.
import { describe, expect, it } from 'vitest';
import { GetCommand, TransactWriteCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { key } from '../../functions/store/table.js';
import { listNotifications } from '../../functions/store/notifications.js';
import { codeOf, fundedAccount, interleavingStore, readingBeforeTheRecord, reconciled, reserveCommand, testClock, testStore, twoWriteAndOneWriteStores, writePaths } from '../helpers.js';
import { answerIn, reserve, updateSession, debitSession, refundSession, expireSession, requireSession, sessionIdFor } from '../../functions/store/sessions.js';
import { createAccount, requireAccount, topUp } from '../../functions/store/accounts.js';
import { putService } from '../../functions/store/services.js';
import { ChargingError } from '../../functions/domain/errors.js';
import { countingDb, type Db } from '../../functions/store/db.js';
import { directDebit } from '../../functions/store/debits.js';
import { sweep } from '../../functions/store/sweep.js';

/** ann, with 1000, holds 1 kB of data at 3 per kB (3 held). */
async function oneKilobyteHeld(twoWriteSteps: boolean) {
  const store = await testStore({ twoWriteSteps });
  await putService(store, { serviceId: 'data', unit: 'kilobytes', price: { amountMinor: 3, perUnits: 1 }, validitySeconds: 300, interimIntervalSeconds: 30 });
  await createAccount(store, { accountId: 'ann', currency: 'EUR', kind: 'prepaid' });
  await topUp(store, 'ann', 't1', 1000, 'ht');
  const opened = await reserve(store, { requestId: 'r1', accountId: 'ann', clientId: 'ggsn', serviceId: 'data', requested: { units: 1 } }, 'h');
  return { store, sessionId: opened.body.sessionId as string };
}

describe('a whole session', () => {
  it('reserves, debits usage and re-reserves, terminates and returns the rest', async () => {
    const store = await testStore();
    await fundedAccount(store, 'alice', 1000);
    const opened = await reserve(store, reserveCommand('r1'), 'h1');
    expect(opened.status).toBe(201);
    expect(opened.body).toMatchObject({ state: 'active', chargedAccountId: 'alice', granted: { units: 600, amount: 20 }, interimIntervalSeconds: 30 });
    const sessionId = opened.body.sessionId as string;
    expect(sessionId).toBe(sessionIdFor('r1'));

    const updated = await updateSession(store, sessionId, { requestId: 'u1', usedUnits: 90, requested: { units: 600 } }, 'hu1');
    expect(updated).toMatchObject({ status: 200, body: { granted: { units: 600, amount: 20 }, charged: { units: 90, amount: 4 } } });
    expect(await requireAccount(store, 'alice')).toMatchObject({ balance: 996, reserved: 20, available: 976 });

    const closed = await debitSession(store, sessionId, { requestId: 'd1', usedUnits: 30 }, 'hd1');
    // 120 s in all = 2 blocks = 4; the last 30 s finished a started block, so cost nothing more.
    expect(closed).toEqual({ status: 200, body: { state: 'closed', charged: { units: 120, amount: 4 }, returned: { amount: 20 } } });
    const account = await reconciled(store, 'alice');
    expect(account).toMatchObject({ balance: 996, reserved: 0, available: 996 });
    expect(await codeOf(updateSession(store, sessionId, { requestId: 'u2', usedUnits: 1 }, 'hu2'))).toBe('session_closed');
  });

  it('grants less when credit is short and refuses only when one block cannot be paid', async () => {
    const store = await testStore();
    await fundedAccount(store, 'bob', 7);
    const opened = await reserve(store, reserveCommand('r1', 'bob'), 'h');
    expect(opened.body).toMatchObject({ granted: { units: 180, amount: 6 }, finalUnit: { action: 'terminate' } });
    expect(await codeOf(reserve(store, reserveCommand('r2', 'bob'), 'h2'))).toBe('insufficient_credit');
    expect(await requireAccount(store, 'bob')).toMatchObject({ balance: 7, reserved: 6, available: 1 });
    // A refused reserve is kept as a session holding nothing, under the multi-session it asked for.
    expect(await codeOf(reserve(store, { ...reserveCommand('r3', 'bob'), multiSessionId: 'call-1' }, 'h3'))).toBe('insufficient_credit');
    expect(await requireSession(store, sessionIdFor('r3'))).toMatchObject({ state: 'refused', multiSessionId: 'call-1' });
  });

  it.each(writePaths)('grants what is left of a block the usage already paid, with nothing more to pay, even on an empty account (%s)', async (_path, twoWriteSteps) => {
    const store = await testStore({ twoWriteSteps });
    await fundedAccount(store, 'dan', 2);
    const { body } = await reserve(store, reserveCommand('r1', 'dan', 30), 'h'); // 30 s: a whole minute paid (2)
    expect(body).toMatchObject({ granted: { units: 30, amount: 2 } });
    const sessionId = body.sessionId as string;
    const updated = await updateSession(store, sessionId, { requestId: 'u1', usedUnits: 30, requested: { units: 30 } }, 'hu');
    expect(updated).toMatchObject({ status: 200, body: { granted: { units: 30, amount: 0 }, charged: { units: 30, amount: 2 } } });
    expect(await reconciled(store, 'dan')).toMatchObject({ balance: 0, reserved: 0 });
    const closed = await debitSession(store, sessionId, { requestId: 'd1', usedUnits: 30 }, 'hd');
    expect(closed.body).toMatchObject({ charged: { units: 60, amount: 2 }, returned: { amount: 0 } });
  });

  it.each(writePaths)('ten 30 s reports, each asking 30 s more, cost what one 300 s report costs: 10 cents last 300 s (%s)', async (_path, twoWriteSteps) => {
    const store = await testStore({ twoWriteSteps });
    await fundedAccount(store, 'eve', 10);
    const { body } = await reserve(store, reserveCommand('r1', 'eve', 30), 'h');
    const sessionId = body.sessionId as string;
    for (let i = 1; i < 10; i++) {
      const updated = await updateSession(store, sessionId, { requestId: `u${i}`, usedUnits: 30, requested: { units: 30 } }, `h${i}`);
      expect(updated.status, `report ${i}`).toBe(200);
      // Never more held than the next block: what is held plus what is charged stays within 10.
      const eve = await requireAccount(store, 'eve');
      expect(eve.reserved + (10 - eve.balance)).toBeLessThanOrEqual(10);
    }
    const closed = await debitSession(store, sessionId, { requestId: 'd', usedUnits: 30 }, 'hd');
    expect(closed.body).toMatchObject({ charged: { units: 300, amount: 10 }, returned: { amount: 0 } });
    expect(await reconciled(store, 'eve')).toMatchObject({ balance: 0, reserved: 0 });
  });

  describe('a report over its grant (review: 1 s over a 3600 s grant priced per hour made the next hour free)', () => {
    const hourly = { serviceId: 'hourly', unit: 'seconds' as const, price: { amountMinor: 100, perUnits: 3600 }, validitySeconds: 300, interimIntervalSeconds: 30 };
    async function anHourHeld(twoWriteSteps: boolean, balance: number) {
      const store = await testStore({ twoWriteSteps });
      await putService(store, hourly);
      await createAccount(store, { accountId: 'hal', currency: 'EUR', kind: 'prepaid' });
      await topUp(store, 'hal', 't1', balance, 'ht');
      const opened = await reserve(store, { requestId: 'r1', accountId: 'hal', clientId: 'scscf', serviceId: 'hourly', requested: { units: 3600 } }, 'h');
      expect(opened.body).toMatchObject({ granted: { units: 3600, amount: 100 } });
      return { store, sessionId: opened.body.sessionId as string };
    }

    it.each(writePaths)('pays the hour it started from the next grant: 7200 s cost two hours, as reported exactly (%s)', async (_path, twoWriteSteps) => {
      const { store, sessionId } = await anHourHeld(twoWriteSteps, 1000);
      const updated = await updateSession(store, sessionId, { requestId: 'u1', usedUnits: 3601, requested: { units: 3600 } }, 'hu1');
      // 100 charged (the hold); the next grant holds the second hour, which the 3601st second started, and the third.
      expect(updated).toMatchObject({ status: 200, body: { granted: { units: 3600, amount: 200 }, charged: { units: 3601, amount: 100 } } });
      const closed = await debitSession(store, sessionId, { requestId: 'd1', usedUnits: 3599 }, 'hd1');
      expect(closed.body).toMatchObject({ charged: { units: 7200, amount: 200 }, returned: { amount: 100 } });
      expect(await reconciled(store, 'hal')).toMatchObject({ balance: 800, reserved: 0 });
    });

    it.each(writePaths)('grants nothing when nothing is left to pay the hour it started (fails before: 3599 s granted with nothing held) (%s)', async (_path, twoWriteSteps) => {
      const { store, sessionId } = await anHourHeld(twoWriteSteps, 100);
      const updated = await updateSession(store, sessionId, { requestId: 'u1', usedUnits: 3601, requested: { units: 3600 } }, 'hu1');
      expect(updated).toMatchObject({ status: 402, body: { code: 'insufficient_credit', charged: { units: 3601, amount: 100 } } });
      const closed = await debitSession(store, sessionId, { requestId: 'd1', usedUnits: 0 }, 'hd1');
      expect(closed.body).toMatchObject({ charged: { units: 3601, amount: 100 }, returned: { amount: 0 } });
      expect(await reconciled(store, 'hal')).toMatchObject({ balance: 0, reserved: 0 });
    });

    it.each(writePaths)('an { amount } that does not even pay the hours a report over its grant left unpaid is 400, writing nothing (review 9: 402 and a terminate on an account with credit) (%s)', async (_path, twoWriteSteps) => {
      const { store, sessionId } = await anHourHeld(twoWriteSteps, 1000);
      // 7201 s on a 3600 s grant, nothing asked: the hour held is charged, two hours (200) left unpaid.
      expect(await updateSession(store, sessionId, { requestId: 'u1', usedUnits: 7201 }, 'hu1')).toMatchObject({ status: 200, body: { charged: { units: 7201, amount: 100 } } });
      expect(await codeOf(updateSession(store, sessionId, { requestId: 'u2', usedUnits: 0, requested: { amount: 100 } }, 'hu2'))).toBe('validation_failed');
      expect(await reconciled(store, 'hal')).toMatchObject({ balance: 900, reserved: 0 });
      // 300 pays those two hours and 3599 s more.
      expect(await updateSession(store, sessionId, { requestId: 'u3', usedUnits: 0, requested: { amount: 300 } }, 'hu3')).toMatchObject({ status: 200, body: { granted: { units: 7199, amount: 300 } } });
    });

    it.each(writePaths)('a release gives the whole hold back: what the report left unpaid stays unpaid (%s)', async (_path, twoWriteSteps) => {
      const { store, sessionId } = await anHourHeld(twoWriteSteps, 1000);
      await updateSession(store, sessionId, { requestId: 'u1', usedUnits: 3601, requested: { units: 3600 } }, 'hu1');
      const released = await refundSession(store, sessionId, { requestId: 'x1' }, 'hx1');
      expect(released.body).toMatchObject({ refunded: { amount: 0 }, state: 'closed', released: true });
      expect(await reconciled(store, 'hal')).toMatchObject({ balance: 900, reserved: 0 });
    });
  });

  it.each(writePaths)('a huge request after usage is granted what can be charged, and its usage is charged (%s)', async (_path, twoWriteSteps) => {
    const { store, sessionId } = await oneKilobyteHeld(twoWriteSteps);
    // 2^52 kB asked after 1 kB used: its price passes 2^53-1; 997 left buy 332 kB (review: it was granted with nothing held).
    const updated = await updateSession(store, sessionId, { requestId: 'u1', usedUnits: 1, requested: { units: 2 ** 52 } }, 'hu1');
    expect(updated.body).toMatchObject({ granted: { units: 332, amount: 996 } });
    await debitSession(store, sessionId, { requestId: 'd1', usedUnits: 300 }, 'hd1');
    expect(await reconciled(store, 'ann')).toMatchObject({ balance: 1000 - 903, reserved: 0 });
  });

  it.each(writePaths)('grants nothing after usage priced past 2^53-1, and charges it no more than its hold (%s)', async (_path, twoWriteSteps) => {
    const { store, sessionId } = await oneKilobyteHeld(twoWriteSteps);
    // 2^52 kB reported on a grant of 1: charged the hold (3); no grant after it could be rated.
    const updated = await updateSession(store, sessionId, { requestId: 'u1', usedUnits: 2 ** 52, requested: { units: 10 } }, 'hu1');
    expect(updated).toMatchObject({ status: 402, body: { charged: { amount: 3 } } });
    // Repeated, it is answered alike (its usage on top of what it recorded would pass 2^53-1: review).
    expect(await updateSession(store, sessionId, { requestId: 'u1', usedUnits: 2 ** 52, requested: { units: 10 } }, 'hu1')).toEqual(updated);
    const closed = await debitSession(store, sessionId, { requestId: 'd1', usedUnits: 0 }, 'hd1');
    expect(closed.body).toMatchObject({ charged: { amount: 3 }, returned: { amount: 0 } });
    expect(await reconciled(store, 'ann')).toMatchObject({ balance: 997, reserved: 0 });
  });

  it('answers 402 on an update with no credit left, and still charges the usage', async () => {
    const store = await testStore();
    await fundedAccount(store, 'carol', 2);
    const { body } = await reserve(store, reserveCommand('r1', 'carol', 60), 'h');
    const answer = await updateSession(store, body.sessionId as string, { requestId: 'u1', usedUnits: 60, requested: { units: 60 } }, 'hu');
    expect(answer.status).toBe(402);
    expect(answer.body).toMatchObject({ code: 'insufficient_credit', charged: { amount: 2 } });
    expect(await reconciled(store, 'carol')).toMatchObject({ balance: 0, reserved: 0 });
  });

  it('a session refused a grant is not asked for an interim report, and expires at its validity (fails before: the sweep asked it)', async () => {
    for (const twoWriteSteps of [false, true]) {
      const clock = testClock();
      const store = await testStore({ now: clock.now, twoWriteSteps });
      await putService(store, { serviceId: 'call', unit: 'seconds', price: { amountMinor: 1, perUnits: 60 }, validitySeconds: 300, interimIntervalSeconds: 30 });
      await fundedAccount(store, 'carol', 2);
      const { body } = await reserve(store, { requestId: 'r1', accountId: 'carol', clientId: 'c', serviceId: 'call', requested: { units: 120 } }, 'h');
      clock.advanceSeconds(10);
      expect((await updateSession(store, body.sessionId as string, { requestId: 'u1', usedUnits: 120, requested: { units: 60 } }, 'hu')).status).toBe(402);
      clock.advanceSeconds(31);
      expect(await sweep(store, { batchSize: 10, maxBatches: 2 })).toMatchObject({ reportsRequested: 0, expired: 0 });
      clock.advanceSeconds(300);
      expect(await sweep(store, { batchSize: 10, maxBatches: 2 })).toMatchObject({ reportsRequested: 0, expired: 1 });
      expect(await reconciled(store, 'carol')).toMatchObject({ balance: 0, reserved: 0 });
    }
  });

  it('refunds part of a closed session, never more than it charged', async () => {
    const store = await testStore();
    await fundedAccount(store, 'dave', 100);
    const { body } = await reserve(store, reserveCommand('r1', 'dave'), 'h');
    const sessionId = body.sessionId as string;
    await debitSession(store, sessionId, { requestId: 'd1', usedUnits: 300 }, 'hd');
    expect((await refundSession(store, sessionId, { requestId: 'f1', amount: 4 }, 'hf1')).body).toMatchObject({ refunded: { amount: 4 } });
    expect(await codeOf(refundSession(store, sessionId, { requestId: 'f2', amount: 7 }, 'hf2'))).toBe('conflict');
    // Without an amount a refund is a release: a closed session has nothing to release.
    expect(await codeOf(refundSession(store, sessionId, { requestId: 'f3' }, 'hf3'))).toBe('session_closed');
    expect((await refundSession(store, sessionId, { requestId: 'f4', amount: 6 }, 'hf4')).body).toMatchObject({ refunded: { amount: 6 } });
    expect(await reconciled(store, 'dave')).toMatchObject({ balance: 100, reserved: 0 });
  });

  it('a refused refund is the answer for good: repeated once the session closed or after other refunds, it is refused the same', async () => {
    const store = await testStore();
    await fundedAccount(store, 'dave', 100);
    const { body } = await reserve(store, reserveCommand('r1', 'dave'), 'h');
    const sessionId = body.sessionId as string;
    const early = await refundSession(store, sessionId, { requestId: 'f0', amount: 4 }, 'hf0');
    expect(early).toMatchObject({ status: 409, body: { code: 'conflict' } });
    await debitSession(store, sessionId, { requestId: 'd1', usedUnits: 300 }, 'hd');
    const tooMuch = await refundSession(store, sessionId, { requestId: 'f1', amount: 11 }, 'hf1');
    expect(tooMuch).toMatchObject({ status: 409, body: { code: 'conflict', refundable: 10 } });
    expect((await refundSession(store, sessionId, { requestId: 'f2', amount: 3 }, 'hf2')).status).toBe(200);
    // Repeats: the closed session could refund 4 now, and its refundable is 7 by now.
    expect(await refundSession(store, sessionId, { requestId: 'f0', amount: 4 }, 'hf0')).toEqual(early);
    expect(await refundSession(store, sessionId, { requestId: 'f1', amount: 11 }, 'hf1')).toEqual(tooMuch);
    expect(await codeOf(refundSession(store, sessionId, { requestId: 'f1', amount: 2 }, 'other'))).toBe('idempotency_conflict');
    expect(await reconciled(store, 'dave')).toMatchObject({ balance: 100 - 10 + 3, reserved: 0 });
  });

  it('releases an active session uncharged on refund without amount', async () => {
    const store = await testStore();
    await fundedAccount(store, 'erin', 100);
    const { body } = await reserve(store, reserveCommand('r1', 'erin'), 'h');
    const answer = await refundSession(store, body.sessionId as string, { requestId: 'f1' }, 'hf');
    expect(answer.body).toMatchObject({ state: 'closed', released: true, refunded: { amount: 0 }, returned: { amount: 20 } });
    expect(await reconciled(store, 'erin')).toMatchObject({ balance: 100, reserved: 0 });
  });

  it('refuses unknown accounts and services, and inactive accounts', async () => {
    const store = await testStore();
    await fundedAccount(store, 'frank', 100);
    expect(await codeOf(reserve(store, reserveCommand('r1', 'nobody'), 'h'))).toBe('not_found');
    expect(await codeOf(reserve(store, { ...reserveCommand('r2', 'frank'), serviceId: 'nothing' }, 'h'))).toBe('not_found');
    const { createAccount } = await import('../../functions/store/accounts.js');
    await createAccount(store, { accountId: 'old', currency: 'EUR', kind: 'postpaid', creditLimit: 100, validUntil: '2000-01-01T00:00:00.000Z' });
    expect(await codeOf(reserve(store, reserveCommand('r3', 'old'), 'h'))).toBe('account_inactive');
  });
});

describe('an account whose validity ends mid-session', () => {
  it.each(writePaths)('gets no new grant on an update: the usage is charged, 403 account_inactive, and a repeat answers alike (%s)', async (_label, twoWriteSteps) => {
    // Found by review: an update re-reserved (and grew) the grant of an expired account.
    const clock = testClock();
    const store = await testStore({ now: clock.now, twoWriteSteps });
    const { createAccount, topUp } = await import('../../functions/store/accounts.js');
    await fundedAccount(store, 'frank', 0);
    await createAccount(store, { accountId: 'ends', currency: 'EUR', kind: 'prepaid', validUntil: new Date(clock.now().getTime() + 120_000).toISOString() });
    await topUp(store, 'ends', 't', 1000, 'h');
    const sessionId = (await reserve(store, reserveCommand('r1', 'ends', 60), 'h')).body.sessionId as string;
    clock.advanceSeconds(60);
    // Still valid: the update grants as usual.
    expect((await updateSession(store, sessionId, { requestId: 'u1', usedUnits: 60, requested: { units: 60 } }, 'h')).status).toBe(200);
    clock.advanceSeconds(90); // its validUntil has passed
    const update = { requestId: 'u2', usedUnits: 60, requested: { units: 6000 } };
    const refused = await updateSession(store, sessionId, update, 'h');
    expect(refused).toMatchObject({ status: 403, body: { code: 'account_inactive', charged: { units: 120, amount: 4 } } });
    expect(await updateSession(store, sessionId, update, 'h')).toEqual(refused);
    expect(await reconciled(store, 'ends')).toMatchObject({ balance: 1000 - 4, reserved: 0 });
    // The final report is still taken; usage past what was granted is never charged beyond
    // what was held (nothing was, after the refusal).
    expect((await debitSession(store, sessionId, { requestId: 'd', usedUnits: 30 }, 'h')).body).toMatchObject({ state: 'closed', charged: { units: 150, amount: 4 } });
    expect(await reconciled(store, 'ends')).toMatchObject({ balance: 1000 - 4, reserved: 0 });
  });

  it.each(writePaths)('gets no new grant within a block already paid either (fails before: 500 KB more of a paid 1 MB block; review 23 of stop 28) (%s)', async (_label, twoWriteSteps) => {
    const clock = testClock();
    const store = await testStore({ now: clock.now, twoWriteSteps });
    await putService(store, { serviceId: 'data', unit: 'kilobytes', price: { amountMinor: 100, perUnits: 1024 }, validitySeconds: 3600, interimIntervalSeconds: 60 });
    await createAccount(store, { accountId: 'ends', currency: 'EUR', kind: 'prepaid', validUntil: new Date(clock.now().getTime() + 120_000).toISOString() });
    await topUp(store, 'ends', 't', 1000, 'h');
    const sessionId = (await reserve(store, { requestId: 'r1', accountId: 'ends', clientId: 'ggsn', serviceId: 'data', requested: { units: 100 } }, 'h')).body.sessionId as string;
    clock.advanceSeconds(180); // past its validUntil
    const refused = await updateSession(store, sessionId, { requestId: 'u1', usedUnits: 100, requested: { units: 500 } }, 'h');
    expect(refused).toMatchObject({ status: 403, body: { code: 'account_inactive', charged: { units: 100, amount: 100 } } });
    expect(await reconciled(store, 'ends')).toMatchObject({ balance: 900, reserved: 0 });
  });
});

describe('idempotency', () => {
  it('answers a repeated request with the original answer and changes nothing', async () => {
    const store = await testStore();
    await fundedAccount(store, 'alice', 1000);
    const first = await reserve(store, reserveCommand('r1'), 'h1');
    expect(await reserve(store, reserveCommand('r1'), 'h1')).toEqual(first);
    const sessionId = first.body.sessionId as string;
    const u = await updateSession(store, sessionId, { requestId: 'u1', usedUnits: 90, requested: { units: 600 } }, 'hu1');
    expect(await updateSession(store, sessionId, { requestId: 'u1', usedUnits: 90, requested: { units: 600 } }, 'hu1')).toEqual(u);
    const d = await debitSession(store, sessionId, { requestId: 'd1', usedUnits: 30 }, 'hd1');
    expect(await debitSession(store, sessionId, { requestId: 'd1', usedUnits: 30 }, 'hd1')).toEqual(d);
    // An old update retransmitted after the session closed is answered as it was, not charged.
    expect(await updateSession(store, sessionId, { requestId: 'u1', usedUnits: 90, requested: { units: 600 } }, 'hu1')).toEqual(u);
    expect(await reserve(store, reserveCommand('r1'), 'h1')).toEqual(first);
    expect(await reconciled(store, 'alice')).toMatchObject({ balance: 996, reserved: 0 });
  });

  it('refuses the same requestId with another body', async () => {
    const store = await testStore();
    await fundedAccount(store, 'alice', 1000);
    await fundedAccount(store, 'bob', 1000);
    const { body } = await reserve(store, reserveCommand('r1'), 'h1');
    expect(await codeOf(reserve(store, reserveCommand('r1', 'alice', 60), 'other'))).toBe('idempotency_conflict');
    expect(await codeOf(reserve(store, reserveCommand('r1', 'bob'), 'other'))).toBe('idempotency_conflict');
    // A reused requestId is answered before anything else, an unknown service too (API.md).
    expect(await codeOf(reserve(store, { ...reserveCommand('r1'), serviceId: 'nothing' }, 'other'))).toBe('idempotency_conflict');
    expect(await codeOf(reserve(store, { ...reserveCommand('r2'), serviceId: 'nothing' }, 'h2'))).toBe('not_found');
    await updateSession(store, body.sessionId as string, { requestId: 'u1', usedUnits: 60 }, 'hu1');
    expect(await codeOf(updateSession(store, body.sessionId as string, { requestId: 'u1', usedUnits: 61 }, 'other'))).toBe('idempotency_conflict');
    // The refused attempt on bob left nothing behind.
    expect(await reconciled(store, 'bob')).toMatchObject({ balance: 1000, reserved: 0 });
  });

  it.each(writePaths)('a release that the debit beats is refused in the words its repeat gets (review: two wordings) (%s)', async (_path, twoWriteSteps) => {
    const { store, runBefore, pending } = await interleavingStore((command) =>
      (command instanceof TransactWriteCommand || command instanceof UpdateCommand) && JSON.stringify(command.input).includes('"rel-1"'), { twoWriteSteps });
    await fundedAccount(store, 'alice', 1000);
    const { body } = await reserve(store, reserveCommand('r1'), 'h1');
    const sessionId = body.sessionId as string;
    runBefore(() => debitSession(store, sessionId, { requestId: 'd1', usedUnits: 60 }, 'hd1'));
    const refusal = (promise: Promise<unknown>) => promise.then(() => null, (error: ChargingError) => ({ code: error.code, message: error.message, extra: error.extra }));
    const first = await refusal(refundSession(store, sessionId, { requestId: 'rel-1' }, 'hr'));
    expect(pending()).toBe(false);
    expect(first).toMatchObject({ code: 'session_closed' });
    // Kept on the session since stop 27: the repeat is answered with it.
    expect(await refundSession(store, sessionId, { requestId: 'rel-1' }, 'hr')).toEqual({ status: 409, body: { code: first!.code, detail: first!.message, ...first!.extra } });
    expect(await reconciled(store, 'alice')).toMatchObject({ balance: 998, reserved: 0 });
  });

  it('concurrent duplicates reserve once and all get the same answer', async () => {
    const store = await testStore();
    await fundedAccount(store, 'alice', 1000);
    const answers = await Promise.all(Array.from({ length: 10 }, () => reserve(store, reserveCommand('r1'), 'h1')));
    for (const answer of answers) expect(answer).toEqual(answers[0]);
    const sessionId = answers[0]!.body.sessionId as string;
    const updates = await Promise.all(Array.from({ length: 10 }, () =>
      updateSession(store, sessionId, { requestId: 'u1', usedUnits: 90, requested: { units: 600 } }, 'hu1')));
    for (const answer of updates) expect(answer).toEqual(updates[0]);
    const debits = await Promise.all(Array.from({ length: 10 }, () => debitSession(store, sessionId, { requestId: 'd1', usedUnits: 0 }, 'hd1')));
    for (const answer of debits) expect(answer).toEqual(debits[0]);
    expect(await reconciled(store, 'alice')).toMatchObject({ balance: 996, reserved: 0 });
  });
});

/** A database whose next transaction "dies": the handler crashes after the account write. */
function dyingAfterAccountWrite(inner: Db) {
  const state = { armed: false };
  const db: Db = {
    send: (command) => {
      if (state.armed && command instanceof TransactWriteCommand) {
        state.armed = false;
        return Promise.reject(new Error('handler died'));
      }
      return inner.send(command);
    },
  };
  return { db, arm: () => { state.armed = true; } };
}

describe('a handler dying between the two writes', () => {
  it('is finished by the retry, never charged twice, for every step', async () => {
    let crash!: ReturnType<typeof dyingAfterAccountWrite>;
    const store = await testStore({ db: (inner) => (crash = dyingAfterAccountWrite(inner)).db, twoWriteSteps: true });
    await fundedAccount(store, 'alice', 1000);

    crash.arm();
    await expect(reserve(store, reserveCommand('r1'), 'h1')).rejects.toThrow('handler died');
    const opened = await reserve(store, reserveCommand('r1'), 'h1');
    const sessionId = opened.body.sessionId as string;
    expect(opened.body).toMatchObject({ granted: { amount: 20 } });

    crash.arm();
    await expect(updateSession(store, sessionId, { requestId: 'u1', usedUnits: 90, requested: { units: 600 } }, 'hu')).rejects.toThrow('handler died');
    const updated = await updateSession(store, sessionId, { requestId: 'u1', usedUnits: 90, requested: { units: 600 } }, 'hu');
    expect(updated.body).toMatchObject({ charged: { amount: 4 }, granted: { amount: 20 } });

    crash.arm();
    await expect(debitSession(store, sessionId, { requestId: 'd1', usedUnits: 60 }, 'hd')).rejects.toThrow('handler died');
    const closed = await debitSession(store, sessionId, { requestId: 'd1', usedUnits: 60 }, 'hd');
    expect(closed.body).toMatchObject({ state: 'closed', charged: { units: 150, amount: 6 }, returned: { amount: 18 } });
    expect(await reconciled(store, 'alice')).toMatchObject({ balance: 994, reserved: 0 });
  });

  it('is finished by the next request of another kind (roll forward)', async () => {
    let crash!: ReturnType<typeof dyingAfterAccountWrite>;
    const store = await testStore({ db: (inner) => (crash = dyingAfterAccountWrite(inner)).db, twoWriteSteps: true });
    await fundedAccount(store, 'alice', 1000);
    const sessionId = (await reserve(store, reserveCommand('r1'), 'h1')).body.sessionId as string;
    crash.arm();
    await expect(updateSession(store, sessionId, { requestId: 'u1', usedUnits: 90, requested: { units: 600 } }, 'hu')).rejects.toThrow();
    // The client gave up on u1 and terminates: u1's step is recorded first, then the debit.
    const closed = await debitSession(store, sessionId, { requestId: 'd1', usedUnits: 30 }, 'hd');
    expect(closed.body).toMatchObject({ charged: { units: 120, amount: 4 } });
    expect(answerIn(await requireSession(store, sessionId, 'u1'), 'u1')).toBeDefined();
    expect(await reconciled(store, 'alice')).toMatchObject({ balance: 996, reserved: 0 });
  });
});

/** A database that fails the next transaction: after it went through (a timeout whose write landed) or before. */
function failingNextTransaction(inner: Db) {
  const state: { armed: null | 'after' | 'before' | 'conflict'; transactions: number } = { armed: null, transactions: 0 };
  const db: Db = {
    send: async (command) => {
      if (command instanceof TransactWriteCommand) state.transactions++;
      const armed = command instanceof TransactWriteCommand ? state.armed : null;
      if (!armed) return inner.send(command);
      state.armed = null;
      if (armed === 'conflict') {
        throw Object.assign(new Error('Transaction cancelled'), {
          name: 'TransactionCanceledException',
          CancellationReasons: command.input.TransactItems.map((_: unknown, i: number) => ({ Code: i === 0 ? 'TransactionConflict' : 'None' })),
        });
      }
      if (armed === 'after') await inner.send(command);
      throw Object.assign(new Error('socket hang up'), { name: 'TimeoutError' });
    },
  };
  return { db, state, arm: (how: 'after' | 'before' | 'conflict') => { state.armed = how; } };
}

describe('one write: the account and the record in one transaction', () => {
  it('a timeout after the transaction landed: the request finds its step applied and answers it, once', async () => {
    let faults!: ReturnType<typeof failingNextTransaction>;
    const store = await testStore({ db: (inner) => (faults = failingNextTransaction(inner)).db });
    await fundedAccount(store, 'alice', 1000);
    faults.arm('after');
    const opened = await reserve(store, reserveCommand('r1'), 'h1');
    expect(opened).toMatchObject({ status: 201, body: { granted: { amount: 20 } } });
    const sessionId = opened.body.sessionId as string;
    faults.arm('after');
    const updated = await updateSession(store, sessionId, { requestId: 'u1', usedUnits: 90, requested: { units: 600 } }, 'hu');
    expect(updated.body).toMatchObject({ charged: { amount: 4 }, granted: { amount: 20 } });
    faults.arm('after');
    const closed = await debitSession(store, sessionId, { requestId: 'd1', usedUnits: 60 }, 'hd');
    expect(closed.body).toMatchObject({ state: 'closed', charged: { units: 150, amount: 6 }, returned: { amount: 18 } });
    // Repeats are answered alike, and nothing moved twice.
    expect(await reserve(store, reserveCommand('r1'), 'h1')).toEqual(opened);
    expect(await updateSession(store, sessionId, { requestId: 'u1', usedUnits: 90, requested: { units: 600 } }, 'hu')).toEqual(updated);
    expect(await debitSession(store, sessionId, { requestId: 'd1', usedUnits: 60 }, 'hd')).toEqual(closed);
    expect(await reconciled(store, 'alice')).toMatchObject({ balance: 994, reserved: 0 });
  });

  it('a timeout before it landed: the two-write way applies the step, once', async () => {
    let faults!: ReturnType<typeof failingNextTransaction>;
    const store = await testStore({ db: (inner) => (faults = failingNextTransaction(inner)).db });
    await fundedAccount(store, 'alice', 1000);
    faults.arm('before');
    const sessionId = (await reserve(store, reserveCommand('r1'), 'h1')).body.sessionId as string;
    faults.arm('before');
    await updateSession(store, sessionId, { requestId: 'u1', usedUnits: 90, requested: { units: 600 } }, 'hu');
    faults.arm('before');
    const closed = await debitSession(store, sessionId, { requestId: 'd1', usedUnits: 60 }, 'hd');
    expect(closed.body).toMatchObject({ state: 'closed', charged: { units: 150, amount: 6 }, returned: { amount: 18 } });
    expect(await reconciled(store, 'alice')).toMatchObject({ balance: 994, reserved: 0 });
  });

  it('a conflict sends the account the two-write way for a while, then back', async () => {
    const clock = testClock();
    let faults!: ReturnType<typeof failingNextTransaction>;
    const store = await testStore({ now: clock.now, db: (inner) => (faults = failingNextTransaction(inner)).db });
    await fundedAccount(store, 'alice', 1000);
    const sessionId = (await reserve(store, reserveCommand('r1'), 'h1')).body.sessionId as string;
    faults.arm('conflict');
    const before = faults.state.transactions;
    await updateSession(store, sessionId, { requestId: 'u1', usedUnits: 60, requested: { units: 600 } }, 'hu1');
    expect(faults.state.transactions - before).toBe(2); // the cancelled one write, then the record
    // Contended: the next steps go straight to the account UpdateItem (one transaction each: the record).
    const account = await requireAccount(store, 'alice');
    expect(account.ops[sessionId]).toMatchObject({ seq: 2 });
    const mark = faults.state.transactions;
    await updateSession(store, sessionId, { requestId: 'u2', usedUnits: 60, requested: { units: 600 } }, 'hu2');
    expect(faults.state.transactions - mark).toBe(1);
    clock.advanceSeconds(61);
    await updateSession(store, sessionId, { requestId: 'u3', usedUnits: 60, requested: { units: 600 } }, 'hu3');
    await debitSession(store, sessionId, { requestId: 'd1', usedUnits: 60 }, 'hd');
    expect(await reconciled(store, 'alice')).toMatchObject({ balance: 992, reserved: 0 });
  });

  it('a late duplicate of a finished session\'s reserve is answered as before and holds nothing', async () => {
    const store = await testStore();
    await fundedAccount(store, 'alice', 100);
    const opened = await reserve(store, reserveCommand('r1'), 'h1');
    await debitSession(store, opened.body.sessionId as string, { requestId: 'd1', usedUnits: 60 }, 'hd');
    expect(await reserve(store, reserveCommand('r1'), 'h1')).toEqual(opened);
    expect(await codeOf(reserve(store, reserveCommand('r1', 'alice', 60), 'other body'))).toBe('idempotency_conflict');
    expect(await reconciled(store, 'alice')).toMatchObject({ balance: 98, reserved: 0 });
  });

  // Found by the simulator (seed 21, 20,000 operations, op 3,500): a retry that went the
  // one-write way answered from the record and left on the account what its first attempt,
  // on the two-write path, had taken and not given back yet.
  it('a retry finishes what a two-write attempt of the same request left: a late duplicate\'s hold goes back', async () => {
    const { twoWrites, oneWrite, failNextTransaction } = await twoWriteAndOneWriteStores();
    await fundedAccount(oneWrite, 'alice', 100);
    const opened = await reserve(oneWrite, reserveCommand('r1'), 'h1');
    const sessionId = opened.body.sessionId as string;
    await debitSession(oneWrite, sessionId, { requestId: 'd1', usedUnits: 60 }, 'hd');
    await oneWrite.db.send(new UpdateCommand({ TableName: oneWrite.tableName, Key: key.account('alice'), UpdateExpression: 'REMOVE ops.#op', ExpressionAttributeNames: { '#op': sessionId } }));
    // A late duplicate on a hot account's path takes a new hold, and dies before it learns the session exists.
    failNextTransaction(new Error('handler died'));
    await expect(reserve(readingBeforeTheRecord(twoWrites), reserveCommand('r1'), 'h1')).rejects.toThrow('handler died');
    expect(await requireAccount(oneWrite, 'alice')).toMatchObject({ reserved: 20 });
    // Its retry, in a process where the account is quiet, is answered as before, and the hold goes back.
    expect(await reserve(oneWrite, reserveCommand('r1'), 'h1')).toEqual(opened);
    expect(await reconciled(oneWrite, 'alice')).toMatchObject({ balance: 98, reserved: 0 });
  });

  it('a repeat of a reserve or an event answered long ago writes nothing on the two-write path: no money held again, no low balance told again (review 1)', async () => {
    const store = await testStore();
    await fundedAccount(store, 'alice', 1000);
    await store.db.send(new UpdateCommand({ TableName: store.tableName, Key: key.account('alice'), UpdateExpression: 'SET lowBalanceThreshold = :t', ExpressionAttributeValues: { ':t': 990 } }));
    const opened = await reserve(store, reserveCommand('r1'), 'h1'); // 20 held: 980 available, below 990
    await debitSession(store, opened.body.sessionId as string, { requestId: 'd1', usedUnits: 0 }, 'hd');
    const event = { requestId: 'e1', accountId: 'alice', clientId: 'as', serviceId: 'voice', units: 60 };
    const charged = await directDebit(store, event, 'he'); // carries away the session's finished entry
    await directDebit(store, { ...event, requestId: 'e2' }, 'he2'); // and this one e1's
    const lowBalances = async () => (await listNotifications(store, 'alice')).notifications.filter((n) => n.type === 'low_balance').length;
    expect(await lowBalances()).toBe(1);
    const calls = countingDb(store.db);
    const counted = { ...store, db: calls };
    expect(await reserve(counted, reserveCommand('r1'), 'h1')).toEqual(opened);
    expect(await directDebit(counted, event, 'he')).toEqual(charged);
    expect([...calls.counts.keys()].filter((kind) => kind !== 'Get')).toEqual([]);
    expect(await lowBalances()).toBe(1);
    expect(await reconciled(store, 'alice')).toMatchObject({ balance: 996, reserved: 0 });
  });

  it('an account with a low-balance threshold is written the two-write way, and its crossing is noticed', async () => {
    const store = await testStore();
    await fundedAccount(store, 'alice', 100);
    await store.db.send(new UpdateCommand({ TableName: store.tableName, Key: key.account('alice'), UpdateExpression: 'SET lowBalanceThreshold = :t', ExpressionAttributeValues: { ':t': 90 } }));
    const sessionId = (await reserve(store, reserveCommand('r1', 'alice', 600), 'h1')).body.sessionId as string;
    await debitSession(store, sessionId, { requestId: 'd1', usedUnits: 600 }, 'hd');
    const notes = (await listNotifications(store, 'alice')).notifications.filter((n) => n.type === 'low_balance');
    expect(notes).toHaveLength(1);
    expect(await reconciled(store, 'alice')).toMatchObject({ balance: 80, reserved: 0 });
  });
});

describe('concurrency on one account', () => {
  it('100 concurrent reserves never overdraw, and everything adds up', async () => {
    const store = await testStore();
    await fundedAccount(store, 'hot', 1000); // 50 full grants of 20
    const results = await Promise.allSettled(Array.from({ length: 100 }, (_, i) => reserve(store, reserveCommand(`r${i}`, 'hot'), `h${i}`)));
    const granted = results.filter((r) => r.status === 'fulfilled').map((r) => (r as PromiseFulfilledResult<any>).value.body.granted.amount as number);
    const refused = results.filter((r) => r.status === 'rejected').map((r) => ((r as PromiseRejectedResult).reason as ChargingError).code);
    expect(refused.every((code) => code === 'insufficient_credit')).toBe(true);
    expect(granted.reduce((a, b) => a + b, 0)).toBe(1000);
    const account = await reconciled(store, 'hot');
    expect(account).toMatchObject({ balance: 1000, reserved: 1000, available: 0 });

    // Now close them all concurrently, each using part of its grant.
    const sessions = results.filter((r) => r.status === 'fulfilled').map((r) => (r as PromiseFulfilledResult<any>).value.body);
    const closes = await Promise.all(sessions.map((s, i) => debitSession(store, s.sessionId, { requestId: `d${i}`, usedUnits: 60 }, `hd${i}`)));
    const charged = closes.reduce((sum, c) => sum + (c.body as any).charged.amount, 0);
    const after = await reconciled(store, 'hot');
    expect(after.balance + charged).toBe(1000);
    expect(after.reserved).toBe(0);
  });

  it('concurrent updates and debits of many sessions on one account add up', async () => {
    const store = await testStore();
    await fundedAccount(store, 'hot', 10_000);
    const ids = (await Promise.all(Array.from({ length: 20 }, (_, i) => reserve(store, reserveCommand(`r${i}`, 'hot'), `h${i}`)))).map((a) => a.body.sessionId as string);
    await Promise.all(ids.flatMap((id, i) => [
      updateSession(store, id, { requestId: `u${i}`, usedUnits: 120, requested: { units: 300 } }, `hu${i}`),
    ]));
    await Promise.all(ids.map((id, i) => debitSession(store, id, { requestId: `d${i}`, usedUnits: 61 }, `hd${i}`)));
    const account = await reconciled(store, 'hot');
    // Each session: 181 s = 4 blocks = 8.
    expect(account).toMatchObject({ balance: 10_000 - 20 * 8, reserved: 0 });
  });
});

describe('expiry', () => {
  it('returns the reservation of a silent session; a late update is refused', async () => {
    const clock = testClock();
    const store = await testStore({ now: clock.now });
    await fundedAccount(store, 'alice', 1000);
    const sessionId = (await reserve(store, reserveCommand('r1'), 'h1')).body.sessionId as string;
    await updateSession(store, sessionId, { requestId: 'u1', usedUnits: 60, requested: { units: 600 } }, 'hu');
    expect(await expireSession(store, sessionId)).toBe('not_due');
    clock.advanceSeconds(301);
    expect(await expireSession(store, sessionId)).toBe('expired');
    expect(await expireSession(store, sessionId)).toBe('gone');
    expect(await codeOf(updateSession(store, sessionId, { requestId: 'u2', usedUnits: 60 }, 'hu2'))).toBe('session_closed');
    expect((await requireSession(store, sessionId)).state).toBe('expired');
    expect(await reconciled(store, 'alice')).toMatchObject({ balance: 998, reserved: 0 });
  });

  it('two sweeps and an update racing one expiry: returned once', async () => {
    const clock = testClock();
    const store = await testStore({ now: clock.now });
    await fundedAccount(store, 'alice', 1000);
    const sessionId = (await reserve(store, reserveCommand('r1'), 'h1')).body.sessionId as string;
    clock.advanceSeconds(301);
    const outcomes = await Promise.allSettled([
      expireSession(store, sessionId),
      expireSession(store, sessionId),
      updateSession(store, sessionId, { requestId: 'u1', usedUnits: 60, requested: { units: 60 } }, 'hu'),
    ]);
    expect(outcomes.filter((o) => o.status === 'fulfilled' && o.value === 'expired').length).toBeLessThanOrEqual(1);
    const account = await reconciled(store, 'alice');
    expect(account.reserved + (account.balance === 998 ? 0 : 0)).toBeGreaterThanOrEqual(0);
    expect([1000, 998]).toContain(account.balance);
  });
});

describe('a long session', () => {
  // Every request's answer is kept for repeats, but as an item of its own: the session item
  // is written whole by every step, and would otherwise grow by each answer (~220 B) until a
  // session reporting every minute passed DynamoDB's 400 KB item limit after about 30 hours.
  it('keeps the session item the same size however many updates it takes, and still answers the first update on repeat', async () => {
    const store = await testStore();
    await fundedAccount(store, 'alice', 1_000_000);
    const sessionId = (await reserve(store, reserveCommand('r1'), 'h1')).body.sessionId as string;
    const size = async () => JSON.stringify((await store.db.send(new GetCommand({ TableName: store.tableName, Key: { pk: `SES#${sessionId}`, sk: 'SESSION' }, ConsistentRead: true }))).Item).length;
    const first = await updateSession(store, sessionId, { requestId: 'u0', usedUnits: 60, requested: { units: 600 } }, 'h');
    const early = await size();
    for (let i = 1; i <= 40; i++) await updateSession(store, sessionId, { requestId: `u${i}`, usedUnits: 60, requested: { units: 600 } }, 'h');
    expect(await size() - early).toBeLessThan(64); // only numbers with more digits
    expect(await updateSession(store, sessionId, { requestId: 'u0', usedUnits: 60, requested: { units: 600 } }, 'h')).toEqual(first);
    await expect(updateSession(store, sessionId, { requestId: 'u0', usedUnits: 61 }, 'other')).rejects.toMatchObject({ code: 'idempotency_conflict' });
    expect((await requireSession(store, sessionId)).hold.usedUnits).toBe(41 * 60);
  });
});

describe('an update asked in money', () => {
  it.each(writePaths)('an { amount } that buys no block is 400 and writes nothing (fails before: 402, the grant dropped) (%s)', async (_path, twoWriteSteps) => {
    const store = await testStore({ twoWriteSteps });
    await fundedAccount(store, 'alice', 1000);
    const sid = (await reserve(store, reserveCommand('r1', 'alice', 60), 'h')).body.sessionId as string;
    const before = await requireSession(store, sid);
    expect(await codeOf(updateSession(store, sid, { requestId: 'u1', usedUnits: 30, requested: { amount: 1 } }, 'h'))).toBe('validation_failed');
    expect(await requireSession(store, sid)).toMatchObject({ seq: before.seq, hold: before.hold });
    expect(await reconciled(store, 'alice')).toMatchObject({ balance: 1000, reserved: 2 });
  });

  it('a partial grant asked in money carries finalUnit, as one asked in units (fails before: none)', async () => {
    const store = await testStore();
    await fundedAccount(store, 'alice', 10);
    const sid = (await reserve(store, { ...reserveCommand('r1', 'alice'), requested: { amount: 2 } }, 'h')).body.sessionId as string;
    const updated = await updateSession(store, sid, { requestId: 'u1', usedUnits: 60, requested: { amount: 100 } }, 'h');
    expect(updated.body).toMatchObject({ granted: { units: 240, amount: 8 }, finalUnit: { action: 'terminate' } });
  });
});
