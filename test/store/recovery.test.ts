// What handlers leave half done, finished: holds whose reserve died before its session was
// written, debits never recorded, finished entries nobody removed, transactions that kept
// meeting conflicts; and the costs of the no-fault path, which all of this must not raise.
import { describe, expect, it } from 'vitest';
import { GetCommand, PutCommand, TransactWriteCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { codeOf, fundedAccount, readingBeforeTheRecord, reconciled, reserveCommand, testClock, testStore, voice } from '../helpers.js';
import { reserve, updateSession, debitSession, refundSession, requireSession, getSessionItem, answerIn, sessionIdFor, sweepSession } from '../../functions/store/sessions.js';
import { directDebit } from '../../functions/store/debits.js';
import { createAccount, requireAccount, topUp } from '../../functions/store/accounts.js';
import { putService } from '../../functions/store/services.js';
import { manualRecharge, putServiceAccount } from '../../functions/store/serviceAccounts.js';
import { sweep } from '../../functions/store/sweep.js';
import { listNotifications } from '../../functions/store/notifications.js';
import { key } from '../../functions/store/table.js';
import { ChargingError } from '../../functions/domain/errors.js';
import { MAX_BALANCE_MINOR } from '../../functions/domain/rating.js';
import { countingDb, type Db, type Store } from '../../functions/store/db.js';

const event = (requestId: string, accountId = 'alice', units = 60) => ({ requestId, accountId, clientId: 'as', serviceId: 'voice', units });
const runSweep = (store: Store) => sweep(store, { batchSize: 50, maxBatches: 5 });

/**
 * A db whose calls a test can fail: `hook` runs before each and may throw instead. The store
 * writes the two-write way (account first, record after: what is left half done here is what
 * these tests are about) unless `twoWriteSteps` is false.
 */
function faultyStore(clock = testClock(), twoWriteSteps = true) {
  let hook: ((command: any) => Error | null | Promise<Error | null>) | null = null;
  const counting = { db: undefined as unknown as ReturnType<typeof countingDb> };
  const storePromise = testStore({
    now: clock.now,
    twoWriteSteps,
    db: (inner: Db): Db => (counting.db = countingDb({
      send: async (command) => {
        const failure = await hook?.(command);
        if (failure) throw failure;
        return inner.send(command);
      },
    })),
  });
  return {
    clock,
    store: storePromise,
    counts: () => counting.db,
    /** The next TransactWrite does not go out: the handler died after its account write. */
    dieAtNextTransaction: () => { hook = (c) => (c instanceof TransactWriteCommand ? ((hook = null), new Error('handler died')) : null); },
    failWith: (next: typeof hook) => { hook = next; },
    heal: () => { hook = null; },
  };
}

const conflict = () => Object.assign(new Error('TransactionCanceledException'), {
  name: 'TransactionCanceledException', CancellationReasons: [{ Code: 'TransactionConflict' }, { Code: 'None' }],
});

describe('the no-fault path costs what it did', () => {
  /** The calls of one of each operation on a fresh account, less the reads of the service (the tests turn the service cache off). */
  async function callsOfEach(twoWriteSteps: boolean) {
    const clock = testClock();
    const f = faultyStore(clock, twoWriteSteps);
    const store = await f.store;
    await fundedAccount(store, 'alice', 1000);
    const calls = async (run: () => Promise<unknown>, serviceReads: number) => {
      f.counts().reset();
      await run();
      return f.counts().total() - serviceReads;
    };
    const opened = await reserve(store, reserveCommand('r1'), 'h');
    const sessionId = opened.body.sessionId as string;
    const second = (await reserve(store, reserveCommand('r3'), 'h')).body.sessionId as string;
    return {
      reserve: await calls(() => reserve(store, reserveCommand('r2'), 'h'), 1),
      update: await calls(() => updateSession(store, sessionId, { requestId: 'u1', usedUnits: 60, requested: { units: 600 } }, 'hu'), 0),
      debit: await calls(() => debitSession(store, sessionId, { requestId: 'd1', usedUnits: 60 }, 'hd'), 0),
      directDebit: await calls(() => directDebit(store, event('e1'), 'he'), 1),
      // A refund without amount of an active session releases it: one read of the session, not two.
      release: await calls(() => refundSession(store, second, { requestId: 'f1' }, 'hf'), 0),
      // The sweep expiring a session its client forgot (r2's, once its validity is over).
      expiry: await (async () => {
        clock.advanceSeconds(301);
        const forgotten = sessionIdFor('r2');
        const expired = await calls(() => sweepSession(store, forgotten), 0);
        expect((await requireSession(store, forgotten)).state).toBe('expired');
        return expired;
      })(),
      account: await reconciled(store, 'alice'),
    };
  }

  it('one write (account and record in one transaction): reserve 1 call, update 2, debit 2, release 2, direct debit 1, expiry 2', async () => {
    const { account, ...calls } = await callsOfEach(false);
    expect(calls).toEqual({ reserve: 1, update: 2, debit: 2, release: 2, directDebit: 1, expiry: 2 });
    expect(account).toMatchObject({ balance: 994, reserved: 0 });
  });

  // An update or a debit reads the session, then the request's answer (two GetItems, 2 RRU,
  // where one transactional read of both was 4): the quiet path reads the session alone.
  // A reserve or an event first reads its record (a repeat writes nothing; review 1).
  it('two writes (a hot account): reserve 3 calls, update 4, debit 4, release 3, direct debit 3, expiry 3', async () => {
    const { account, ...calls } = await callsOfEach(true);
    expect(calls).toEqual({ reserve: 3, update: 4, debit: 4, release: 3, directDebit: 3, expiry: 3 });
    expect(account).toMatchObject({ balance: 994, reserved: 0 });
  });
});

describe('a transaction that keeps meeting conflicts', () => {
  it('answers temporarily_unavailable; the retry finishes the reserve, and nothing is held twice', async () => {
    const f = faultyStore();
    const store = await f.store;
    await fundedAccount(store, 'alice', 100);
    f.failWith((c) => (c instanceof TransactWriteCommand ? conflict() : null));
    expect(await codeOf(reserve(store, reserveCommand('r1'), 'h'))).toBe('temporarily_unavailable');
    f.heal();
    expect(await requireAccount(store, 'alice')).toMatchObject({ reserved: 20 }); // the hold is recorded on the account
    const opened = await reserve(store, reserveCommand('r1'), 'h');
    expect(opened).toMatchObject({ status: 201, body: { granted: { amount: 20 } } });
    expect(await reconciled(store, 'alice')).toMatchObject({ balance: 100, reserved: 20 });
    expect(await reserve(store, reserveCommand('r1'), 'h')).toEqual(opened);
  });

  it('answers temporarily_unavailable on a step; the retry records the step once', async () => {
    const f = faultyStore();
    const store = await f.store;
    await fundedAccount(store, 'alice', 100);
    const sessionId = (await reserve(store, reserveCommand('r1'), 'h')).body.sessionId as string;
    f.failWith((c) => (c instanceof TransactWriteCommand ? conflict() : null));
    expect(await codeOf(updateSession(store, sessionId, { requestId: 'u1', usedUnits: 60, requested: { units: 60 } }, 'hu'))).toBe('temporarily_unavailable');
    f.heal();
    const updated = await updateSession(store, sessionId, { requestId: 'u1', usedUnits: 60, requested: { units: 60 } }, 'hu');
    expect(updated.body).toMatchObject({ charged: { amount: 2 }, granted: { amount: 2 } });
    expect(await reconciled(store, 'alice')).toMatchObject({ balance: 98, reserved: 2 });
  });
});

describe('a reserve that died after its account write', () => {
  it('is released by the sweep once its validity is over, and a late retry still answers as it would have', async () => {
    const f = faultyStore();
    const store = await f.store;
    await fundedAccount(store, 'alice', 100);
    f.dieAtNextTransaction();
    await expect(reserve(readingBeforeTheRecord(store), reserveCommand('r1'), 'h')).rejects.toThrow('handler died');
    expect(await requireAccount(store, 'alice')).toMatchObject({ reserved: 20 });
    // Not before the grant's validity (300 s) and a grace are over: the reserve may still finish.
    f.clock.advanceSeconds(300);
    expect(await runSweep(store)).toMatchObject({ orphansReleased: 0 });
    expect(await requireAccount(store, 'alice')).toMatchObject({ reserved: 20 });
    f.clock.advanceSeconds(61);
    expect(await runSweep(store)).toMatchObject({ orphansReleased: 1 });
    expect(await reconciled(store, 'alice')).toMatchObject({ balance: 100, reserved: 0 });
    // The client retries at last: the session it was granted, opened then and expired since.
    const late = await reserve(store, reserveCommand('r1'), 'h');
    expect(late).toMatchObject({ status: 201, body: { state: 'active', granted: { units: 600, amount: 20 }, validUntil: '2026-01-01T00:05:00.000Z' } });
    const expired = await requireSession(store, sessionIdFor('r1'));
    expect(expired).toMatchObject({ state: 'expired', seq: 2 });
    // Another retransmission, later still: it replays, and records the expiry no second time
    // (no second session_expired).
    f.clock.advanceSeconds(30);
    expect(await reserve(store, reserveCommand('r1'), 'h')).toEqual(late);
    expect(await requireSession(store, sessionIdFor('r1'))).toEqual(expired);
    expect((await listNotifications(store, 'alice')).notifications.filter((n) => n.type === 'session_expired')).toHaveLength(1);
    expect(await codeOf(updateSession(store, sessionIdFor('r1'), { requestId: 'u1', usedUnits: 1 }, 'hu'))).toBe('session_closed');
    expect(await reconciled(store, 'alice')).toMatchObject({ balance: 100, reserved: 0 });
    expect(await codeOf(reserve(store, reserveCommand('r1', 'alice', 60), 'other'))).toBe('idempotency_conflict');
  });

  it('is released even when another entry of its account fails to be looked at', async () => {
    const f = faultyStore();
    const store = await f.store;
    await fundedAccount(store, 'alice', 100);
    for (const rid of ['r1', 'r2']) {
      f.dieAtNextTransaction();
      await expect(reserve(store, reserveCommand(rid), 'h')).rejects.toThrow('handler died');
    }
    expect(await requireAccount(store, 'alice')).toMatchObject({ reserved: 40 });
    f.clock.advanceSeconds(300 + 61);
    f.failWith((c) => (c instanceof GetCommand && c.input.Key?.pk === `SES#${sessionIdFor('r1')}` ? Object.assign(new Error('throttled'), { name: 'ThrottlingException' }) : null));
    await expect(runSweep(store)).rejects.toThrow('throttled');
    expect(await requireAccount(store, 'alice')).toMatchObject({ reserved: 20 }); // r2's hold went back
    f.heal();
    expect(await runSweep(store)).toMatchObject({ orphansReleased: 1 });
    expect(await reconciled(store, 'alice')).toMatchObject({ reserved: 0, balance: 100 });
  });

  it('is released on time even when a long grant on the same account marked it first', async () => {
    const f = faultyStore();
    const store = await f.store;
    await fundedAccount(store, 'alice', 1000);
    await putService(store, { ...voice, serviceId: 'day-pass', validitySeconds: 86_400 });
    await reserve(store, { ...reserveCommand('long'), serviceId: 'day-pass' }, 'h'); // marks the account first
    f.dieAtNextTransaction();
    await expect(reserve(store, reserveCommand('r1'), 'h')).rejects.toThrow('handler died');
    f.clock.advanceSeconds(300 + 61);
    expect(await runSweep(store)).toMatchObject({ orphansReleased: 1 });
    expect(await requireAccount(store, 'alice')).toMatchObject({ reserved: 20 }); // the day pass's hold only
  });

  it('released while its handler is still writing the session: the session is recorded expired', async () => {
    const f = faultyStore();
    const store = await f.store;
    await fundedAccount(store, 'alice', 100);
    // The handler stalls between its two writes long past the grant's validity; the sweep runs meanwhile.
    let stalled = false;
    f.failWith(async (c) => {
      if (stalled || !(c instanceof TransactWriteCommand)) return null;
      stalled = true;
      f.heal();
      f.clock.advanceSeconds(400);
      expect(await runSweep(store)).toMatchObject({ orphansReleased: 1 });
      return null;
    });
    expect(await reserve(store, reserveCommand('r1'), 'h')).toMatchObject({ status: 201 });
    expect(await requireAccount(store, 'alice')).toMatchObject({ reserved: 0 });
    expect(await requireSession(store, sessionIdFor('r1'))).toMatchObject({ state: 'active' });
    // The session's own sweep finds the release and records it as the expiry.
    expect(await runSweep(store)).toMatchObject({ expired: 1 });
    expect(await requireSession(store, sessionIdFor('r1'))).toMatchObject({ state: 'expired' });
    expect(await reconciled(store, 'alice')).toMatchObject({ balance: 100, reserved: 0 });
  });

  it('a late duplicate of a finished session that died holding is voided by the sweep', async () => {
    const f = faultyStore();
    const store = await f.store;
    await fundedAccount(store, 'alice', 100);
    const first = await reserve(store, reserveCommand('r1'), 'h');
    await debitSession(store, first.body.sessionId as string, { requestId: 'd1', usedUnits: 60 }, 'hd');
    await directDebit(store, event('e1'), 'he'); // carries away the session's finished entry
    f.dieAtNextTransaction();
    await expect(reserve(readingBeforeTheRecord(store), reserveCommand('r1'), 'h')).rejects.toThrow('handler died');
    expect(await requireAccount(store, 'alice')).toMatchObject({ reserved: 20 });
    f.clock.advanceSeconds(3600);
    await runSweep(store);
    expect(await reconciled(store, 'alice')).toMatchObject({ balance: 96, reserved: 0 });
    expect(await reserve(store, reserveCommand('r1'), 'h')).toEqual(first);
  });
});

describe('a step that died after its account write', () => {
  it('rolled forward by the next request, it is answered as it would have been itself, Final-Unit-Indication included', async () => {
    const f = faultyStore();
    const store = await f.store;
    await fundedAccount(store, 'alice', 25);
    const sessionId = (await reserve(store, reserveCommand('r1'), 'h')).body.sessionId as string;
    // 60 s used (2) and 40 minutes asked for: 5 available and 18 still held pay for 11 minutes.
    const short = { requestId: 'u1', usedUnits: 60, requested: { units: 2400 } };
    f.dieAtNextTransaction();
    await expect(updateSession(store, sessionId, short, 'hu1')).rejects.toThrow('handler died');
    // The next report finds u1 on the account only, and records it before its own.
    expect((await updateSession(store, sessionId, { requestId: 'u2', usedUnits: 0 }, 'hu2')).status).toBe(200);
    expect(await updateSession(store, sessionId, short, 'hu1')).toEqual({
      status: 200,
      body: expect.objectContaining({ granted: { units: 660, amount: 22 }, finalUnit: { action: 'terminate' } }),
    });
  });
});

describe('a direct debit that died after its account write', () => {
  it('is recorded by the sweep when nobody retries it; a retry then answers the original', async () => {
    const f = faultyStore();
    const store = await f.store;
    await fundedAccount(store, 'alice', 100);
    f.dieAtNextTransaction();
    await expect(directDebit(store, event('e1'), 'he')).rejects.toThrow('handler died');
    f.clock.advanceSeconds(301);
    await runSweep(store);
    expect(await reconciled(store, 'alice')).toMatchObject({ balance: 98 });
    const account = await requireAccount(store, 'alice');
    expect(account.ops['evt:e1']).toBeUndefined();
    expect(await directDebit(store, event('e1'), 'he')).toEqual({ status: 201, body: { charged: { units: 60, amount: 2 }, chargedAccountId: 'alice' } });
    expect(await reconciled(store, 'alice')).toMatchObject({ balance: 98 });
  });

  it('a duplicate debit stranded on the account (its request already recorded) is given back by the sweep', async () => {
    const f = faultyStore();
    const store = await f.store;
    await fundedAccount(store, 'alice', 100);
    await directDebit(store, event('e1'), 'he');
    await directDebit(store, event('e2'), 'he2'); // carries away e1's entry
    f.dieAtNextTransaction();
    await expect(directDebit(readingBeforeTheRecord(store), event('e1'), 'he')).rejects.toThrow('handler died'); // a late duplicate, charged again
    expect(await requireAccount(store, 'alice')).toMatchObject({ balance: 94 });
    f.clock.advanceSeconds(301);
    await runSweep(store);
    expect(await reconciled(store, 'alice')).toMatchObject({ balance: 96 });
  });
});

describe('accounts in the due index', () => {
  it('leave it once nothing is left on their ops, and come back with the next operation', async () => {
    const clock = testClock();
    const store = await testStore({ now: clock.now });
    await fundedAccount(store, 'alice', 100);
    const dueOf = async () => (await store.db.send(new GetCommand({ TableName: store.tableName, Key: key.account('alice'), ConsistentRead: true }))).Item?.dueAt;
    const { body } = await reserve(store, reserveCommand('r1'), 'h');
    expect(await dueOf()).toBe('2026-01-01T00:05:00.000Z'); // a revisit away (validity + grace would be 06:00)
    await debitSession(store, body.sessionId as string, { requestId: 'd1', usedUnits: 60 }, 'hd');
    await directDebit(store, event('e1'), 'he'); // the same mark: the index is not written again
    expect(await dueOf()).toBe('2026-01-01T00:05:00.000Z');
    clock.advanceSeconds(360);
    await runSweep(store);
    const account = await reconciled(store, 'alice');
    expect(account.ops).toEqual({});
    expect(await dueOf()).toBeUndefined();
    await directDebit(store, event('e2'), 'he2');
    expect(await dueOf()).toBe('2026-01-01T00:11:00.000Z');
  });
});

describe('removals of finished entries', () => {
  it('never take a newer entry under the same id (a late duplicate that died holding)', async () => {
    const store = await testStore({ twoWriteSteps: true });
    await fundedAccount(store, 'alice', 100);
    const first = await reserve(store, reserveCommand('r1'), 'h');
    await debitSession(store, first.body.sessionId as string, { requestId: 'd1', usedUnits: 60 }, 'hd'); // queued for removal
    // Another process removes it (the sweep, say); a late duplicate then takes a new hold.
    const sessionId = first.body.sessionId as string;
    await store.db.send(new (await import('@aws-sdk/lib-dynamodb')).UpdateCommand({
      TableName: store.tableName, Key: key.account('alice'), UpdateExpression: 'REMOVE ops.#op', ExpressionAttributeNames: { '#op': sessionId },
    }));
    let died = false;
    const late = readingBeforeTheRecord(store);
    const dying: Store = { ...late, db: { send: (c: any) => (!died && c instanceof TransactWriteCommand ? ((died = true), Promise.reject(new Error('died'))) : late.db.send(c)) } };
    await expect(reserve(dying, reserveCommand('r1'), 'h')).rejects.toThrow('died');
    // The queued removal is stale: this write drops it and goes through, the new hold stays.
    await directDebit(store, event('e1'), 'he');
    expect((await requireAccount(store, 'alice')).ops[sessionId]).toMatchObject({ seq: 1, amt: 20 });
    expect(await reserve(store, reserveCommand('r1'), 'h')).toEqual(first); // ...and is voided by the retry
    expect(await reconciled(store, 'alice')).toMatchObject({ balance: 96, reserved: 0 });
  });
});

describe('the backstop', () => {
  it('an account write that comes back with more than 64 finished entries asks the sweep, which removes them; the charge itself finishes nothing', async () => {
    const clock = testClock();
    const store = await testStore({ now: clock.now, twoWriteSteps: true });
    await fundedAccount(store, 'alice', 100);
    // 70 finished event charges whose processes never wrote to alice again: recorded, but
    // still on the account (their request records carry the same nonce).
    const old = new Date(clock.now().getTime() - 10 * 60_000).toISOString();
    for (let i = 0; i < 70; i++) {
      const rid = `gone-${i}`;
      await store.db.send(new PutCommand({ TableName: store.tableName, Item: { ...key.request(rid), requestId: rid, h: 'h', n: `n${i}`, kind: 'debit', accountId: 'alice', at: old } }));
      await store.db.send(new UpdateCommand({
        TableName: store.tableName, Key: key.account('alice'), UpdateExpression: 'SET ops.#op = :e', ExpressionAttributeNames: { '#op': `evt:${rid}` },
        ExpressionAttributeValues: { ':e': { seq: 1, amt: 0, gu: 0, u: 0, chg: 0, rid, h: 'h', n: `n${i}`, at: old, done: 'charged' } },
      }));
    }
    const calls = countingDb(store.db);
    await directDebit({ ...store, db: calls }, event('e1'), 'he');
    // The service (the tests cache nothing), the request's record (none: not a repeat), the
    // account write, the record, and one write that brings the due mark to now.
    expect(Object.fromEntries(calls.counts)).toEqual({ Get: 2, Update: 2, TransactWrite: 1 });
    const account = await requireAccount(store, 'alice');
    expect(Object.keys(account.ops).length).toBe(71);
    expect(account).toMatchObject({ dueAt: clock.now().toISOString() });
    // Asked once a minute at most: the next charge does not ask again.
    calls.reset();
    await directDebit({ ...store, db: calls }, event('e2'), 'he');
    expect(calls.counts.get('Update')).toBe(1);
    await runSweep(store);
    expect(Object.keys((await requireAccount(store, 'alice')).ops).filter((id) => id.startsWith('evt:gone-'))).toEqual([]);
    expect(await reconciled(store, 'alice')).toMatchObject({ balance: 96 });
  });
});

describe('top-ups', () => {
  it('a repeat answers the original answer, not the account as it is now', async () => {
    const store = await testStore();
    await fundedAccount(store, 'alice', 100);
    const first = await topUp(store, 'alice', 't1', 10, 'h');
    expect(first.body).toMatchObject({ balance: 110 });
    await directDebit(store, event('e1'), 'he');
    expect(await topUp(store, 'alice', 't1', 10, 'h')).toEqual(first);
  });

  it('a manual recharge whose handler died before keeping its answer: the repeat answers, and nothing moves twice', async () => {
    const f = faultyStore();
    const store = await f.store;
    await fundedAccount(store, 'alice', 1000);
    await putServiceAccount(store, 'alice', 'data', { unit: 'kilobytes', rate: { amountMinor: 100, units: 1024 }, priority: 1, onEmpty: 'deny' });
    // The transaction lands; the write that keeps the answer on the request record does not.
    f.failWith((c) => (c instanceof UpdateCommand && String(c.input.Key?.pk).startsWith('REQ#') ? new Error('handler died') : null));
    await expect(manualRecharge(store, 'alice', 'data', { requestId: 'g1', amountMinor: 200 }, 'h')).rejects.toThrow('handler died');
    f.heal();
    const repeat = await manualRecharge(store, 'alice', 'data', { requestId: 'g1', amountMinor: 200 }, 'h');
    expect(repeat.body).toMatchObject({ recharged: { amount: 200, units: 2048 }, serviceAccount: { balance: 2048 } });
    expect(await manualRecharge(store, 'alice', 'data', { requestId: 'g1', amountMinor: 200 }, 'h')).toEqual(repeat);
    expect(await codeOf(manualRecharge(store, 'alice', 'data', { requestId: 'g1', amountMinor: 300 }, 'h2'))).toBe('idempotency_conflict');
    expect(await reconciled(store, 'alice')).toMatchObject({ balance: 800 });
  });

  it('past the most an account may hold are refused, and write nothing', async () => {
    const store = await testStore();
    await createAccount(store, { accountId: 'a', currency: 'EUR', kind: 'prepaid' });
    await topUp(store, 'a', 't1', MAX_BALANCE_MINOR - 5, 'h');
    expect(await codeOf(topUp(store, 'a', 't2', 6, 'h'))).toBe('validation_failed');
    expect(await codeOf(topUp(store, 'a', 't3', Number.MAX_SAFE_INTEGER, 'h'))).toBe('validation_failed');
    expect(await reconciled(store, 'a')).toMatchObject({ balance: MAX_BALANCE_MINOR - 5 });
    expect((await store.db.send(new GetCommand({ TableName: store.tableName, Key: key.request('t2') }))).Item).toBeUndefined();
    expect((await topUp(store, 'a', 't4', 5, 'h')).body).toMatchObject({ balance: MAX_BALANCE_MINOR });
  });

  it('a refund that would take the balance past the most an account may hold is refused, and writes nothing', async () => {
    const store = await testStore();
    await fundedAccount(store, 'a', 100);
    const { body } = await reserve(store, reserveCommand('r1', 'a'), 'h');
    await debitSession(store, body.sessionId as string, { requestId: 'd1', usedUnits: 600 }, 'h'); // 20 charged
    await topUp(store, 'a', 'fill', MAX_BALANCE_MINOR - 80 - 5, 'h');
    expect(await codeOf(refundSession(store, body.sessionId as string, { requestId: 'f1', amount: 6 }, 'h'))).toBe('validation_failed');
    expect(await reconciled(store, 'a')).toMatchObject({ balance: MAX_BALANCE_MINOR - 5 });
    expect((await requireSession(store, body.sessionId as string)).refundedMinor).toBe(0);
    expect((await refundSession(store, body.sessionId as string, { requestId: 'f2', amount: 5 }, 'h')).body).toMatchObject({ refunded: { amount: 5 } });
  });
});

describe('huge numbers', () => {
  it('rate, grant and charge within safe integers, or are refused', async () => {
    const store = await testStore();
    await putService(store, voice);
    await putService(store, { ...voice, serviceId: 'pricey', unit: 'events', price: { amountMinor: 1000, perUnits: 1 } });
    await putService(store, { ...voice, serviceId: 'dear', unit: 'events', price: { amountMinor: Number.MAX_SAFE_INTEGER, perUnits: 1 } });
    for (const accountId of ['a', 'b']) {
      await createAccount(store, { accountId, currency: 'EUR', kind: 'prepaid' });
      await topUp(store, accountId, `t-${accountId}`, 1_000_000, 'h');
    }
    // Asking for 2^53-1 minor units' worth: granted what the account has.
    const big = await reserve(store, { ...reserveCommand('r1', 'a'), requested: { amount: Number.MAX_SAFE_INTEGER } }, 'h');
    expect(big.body).toMatchObject({ granted: { amount: 1_000_000 }, finalUnit: { action: 'terminate' } });
    await updateSession(store, big.body.sessionId as string, { requestId: 'u1', usedUnits: 10 }, 'hu');
    // A running total past 2^53-1 units is the client's mistake.
    expect(await codeOf(updateSession(store, big.body.sessionId as string, { requestId: 'u2', usedUnits: Number.MAX_SAFE_INTEGER }, 'hu2'))).toBe('validation_failed');
    // An event priced past 2^53-1: no account can pay it.
    expect(await codeOf(directDebit(store, { ...event('e1', 'b'), serviceId: 'dear', units: 2 }, 'he'))).toBe('insufficient_credit');
    expect(await codeOf(reserve(store, { ...reserveCommand('r2', 'b'), serviceId: 'dear', requested: { units: 5 } }, 'h'))).toBe('insufficient_credit');
    // Usage priced past 2^53-1 is charged the hold, no more.
    const pricey = await reserve(store, { ...reserveCommand('r3', 'b'), serviceId: 'pricey', requested: { units: 10 } }, 'h');
    expect(pricey.body).toMatchObject({ granted: { units: 10, amount: 10_000 } });
    const closed = await debitSession(store, pricey.body.sessionId as string, { requestId: 'd3', usedUnits: Number.MAX_SAFE_INTEGER - 100 }, 'hd');
    expect(closed.body).toMatchObject({ charged: { amount: 10_000 }, returned: { amount: 0 } });
    expect(await reconciled(store, 'b')).toMatchObject({ balance: 990_000, reserved: 0 });
    expect(await reconciled(store, 'a')).toMatchObject({ balance: 1_000_000 - 2, reserved: 0 }); // u1 asked for no more
  });
});

describe('requestIds that are names of Object.prototype', () => {
  it('are requests like any other', async () => {
    const store = await testStore();
    await fundedAccount(store, 'alice', 1000);
    const opened = await reserve(store, reserveCommand('__proto__'), 'h');
    expect(opened.status).toBe(201);
    expect(await reserve(store, reserveCommand('__proto__'), 'h')).toEqual(opened);
    const sessionId = opened.body.sessionId as string;
    const updated = await updateSession(store, sessionId, { requestId: 'constructor', usedUnits: 60, requested: { units: 60 } }, 'hc');
    expect(updated.status).toBe(200);
    expect(await updateSession(store, sessionId, { requestId: 'constructor', usedUnits: 60, requested: { units: 60 } }, 'hc')).toEqual(updated);
    expect(await codeOf(updateSession(store, sessionId, { requestId: 'toString', usedUnits: 1 }, 'ht'))).toBe('no error');
    await debitSession(store, sessionId, { requestId: 'hasOwnProperty', usedUnits: 0 }, 'hd');
    expect((await refundSession(store, sessionId, { requestId: 'valueOf', amount: 1 }, 'hr')).status).toBe(200);
    for (const rid of ['__proto__', 'constructor', 'toString', 'hasOwnProperty', 'valueOf']) expect(answerIn((await getSessionItem(store, sessionId, rid))!, rid)).toBeDefined();
    expect(answerIn((await getSessionItem(store, sessionId, 'isPrototypeOf'))!, 'isPrototypeOf')).toBeUndefined();
    expect(answerIn((await getSessionItem(store, sessionId))!, 'isPrototypeOf')).toBeUndefined();
    expect(await reconciled(store, 'alice')).toMatchObject({ reserved: 0 });
  });
});

describe('rating near 2^53-1 (the pure rules under the store)', () => {
  it('prices past 2^53-1 are no price, affordable units stop at 2^53-1, grants fit what is available', async () => {
    const { priceOrNull, unitsAffordable } = await import('../../functions/domain/rating.js');
    const { computeGrant } = await import('../../functions/domain/reservation.js');
    const { rateUsage } = await import('../../functions/domain/session.js');
    const perMinute = { amountMinor: 2, perUnits: 60 };
    expect(priceOrNull(Number.MAX_SAFE_INTEGER, { amountMinor: 5, perUnits: 1 })).toBeNull();
    expect(priceOrNull(Number.MAX_SAFE_INTEGER, perMinute)).toBe(Math.ceil(Number.MAX_SAFE_INTEGER / 60) * 2);
    const units = unitsAffordable(Number.MAX_SAFE_INTEGER, perMinute);
    expect(Number.isSafeInteger(units) && units % 60 === 0 && units > Number.MAX_SAFE_INTEGER - 60).toBe(true);
    expect(computeGrant({ units: Number.MAX_SAFE_INTEGER }, { amountMinor: 5, perUnits: 1 }, 12)).toEqual({ units: 2, amountMinor: 10 });
    expect(computeGrant({ amount: Number.MAX_SAFE_INTEGER }, perMinute, 1e20)).toMatchObject({ units });
    const hold = { seq: 1, holdMinor: 20, grantedUnits: 10, usedUnits: 5, chargedMinor: 0 };
    expect(rateUsage(hold, Number.MAX_SAFE_INTEGER - 10, { amountMinor: 1000, perUnits: 1 })).toMatchObject({ chargeMinor: 20, remainderMinor: 0 });
    expect(() => rateUsage(hold, Number.MAX_SAFE_INTEGER, perMinute)).toThrow(ChargingError);
  });

  it('party shares and splits of amounts whose products pass 2^53-1 stay exact', async () => {
    const { apportion, mostPossibleShares } = await import('../../functions/domain/parties.js');
    const amount = 2 ** 50 + 7;
    const parts = apportion(amount, [50, 30, 20]);
    expect(parts.reduce((a, b) => a + b, 0)).toBe(amount);
    // amount = 100 · w + 31: the 31 splits 15.5 / 9.3 / 6.2, and the cent left goes to the largest remainder.
    const w = (amount - 31) / 100;
    expect(parts).toEqual([50 * w + 16, 30 * w + 9, 20 * w + 6]);
    expect(apportion(101, [50, 30, 20])).toEqual([51, 30, 20]); // as before: the same remainders break the ties
    const shares = mostPossibleShares({ type: 'shares', shares: { a: 33, b: 67 } }, ['a', 'b'], Number.MAX_SAFE_INTEGER);
    expect(shares.every(Number.isSafeInteger)).toBe(true);
    expect(shares[0]! + shares[1]!).toBeGreaterThanOrEqual(Number.MAX_SAFE_INTEGER);
  });
});
