// Seed 001: accounting sessions of several clients under one multi-session id, the
// server-dictated interim interval, the sweep, and the combined rating.
import { describe, expect, it } from 'vitest';
import { captureNotifications, relayUntil, codeOf, interleavingStore, reconciled, testClock, testStore, twoWriteAndOneWriteStores } from '../helpers.js';
import { manualRecharge, putServiceAccount } from '../../functions/store/serviceAccounts.js';
import { countingDb, type Db, type Store } from '../../functions/store/db.js';
import { BatchWriteCommand, GetCommand, QueryCommand, TransactWriteCommand } from '@aws-sdk/lib-dynamodb';
import { dueShardOf, key } from '../../functions/store/table.js';
import { putService } from '../../functions/store/services.js';
import { createAccount, requireAccount, topUp } from '../../functions/store/accounts.js';
import { reserve, updateSession, debitSession, refundSession, requireSession, sessionIdFor } from '../../functions/store/sessions.js';
import { directDebit } from '../../functions/store/debits.js';
import { multiSessionView } from '../../functions/store/multisession.js';
import { sweep } from '../../functions/store/sweep.js';
import { readLedger } from '../../functions/store/ledger.js';
import { listNotifications, relayNotifications } from '../../functions/store/notifications.js';
import { localEventLog, localNotifier, type Notification, type Notifier } from '../../functions/notify.js';


async function seedServices(store: Store) {
  await putService(store, { serviceId: 'ims-voice', unit: 'seconds', price: { amountMinor: 10, perUnits: 60 }, validitySeconds: 300, interimIntervalSeconds: 30, establishedInterimIntervalSeconds: 90, combined: { discounts: [{ withServiceId: 'gprs-data', percent: 20 }] } });
  await putService(store, { serviceId: 'as-content', unit: 'events', price: { amountMinor: 10, perUnits: 1 }, validitySeconds: 300, interimIntervalSeconds: 30 });
  await putService(store, { serviceId: 'gprs-data', unit: 'kilobytes', price: { amountMinor: 1, perUnits: 100 }, validitySeconds: 300, interimIntervalSeconds: 30, establishedInterimIntervalSeconds: 90 });
  await putService(store, { serviceId: 'ps-data', unit: 'kilobytes', price: { amountMinor: 1, perUnits: 100 }, validitySeconds: 300, interimIntervalSeconds: 30, combined: { duplicates: 'gprs-data' } });
  await createAccount(store, { accountId: 'sub', currency: 'EUR', kind: 'prepaid' });
  await topUp(store, 'sub', 'seed', 10_000, 'h');
}

/** The relay's backstop until a run fails (the due index may trail the writes): the failure's message. */
async function relayFailsWith(store: Store, notifier: Notifier): Promise<string | undefined> {
  for (let run = 0; run < 20; run++) {
    const failure = await relayNotifications(store, notifier).then(() => undefined, (error: Error) => error.message);
    if (failure) return failure;
  }
  return undefined;
}

describe('the seed 001 message flow', () => {
  it('S-CSCF START, AS EVENT, GGSN START, S-CSCF UPDATE (30 s → 90 s), STOPs', async () => {
    const clock = testClock();
    const store = await testStore({ now: clock.now });
    const capture = captureNotifications();
    await seedServices(store);
    const gs = 'GS_ID-1';

    // 2-3: S-CSCF START_PP → the server rates, reserves and dictates 30 s.
    const scscf = await reserve(store, { requestId: 'scscf-1', accountId: 'sub', clientId: 'scscf', serviceId: 'ims-voice', requested: { units: 300 }, multiSessionId: gs }, 'h1');
    expect(scscf.body).toMatchObject({ multiSessionId: gs, interimIntervalSeconds: 30, granted: { units: 300, amount: 50 } });
    // 5-6: AS EVENT_PP under the same GS_ID.
    expect((await directDebit(store, { requestId: 'as-1', accountId: 'sub', clientId: 'as', serviceId: 'as-content', units: 1, multiSessionId: gs }, 'h2')).body)
      .toMatchObject({ charged: { amount: 10 } });
    // 14-15: GGSN START_PP.
    const ggsn = await reserve(store, { requestId: 'ggsn-1', accountId: 'sub', clientId: 'ggsn', serviceId: 'gprs-data', requested: { units: 1000 }, multiSessionId: gs, notifyUri: 'http://ggsn.invalid/ccr' }, 'h3');
    expect(ggsn.body).toMatchObject({ interimIntervalSeconds: 30 });
    // 18-19: S-CSCF UPDATE_PP → 90 s from now on; a retransmission is charged once.
    clock.advanceSeconds(20);
    const update = { requestId: 'scscf-2', usedUnits: 20, requested: { units: 300 } };
    const updated = await updateSession(store, scscf.body.sessionId as string, update, 'h4');
    expect(updated.body).toMatchObject({ interimIntervalSeconds: 90, charged: { units: 20, amount: 10 } });
    expect(await updateSession(store, scscf.body.sessionId as string, update, 'h4')).toEqual(updated);

    // The GGSN has not reported for 30 s: the sweep asks it, once; the S-CSCF is not due.
    clock.advanceSeconds(15);
    const first = await sweep(store, { batchSize: 50, maxBatches: 5 });
    expect(first).toMatchObject({ reportsRequested: 1, expired: 0 });
    expect(await relayUntil(store, capture, 1)).toEqual([expect.objectContaining({ type: 'interim_update_requested', sessionId: ggsn.body.sessionId, clientId: 'ggsn', notifyUri: 'http://ggsn.invalid/ccr', multiSessionId: gs })]);
    expect((await sweep(store, { batchSize: 50, maxBatches: 5 })).reportsRequested).toBe(0);
    expect(await relayNotifications(store, capture.notifier)).toBe(0);

    // STOPs: 120 s of voice (20), 500 KB of data (5), plus the AS event (10).
    clock.advanceSeconds(10);
    await debitSession(store, scscf.body.sessionId as string, { requestId: 'scscf-3', usedUnits: 100 }, 'h5');
    expect((await multiSessionView(store, gs)).state).toBe('open');
    await debitSession(store, ggsn.body.sessionId as string, { requestId: 'ggsn-2', usedUnits: 500 }, 'h6');

    // The call is final: voice used together with data gets 20 % off (4 back).
    const multi = await multiSessionView(store, gs);
    expect(multi).toMatchObject({ state: 'final', charged: { amount: 20 + 5 + 10 - 4 } });
    expect(multi.sessions.map((s) => s.clientId).sort()).toEqual(['ggsn', 'scscf']);
    expect(multi.events).toHaveLength(1);
    expect(await reconciled(store, 'sub')).toMatchObject({ balance: 10_000 - 31, reserved: 0 });
    const { entries } = await readLedger(store, 'sub');
    expect(entries.filter((e: any) => e.type === 'adjustment')).toEqual([expect.objectContaining({ amount: 4, sessionId: scscf.body.sessionId })]);
  });

  it('a call with more members than one query page (1 MB) is collated and settled whole (fails before: its session fell off the first page; review 17 of stop 28)', async () => {
    const store = await testStore();
    await seedServices(store);
    const gs = 'GS-BIG';
    const voice = await reserve(store, { requestId: 'big-v', accountId: 'sub', clientId: 'scscf', serviceId: 'ims-voice', requested: { units: 300 }, multiSessionId: gs }, 'h');
    await directDebit(store, { requestId: 'big-data', accountId: 'sub', clientId: 'ggsn', serviceId: 'gprs-data', units: 100, multiSessionId: gs }, 'h');
    // Events members as the event path lists them, large enough that together they pass 1 MB
    // (events sort before sessions); written directly: charging 1,500 events is slow.
    const pad = 'x'.repeat(800);
    const events = Array.from({ length: 1_500 }, (_, i) => ({ ...key.multiSessionEvent(gs, `big-e-${String(i).padStart(4, '0')}`), requestId: `big-e-${i}`, serviceId: 'as-content', clientId: `as-${pad}`, accountId: 'sub', charged: { units: 0, amount: 0 }, at: '2030-01-01T00:00:00.000Z' }));
    for (let i = 0; i < events.length; i += 25) {
      await store.db.send(new BatchWriteCommand({ RequestItems: { [store.tableName]: events.slice(i, i + 25).map((Item) => ({ PutRequest: { Item } })) } }));
    }
    const open = await multiSessionView(store, gs);
    expect(open.state).toBe('open');
    expect(open.sessions.map((m) => m.sessionId)).toEqual([voice.body.sessionId]);
    expect(open.events).toHaveLength(1_501);
    // The close settles with data present: 20 % of the voice's 20 back.
    await debitSession(store, voice.body.sessionId as string, { requestId: 'big-v-end', usedUnits: 120 }, 'h');
    const closed = await multiSessionView(store, gs);
    expect(closed).toMatchObject({ state: 'final', charged: { amount: 20 + 1 - 4 } });
    const { entries } = await readLedger(store, 'sub');
    expect(entries.filter((e: any) => e.type === 'adjustment')).toEqual([expect.objectContaining({ amount: 4, sessionId: voice.body.sessionId })]);
  });

  it('charges traffic reported by two domains once', async () => {
    const store = await testStore();
    await seedServices(store);
    const a = await reserve(store, { requestId: 'd-1', accountId: 'sub', clientId: 'ggsn', serviceId: 'gprs-data', requested: { units: 1000 }, multiSessionId: 'GS-2' }, 'h');
    const b = await reserve(store, { requestId: 'd-2', accountId: 'sub', clientId: 'pgw', serviceId: 'ps-data', requested: { units: 1000 }, multiSessionId: 'GS-2' }, 'h');
    await Promise.all([
      debitSession(store, a.body.sessionId as string, { requestId: 'd-1s', usedUnits: 700 }, 'h'),
      debitSession(store, b.body.sessionId as string, { requestId: 'd-2s', usedUnits: 700 }, 'h'),
    ]);
    expect((await multiSessionView(store, 'GS-2')).charged).toEqual({ amount: 7, currency: 'EUR' });
    expect(await reconciled(store, 'sub')).toMatchObject({ balance: 10_000 - 7 });
  });

  it('a duplicate is charged when the session it duplicates charged nothing (the traffic is charged once, not zero times)', async () => {
    const store = await testStore();
    await seedServices(store);
    const a = await reserve(store, { requestId: 'z-1', accountId: 'sub', clientId: 'ggsn', serviceId: 'gprs-data', requested: { units: 1000 }, multiSessionId: 'GS-Z' }, 'h');
    const b = await reserve(store, { requestId: 'z-2', accountId: 'sub', clientId: 'pgw', serviceId: 'ps-data', requested: { units: 1000 }, multiSessionId: 'GS-Z' }, 'h');
    await refundSession(store, a.body.sessionId as string, { requestId: 'z-1r' }, 'h'); // released unused
    await debitSession(store, b.body.sessionId as string, { requestId: 'z-2s', usedUnits: 700 }, 'h');
    expect((await multiSessionView(store, 'GS-Z')).charged).toEqual({ amount: 7, currency: 'EUR' });
    expect(await reconciled(store, 'sub')).toMatchObject({ balance: 10_000 - 7, reserved: 0 });
  });

  it('a discount "with data" is earned only by data that charged something, a data event included', async () => {
    const store = await testStore();
    await seedServices(store);
    // Data opened and released unused: voice pays in full.
    const v = await reserve(store, { requestId: 'x-v', accountId: 'sub', clientId: 'scscf', serviceId: 'ims-voice', requested: { units: 300 }, multiSessionId: 'GS-X' }, 'h');
    const d = await reserve(store, { requestId: 'x-d', accountId: 'sub', clientId: 'ggsn', serviceId: 'gprs-data', requested: { units: 1000 }, multiSessionId: 'GS-X' }, 'h');
    await refundSession(store, d.body.sessionId as string, { requestId: 'x-dr' }, 'h');
    await debitSession(store, v.body.sessionId as string, { requestId: 'x-vs', usedUnits: 120 }, 'h'); // 20
    expect((await multiSessionView(store, 'GS-X')).charged).toEqual({ amount: 20, currency: 'EUR' });
    // Data charged as an event: voice gets its 20 % (4 back); nothing is given back on the event.
    await directDebit(store, { requestId: 'y-e', accountId: 'sub', clientId: 'ggsn', serviceId: 'gprs-data', units: 500, multiSessionId: 'GS-Y' }, 'h');
    const w = await reserve(store, { requestId: 'y-v', accountId: 'sub', clientId: 'scscf', serviceId: 'ims-voice', requested: { units: 300 }, multiSessionId: 'GS-Y' }, 'h');
    await debitSession(store, w.body.sessionId as string, { requestId: 'y-vs', usedUnits: 120 }, 'h');
    expect((await multiSessionView(store, 'GS-Y')).charged).toEqual({ amount: 20 - 4 + 5, currency: 'EUR' });
    expect(await reconciled(store, 'sub')).toMatchObject({ balance: 10_000 - 20 - 21, reserved: 0 });
  });

  it('clients joining the multi-session a first session was handed keep that session in it, and its discount (fails before: it left, charged in full)', async () => {
    const store = await testStore();
    await seedServices(store);
    // Voice opens without a multiSessionId: its answer names its own id as the multi-session.
    const v = await reserve(store, { requestId: 'f-v', accountId: 'sub', clientId: 'scscf', serviceId: 'ims-voice', requested: { units: 300 } }, 'h');
    const founded = v.body.multiSessionId as string;
    expect(founded).toBe(v.body.sessionId);
    // Data and an event join by that id; voice closes first, data last.
    const d = await reserve(store, { requestId: 'f-d', accountId: 'sub', clientId: 'ggsn', serviceId: 'gprs-data', requested: { units: 1000 }, multiSessionId: founded }, 'h');
    await directDebit(store, { requestId: 'f-e', accountId: 'sub', clientId: 'as', serviceId: 'as-content', units: 1, multiSessionId: founded }, 'h');
    await debitSession(store, v.body.sessionId as string, { requestId: 'f-vs', usedUnits: 120 }, 'h'); // 20
    const view = await multiSessionView(store, founded);
    expect(view.sessions.map((s) => s.sessionId).sort()).toEqual([v.body.sessionId, d.body.sessionId].sort());
    expect(view.events.map((e) => e.requestId)).toEqual(['f-e']);
    expect(view.charged).toEqual({ amount: 20 + 10, currency: 'EUR' });
    await debitSession(store, d.body.sessionId as string, { requestId: 'f-ds', usedUnits: 500 }, 'h'); // 5
    // Voice with data: 20 % of its 20 back, given when the last member closed.
    expect((await multiSessionView(store, founded)).charged).toEqual({ amount: 20 - 4 + 10 + 5, currency: 'EUR' });
    expect(await reconciled(store, 'sub')).toMatchObject({ balance: 10_000 - 31, reserved: 0 });
  });

  it('the founder of a joined multi-session closing last settles it; a member of another multi-session is no multi-session of its own', async () => {
    const store = await testStore();
    await seedServices(store);
    const v = await reserve(store, { requestId: 'g-v', accountId: 'sub', clientId: 'scscf', serviceId: 'ims-voice', requested: { units: 300 } }, 'h');
    // A join refused writes nothing: the founder is not listed, nor marked (fails before: it was).
    expect(await codeOf(reserve(store, { requestId: 'g-x', accountId: 'ghost', clientId: 'c', serviceId: 'gprs-data', requested: { units: 100 }, multiSessionId: v.body.sessionId as string }, 'h'))).toBe('not_found');
    expect(await codeOf(directDebit(store, { requestId: 'g-y', accountId: 'ghost', clientId: 'c', serviceId: 'as-content', units: 1, multiSessionId: v.body.sessionId as string }, 'h'))).toBe('not_found');
    expect((await requireSession(store, v.body.sessionId as string)).membersJoined).toBeUndefined();
    const d = await reserve(store, { requestId: 'g-d', accountId: 'sub', clientId: 'ggsn', serviceId: 'gprs-data', requested: { units: 1000 }, multiSessionId: v.body.sessionId as string }, 'h');
    expect((await requireSession(store, v.body.sessionId as string)).membersJoined).toBe(true);
    await debitSession(store, d.body.sessionId as string, { requestId: 'g-ds', usedUnits: 500 }, 'h'); // 5
    await debitSession(store, v.body.sessionId as string, { requestId: 'g-vs', usedUnits: 120 }, 'h'); // 20, then 4 back
    expect(await reconciled(store, 'sub')).toMatchObject({ balance: 10_000 - 21, reserved: 0 });
    // A session that joined one is not a multi-session by its own id.
    expect(await codeOf(multiSessionView(store, d.body.sessionId as string))).toBe('not_found');
    const m = await reserve(store, { requestId: 'g-m', accountId: 'sub', clientId: 'c', serviceId: 'ims-voice', requested: { units: 60 }, multiSessionId: 'call-g' }, 'h');
    expect(await codeOf(multiSessionView(store, m.body.sessionId as string))).toBe('not_found');
    expect((await multiSessionView(store, 'call-g')).sessions.map((s) => s.sessionId)).toEqual([m.body.sessionId]);
  });

  it('a first join that races the founder\'s own close still gets the founder its discount, by the sweep (fails before: never given)', async () => {
    const clock = testClock();
    // The founder's close has read its session (no member yet) when a client joins it, and closes, first.
    const { store, runBefore } = await interleavingStore((command) => command instanceof TransactWriteCommand && JSON.stringify(command.input).includes('"r-vs"'), { now: clock.now });
    await seedServices(store);
    const founder = (await reserve(store, { requestId: 'r-v', accountId: 'sub', clientId: 'scscf', serviceId: 'ims-voice', requested: { units: 300 } }, 'h')).body.sessionId as string;
    runBefore(async () => {
      const d = await reserve(store, { requestId: 'r-d', accountId: 'sub', clientId: 'ggsn', serviceId: 'gprs-data', requested: { units: 1000 }, multiSessionId: founder }, 'h');
      await debitSession(store, d.body.sessionId as string, { requestId: 'r-ds', usedUnits: 500 }, 'h'); // 5
    });
    await debitSession(store, founder, { requestId: 'r-vs', usedUnits: 120 }, 'h'); // 20
    // The same process writes the account again (the founder's entry goes with it).
    await reserve(store, { requestId: 'r-later', accountId: 'sub', clientId: 'x', serviceId: 'gprs-data', requested: { units: 100 } }, 'h');
    clock.advanceSeconds(3600);
    await sweep(store, { batchSize: 100, maxBatches: 10 });
    clock.advanceSeconds(86_400);
    await sweep(store, { batchSize: 100, maxBatches: 10 });
    expect(await reconciled(store, 'sub')).toMatchObject({ balance: 10_000 - 25 + 4, reserved: 0 });
  });

  it('a refused founder stays in its multi-session when a client joins it (fails before: the joiner took its place)', async () => {
    const store = await testStore();
    await seedServices(store);
    await createAccount(store, { accountId: 'broke', currency: 'EUR', kind: 'prepaid' });
    const refused = await reserve(store, { requestId: 'b-v', accountId: 'broke', clientId: 'scscf', serviceId: 'ims-voice', requested: { units: 60 } }, 'h').catch((error) => error);
    expect(refused.code).toBe('insufficient_credit');
    const founder = refused.extra.sessionId as string; // kept as a session in state refused
    const d = await reserve(store, { requestId: 'b-d', accountId: 'sub', clientId: 'ggsn', serviceId: 'gprs-data', requested: { units: 100 }, multiSessionId: founder }, 'h');
    expect((await multiSessionView(store, founder)).sessions.map((s) => s.sessionId).sort()).toEqual([founder, d.body.sessionId].sort());
  });

  it('the combined rating combines one account\'s charges: another account naming the id earns nothing (fails before: discount and duplicate give-back)', async () => {
    const store = await testStore();
    await seedServices(store);
    await createAccount(store, { accountId: 'other', currency: 'EUR', kind: 'prepaid' });
    await topUp(store, 'other', 'seed-o', 10_000, 'h');
    const data = await reserve(store, { requestId: 'o-d', accountId: 'sub', clientId: 'ggsn', serviceId: 'gprs-data', requested: { units: 1000 }, multiSessionId: 'GS-O' }, 'h');
    const voice = await reserve(store, { requestId: 'o-v', accountId: 'other', clientId: 'scscf', serviceId: 'ims-voice', requested: { units: 300 }, multiSessionId: 'GS-O' }, 'h');
    const dup = await reserve(store, { requestId: 'o-p', accountId: 'other', clientId: 'pgw', serviceId: 'ps-data', requested: { units: 1000 }, multiSessionId: 'GS-O' }, 'h');
    await debitSession(store, data.body.sessionId as string, { requestId: 'o-ds', usedUnits: 700 }, 'h'); // 7
    await debitSession(store, voice.body.sessionId as string, { requestId: 'o-vs', usedUnits: 120 }, 'h'); // 20
    await debitSession(store, dup.body.sessionId as string, { requestId: 'o-ps', usedUnits: 700 }, 'h'); // 7
    expect(await reconciled(store, 'sub')).toMatchObject({ balance: 10_000 - 7 });
    expect(await reconciled(store, 'other')).toMatchObject({ balance: 10_000 - 27, reserved: 0 });
  });

  it('a client\'s requestId never stands for the system\'s settlement', async () => {
    const store = await testStore();
    await seedServices(store);
    const a = await reserve(store, { requestId: 'd-1', accountId: 'sub', clientId: 'ggsn', serviceId: 'gprs-data', requested: { units: 1000 }, multiSessionId: 'GS-3' }, 'h');
    const b = await reserve(store, { requestId: 'd-2', accountId: 'sub', clientId: 'pgw', serviceId: 'ps-data', requested: { units: 1000 }, multiSessionId: 'GS-3' }, 'h');
    await debitSession(store, b.body.sessionId as string, { requestId: 'd-2s', usedUnits: 700 }, 'h');
    await refundSession(store, b.body.sessionId as string, { requestId: 'settle:GS-3', amount: 1 }, 'h');
    await debitSession(store, a.body.sessionId as string, { requestId: 'd-1s', usedUnits: 700 }, 'h');
    // The traffic both domains reported is charged once: 7, whatever the client refunded.
    expect(await reconciled(store, 'sub')).toMatchObject({ balance: 10_000 - 7 });
  });

  it('a settlement that failed after the last close is owed until the sweep runs it; the retry of the close only replays', async () => {
    const clock = testClock();
    let failSettlement = false;
    const store = await testStore({ now: clock.now, db: (inner: Db): Db => ({
      send: (command) => {
        const settling = command instanceof QueryCommand && String(command.input.ExpressionAttributeValues?.[':pk']).startsWith('MS#');
        if (!failSettlement || !settling) return inner.send(command);
        failSettlement = false;
        return Promise.reject(Object.assign(new Error('Rate of requests exceeds the allowed throughput'), { name: 'ThrottlingException', $metadata: {} }));
      },
    }) });
    await seedServices(store);
    const a = (await reserve(store, { requestId: 'o-1', accountId: 'sub', clientId: 'ggsn', serviceId: 'gprs-data', requested: { units: 1000 }, multiSessionId: 'GS-4' }, 'h')).body.sessionId as string;
    const b = (await reserve(store, { requestId: 'o-2', accountId: 'sub', clientId: 'pgw', serviceId: 'ps-data', requested: { units: 1000 }, multiSessionId: 'GS-4' }, 'h')).body.sessionId as string;
    await debitSession(store, a, { requestId: 'o-1s', usedUnits: 700 }, 'h');
    // The last close is recorded, then settling it fails; its retry finds the close done.
    failSettlement = true;
    await expect(debitSession(store, b, { requestId: 'o-2s', usedUnits: 700 }, 'h')).rejects.toThrow('exceeds');
    const replayed = await debitSession(store, b, { requestId: 'o-2s', usedUnits: 700 }, 'h');
    expect(replayed.body).toMatchObject({ state: 'closed', charged: { amount: 7 } });
    expect((await multiSessionView(store, 'GS-4')).charged).toEqual({ amount: 14, currency: 'EUR' });
    // The closed session's entry on the account still says a settlement may be owed: the
    // sweep's visit of the account settles it before removing the entry, and only once.
    clock.advanceSeconds(6 * 60);
    await sweep(store, { batchSize: 10, maxBatches: 2 });
    await sweep(store, { batchSize: 10, maxBatches: 2 });
    expect((await multiSessionView(store, 'GS-4')).charged).toEqual({ amount: 7, currency: 'EUR' });
    expect(await reconciled(store, 'sub')).toMatchObject({ balance: 10_000 - 7, reserved: 0 });
    expect(Object.keys((await requireAccount(store, 'sub')).ops ?? {})).toEqual([]);
  });

  it('running the settlement again (the sweep does) gives nothing twice: duplicates never get back more than the service they duplicate charged', async () => {
    // Found by review: each run computed the adjustments on what members charged net of the
    // first run's give-back, so a second duplicate was paid the allowance the first had used.
    const clock = testClock();
    const store = await testStore({ now: clock.now });
    await seedServices(store);
    const open = (requestId: string, serviceId: string) =>
      reserve(store, { requestId, accountId: 'sub', clientId: requestId, serviceId, requested: { units: 1000 }, multiSessionId: 'GS-D' }, 'h');
    const ids = [await open('g', 'gprs-data'), await open('p1', 'ps-data'), await open('p2', 'ps-data')].map((a) => a.body.sessionId as string);
    // The same 1000 KB reported by three clients, 10 each; the last close settles.
    for (const [i, id] of ids.entries()) await debitSession(store, id, { requestId: `end-${i}`, usedUnits: 1000 }, 'h');
    expect((await multiSessionView(store, 'GS-D')).charged).toEqual({ amount: 20, currency: 'EUR' });
    clock.advanceSeconds(600);
    await sweep(store, { batchSize: 50, maxBatches: 5 });
    await sweep(store, { batchSize: 50, maxBatches: 5 });
    const refunded = await Promise.all(ids.map(async (id) => (await requireSession(store, id)).refundedMinor));
    expect(refunded.reduce((a, b) => a + b, 0)).toBe(10);
    expect((await multiSessionView(store, 'GS-D')).charged).toEqual({ amount: 20, currency: 'EUR' });
    expect(await reconciled(store, 'sub')).toMatchObject({ balance: 10_000 - 20, reserved: 0 });
  });

  it('a duplicate joining a multi-session that settled gets back only what the earlier duplicates left: the traffic is charged once (fails before: zero times; review 11 of stop 27)', async () => {
    const store = await testStore();
    await seedServices(store);
    const open = (requestId: string, serviceId: string) =>
      reserve(store, { requestId, accountId: 'sub', clientId: requestId, serviceId, requested: { units: 1000 }, multiSessionId: 'GS-L' }, 'h');
    // The late session's id sorts before the first duplicate's (the members' order).
    let i = 0;
    while (sessionIdFor(`late-${i}`) > sessionIdFor(`p1-${i}`)) i++;
    const g = (await open(`g-${i}`, 'gprs-data')).body.sessionId as string;
    const p1 = (await open(`p1-${i}`, 'ps-data')).body.sessionId as string;
    await debitSession(store, g, { requestId: 'g-end', usedUnits: 1000 }, 'h'); // 10
    await debitSession(store, p1, { requestId: 'p1-end', usedUnits: 1000 }, 'h'); // 10, given back
    expect((await multiSessionView(store, 'GS-L'))).toMatchObject({ state: 'final', charged: { amount: 10 } });
    const late = (await open(`late-${i}`, 'ps-data')).body.sessionId as string;
    await debitSession(store, late, { requestId: 'late-end', usedUnits: 1000 }, 'h'); // 10, the same traffic reported late
    const refunded = await Promise.all([g, p1, late].map(async (id) => (await requireSession(store, id)).refundedMinor));
    expect(refunded).toEqual([0, 10, 0]);
    expect(await reconciled(store, 'sub')).toMatchObject({ balance: 10_000 - 20, reserved: 0 });
  });

  it('a refund that lands between the settlement\'s read and its give-back leaves the discount owed, and the sweep gives it on what is charged by then', async () => {
    const clock = testClock();
    const { store, runBefore, pending } = await interleavingStore((command) =>
      command instanceof TransactWriteCommand && (command.input.TransactItems ?? []).some((i) => String(i.Put?.Item?.type ?? '') === 'adjustment'), { now: clock.now });
    await seedServices(store);
    const voice = (await reserve(store, { requestId: 'v', accountId: 'sub', clientId: 'scscf', serviceId: 'ims-voice', requested: { units: 600 }, multiSessionId: 'GS-R' }, 'h')).body.sessionId as string;
    const data = (await reserve(store, { requestId: 'd', accountId: 'sub', clientId: 'ggsn', serviceId: 'gprs-data', requested: { units: 1000 }, multiSessionId: 'GS-R' }, 'h')).body.sessionId as string;
    await debitSession(store, voice, { requestId: 'v-end', usedUnits: 600 }, 'h'); // 100
    // The voice session's refund of 50 lands after the settlement read it at 100 (20 % off: 20).
    runBefore(() => refundSession(store, voice, { requestId: 'goodwill', amount: 50 }, 'h'));
    await debitSession(store, data, { requestId: 'd-end', usedUnits: 1000 }, 'h'); // 10; the last close
    expect(pending()).toBe(false);
    // The 20 computed on 100 is not given on the 50 left (before, it was: 70 in all, and a
    // refund landing first could also lose the discount for good); it stays owed.
    expect((await requireSession(store, voice)).refundedMinor).toBe(50);
    clock.advanceSeconds(600);
    await sweep(store, { batchSize: 50, maxBatches: 5 });
    // 20 % off the 50 the voice session still charges: 10, once.
    expect((await requireSession(store, voice)).refundedMinor).toBe(60);
    await sweep(store, { batchSize: 50, maxBatches: 5 });
    expect((await requireSession(store, voice)).refundedMinor).toBe(60);
    expect(await reconciled(store, 'sub')).toMatchObject({ balance: 10_000 - 100 - 10 + 60, reserved: 0 });
  });

  it('members charged in a service account\'s units take no part in the combined rating: units are never compared with money', async () => {
    const store = await testStore();
    await seedServices(store);
    await putServiceAccount(store, 'sub', 'ps-data', { unit: 'kilobytes', rate: { amountMinor: 100, units: 1024 }, priority: 1, onEmpty: 'deny' });
    await manualRecharge(store, 'sub', 'ps-data', { requestId: 'buy', amountMinor: 200 }, 'h'); // 2048 KB
    const g = (await reserve(store, { requestId: 'g', accountId: 'sub', clientId: 'ggsn', serviceId: 'gprs-data', requested: { units: 1000 }, multiSessionId: 'GS-U' }, 'h')).body.sessionId as string;
    const p = await reserve(store, { requestId: 'p', accountId: 'sub', clientId: 'pgw', serviceId: 'ps-data', requested: { units: 1000 }, multiSessionId: 'GS-U' }, 'h');
    expect(p.body).toMatchObject({ serviceAccount: 'ps-data' });
    await debitSession(store, g, { requestId: 'g-end', usedUnits: 1000 }, 'h');
    await debitSession(store, p.body.sessionId as string, { requestId: 'p-end', usedUnits: 1000 }, 'h');
    // Before, the duplicate got back 10 KB for the 10 cents gprs-data charged.
    expect((await requireSession(store, p.body.sessionId as string)).refundedMinor).toBe(0);
    expect((await multiSessionView(store, 'GS-U')).charged).toEqual({ amount: 10, currency: 'EUR', serviceAccountUnits: { 'ps-data': 1000 } });
  });
});

describe('the interim sweep', () => {
  it('an expiry finished by a later request settles its multi-session like the sweep would', async () => {
    const clock = testClock();
    const { twoWrites: store, failNextTransaction } = await twoWriteAndOneWriteStores({ now: clock.now });
    await seedServices(store);
    const a = (await reserve(store, { requestId: 'g-1', accountId: 'sub', clientId: 'ggsn', serviceId: 'gprs-data', requested: { units: 1000 }, multiSessionId: 'GS-3' }, 'h')).body.sessionId as string;
    const b = (await reserve(store, { requestId: 'g-2', accountId: 'sub', clientId: 'pgw', serviceId: 'ps-data', requested: { units: 1000 }, multiSessionId: 'GS-3' }, 'h')).body.sessionId as string;
    await updateSession(store, b, { requestId: 'g-2u', usedUnits: 700 }, 'h');
    await debitSession(store, a, { requestId: 'g-1s', usedUnits: 700 }, 'h');
    // The PGW goes silent; the sweep expiring its session dies between its two writes.
    clock.advanceSeconds(301);
    failNextTransaction(Object.assign(new Error('the sweep died'), { name: 'HandlerDied' }));
    await expect(sweep(store, { batchSize: 10, maxBatches: 2 })).rejects.toThrow('the sweep died');
    // A late update finds the expiry on the account, finishes its record, and with it the
    // multi-session's last session: the traffic both domains reported is charged once.
    expect(await codeOf(updateSession(store, b, { requestId: 'g-2v', usedUnits: 0 }, 'h'))).toBe('session_closed');
    expect((await requireSession(store, b)).state).toBe('expired');
    expect((await multiSessionView(store, 'GS-3')).charged).toEqual({ amount: 7, currency: 'EUR' });
    expect(await reconciled(store, 'sub')).toMatchObject({ balance: 10_000 - 7, reserved: 0 });
  });

  it('expires silent sessions and hands their reservations back; late updates are refused', async () => {
    const clock = testClock();
    const store = await testStore({ now: clock.now });
    const capture = captureNotifications();
    await seedServices(store);
    const ids = await Promise.all(Array.from({ length: 12 }, (_, i) =>
      reserve(store, { requestId: `s-${i}`, accountId: 'sub', clientId: 'c', serviceId: 'ims-voice', requested: { units: 60 } }, 'h').then((a) => a.body.sessionId as string)));
    expect((await requireAccount(store, 'sub')).reserved).toBe(120);
    clock.advanceSeconds(301);
    const summary = await sweep(store, { batchSize: 5, maxBatches: 10 });
    expect(summary).toMatchObject({ expired: 12, backlog: 0 });
    expect((await relayUntil(store, capture, 12)).filter((n) => n.type === 'session_expired')).toHaveLength(12);
    expect((await requireSession(store, ids[0]!)).state).toBe('expired');
    await expect(updateSession(store, ids[0]!, { requestId: 'late', usedUnits: 10 }, 'h')).rejects.toMatchObject({ code: 'session_closed' });
    expect(await reconciled(store, 'sub')).toMatchObject({ balance: 10_000, reserved: 0 });
  });

  it('a session_expired is never lost: written with the expiry, relayed once, also after the bus was down', async () => {
    const clock = testClock();
    const store = await testStore({ now: clock.now });
    await seedServices(store);
    const [a, b] = await Promise.all(['n-1', 'n-2'].map((rid) =>
      reserve(store, { requestId: rid, accountId: 'sub', clientId: 'c', serviceId: 'ims-voice', requested: { units: 60 }, notifyUri: 'http://c.invalid/ccr' }, 'h').then((r) => r.body.sessionId as string)));
    clock.advanceSeconds(301);
    expect(await sweep(store, { batchSize: 10, maxBatches: 2 })).toMatchObject({ expired: 2 });
    expect((await requireSession(store, a!)).state).toBe('expired');
    expect((await requireSession(store, b!)).state).toBe('expired');
    // The event bus is down for the relay's run: it fails (the stream or the schedule runs it
    // again), and the notifications wait in the outbox.
    const down = { publish: async () => { throw new Error('event bus unavailable'); } };
    expect(await relayFailsWith(store, down)).toBe('event bus unavailable');
    // The next sweep has nothing left to expire; the relay publishes both, once.
    const capture = captureNotifications();
    expect(await sweep(store, { batchSize: 10, maxBatches: 2 })).toMatchObject({ expired: 0 });
    const published = await relayUntil(store, capture, 2);
    expect(published.map((n) => n.sessionId).sort()).toEqual([a, b].sort());
    expect(published[0]).toMatchObject({ type: 'session_expired', accountId: 'sub', clientId: 'c', notifyUri: 'http://c.invalid/ccr', returned: { amount: 10 } });
    // The owner reads them too.
    expect((await listNotifications(store, 'sub')).notifications.filter((n) => n.type === 'session_expired')).toHaveLength(2);
  });

  it('a request for a report is never lost: written with the mark that it was made, relayed once', async () => {
    const clock = testClock();
    const store = await testStore({ now: clock.now });
    await seedServices(store);
    const id = (await reserve(store, { requestId: 'q-1', accountId: 'sub', clientId: 'ggsn', serviceId: 'gprs-data', requested: { units: 1000 }, notifyUri: 'http://ggsn.invalid/ccr' }, 'h')).body.sessionId as string;
    clock.advanceSeconds(31);
    expect(await sweep(store, { batchSize: 10, maxBatches: 2 })).toMatchObject({ reportsRequested: 1 });
    const down = { publish: async () => { throw new Error('event bus unavailable'); } };
    expect(await relayFailsWith(store, down)).toBe('event bus unavailable');
    // Asked once for this step: the next sweep does not ask again, the relay sends it.
    expect(await sweep(store, { batchSize: 10, maxBatches: 2 })).toMatchObject({ reportsRequested: 0 });
    expect(await relayUntil(store, captureNotifications(), 1)).toEqual([expect.objectContaining({ type: 'interim_update_requested', sessionId: id, clientId: 'ggsn', notifyUri: 'http://ggsn.invalid/ccr' })]);
  });

  it('locally, a request for a report is POSTed to the session\'s notifyUri and kept in the event log', async () => {
    const posted: Array<{ url: string; body: unknown }> = [];
    const post = (async (url: string, init: RequestInit) => {
      posted.push({ url, body: JSON.parse(String(init.body)) });
      if (url.includes('silent')) throw new Error('no answer'); // a client that does not answer changes nothing
      return new Response(null, { status: 204 });
    }) as typeof fetch;
    const asked = { type: 'interim_update_requested', at: '2026-01-01T00:00:30.000Z', sessionId: 'ses_a', clientId: 'ggsn', notifyUri: 'http://ggsn.invalid/ccr' };
    const silent = { ...asked, sessionId: 'ses_b', notifyUri: 'http://silent.invalid/ccr' };
    const noUri = { ...asked, sessionId: 'ses_c', notifyUri: undefined };
    await localNotifier(post).publish([asked, silent, noUri] as unknown as Notification[]);
    expect(posted).toEqual([{ url: asked.notifyUri, body: asked }, { url: silent.notifyUri, body: silent }]);
    expect(localEventLog.slice(-3).map((n) => n.sessionId)).toEqual(['ses_a', 'ses_b', 'ses_c']);
  });

  it('two sweeps at once and updates racing them return each reservation once', async () => {
    const clock = testClock();
    const store = await testStore({ now: clock.now });
    await seedServices(store);
    const ids = await Promise.all(Array.from({ length: 20 }, (_, i) =>
      reserve(store, { requestId: `o-${i}`, accountId: 'sub', clientId: 'c', serviceId: 'ims-voice', requested: { units: 60 } }, 'h').then((a) => a.body.sessionId as string)));
    clock.advanceSeconds(301);
    const [a, b] = await Promise.all([
      sweep(store, { batchSize: 7, maxBatches: 10 }),
      sweep(store, { batchSize: 7, maxBatches: 10 }),
      ...ids.slice(0, 5).map((id, i) => updateSession(store, id, { requestId: `race-${i}`, usedUnits: 30, requested: { units: 60 } }, 'h').catch(() => null)),
    ]) as [any, any];
    expect(a.expired + b.expired).toBeLessThanOrEqual(20);
    await sweep(store, { batchSize: 50, maxBatches: 5 });
    clock.advanceSeconds(301);
    await sweep(store, { batchSize: 50, maxBatches: 5 });
    const account = await reconciled(store, 'sub');
    expect(account.reserved).toBe(0);
    const states = await Promise.all(ids.map(async (id) => (await requireSession(store, id)).state));
    expect(states.every((s) => s === 'expired')).toBe(true);
  });

  it('items that stay due (failing ones) do not keep a run from what is due behind them in their shard', async () => {
    const clock = testClock();
    let stuck = '';
    const store = await testStore({ now: clock.now, db: (inner: Db): Db => ({
      send: async (command) => {
        if (stuck && command instanceof GetCommand && command.input.Key?.pk === `SES#${stuck}`) throw Object.assign(new Error('throttled'), { name: 'ThrottlingException' });
        return inner.send(command);
      },
    }) });
    await seedServices(store);
    // Two sessions in one shard of the due index, the failing one first.
    const ids = Array.from({ length: 40 }, (_, i) => `s-${i}`).filter((rid) => dueShardOf(sessionIdFor(rid)) === dueShardOf(sessionIdFor('s-0'))).slice(0, 2);
    expect(ids).toHaveLength(2);
    for (const rid of ids) {
      await reserve(store, { requestId: rid, accountId: 'sub', clientId: 'c', serviceId: 'ims-voice', requested: { units: 60 } }, 'h');
      clock.advanceSeconds(1);
    }
    stuck = sessionIdFor(ids[0]!);
    clock.advanceSeconds(301);
    await expect(sweep(store, { batchSize: 1, maxBatches: 10 })).rejects.toThrow('throttled');
    expect((await requireSession(store, sessionIdFor(ids[1]!))).state).toBe('expired');
  });

  it('a run short of time starts no batch it may not finish, and counts what it leaves due (the backlog metric)', async () => {
    const clock = testClock();
    const store = await testStore({ now: clock.now });
    await seedServices(store);
    for (let i = 0; i < 7; i++) await reserve(store, { requestId: `b-${i}`, accountId: 'sub', clientId: 'c', serviceId: 'ims-voice', requested: { units: 60 } }, 'h');
    clock.advanceSeconds(301);
    // 10 s left, less than the 15 s a run keeps in hand: no batch starts. Due: the 7 sessions,
    // and their account (its mark asks for a look within 5 minutes of its first hold).
    expect(await sweep(store, { batchSize: 100, maxBatches: 50, timeLeft: () => 10_000 })).toMatchObject({ examined: 0, backlog: 8 });
    // One batch of at most one item per shard (8 shards), then out of batches.
    const first = await sweep(store, { batchSize: 1, maxBatches: 1 });
    expect(first.backlog).toBe(8 - first.examined);
    const rest = await sweep(store, { batchSize: 100, maxBatches: 5 });
    expect(first.examined + rest.examined).toBe(8);
    expect(rest.backlog).toBe(0);
  });

  it('reads only the due sessions, not the idle ones', async () => {
    const clock = testClock();
    const counting = { db: undefined as unknown as ReturnType<typeof countingDb> };
    const store = await testStore({ now: clock.now, db: (inner) => (counting.db = countingDb(inner)) });
    await seedServices(store);
    // 5 sessions that will be due, then 60 opened later that will not be.
    for (let i = 0; i < 5; i++) await reserve(store, { requestId: `due-${i}`, accountId: 'sub', clientId: 'c', serviceId: 'ims-voice', requested: { units: 60 } }, 'h');
    clock.advanceSeconds(250);
    for (let i = 0; i < 60; i++) await reserve(store, { requestId: `idle-${i}`, accountId: 'sub', clientId: 'c', serviceId: 'as-content', requested: { units: 1 } }, 'h');
    clock.advanceSeconds(55); // the first five are past validUntil; the others were asked at 30 s? no: they are 55 s old
    counting.db.reset();
    const summary = await sweep(store, { batchSize: 100, maxBatches: 5 });
    const reads = (counting.db.counts.get('Get') ?? 0);
    // 5 expired, and the 60 younger ones are due for an interim report (interval 30 s): 65 due in all.
    expect(summary.expired).toBe(5);
    expect(reads).toBe(summary.examined);
    clock.advanceSeconds(1);
    counting.db.reset();
    const quiet = await sweep(store, { batchSize: 100, maxBatches: 5 });
    expect(quiet.examined).toBe(0);
    expect(counting.db.counts.get('Get') ?? 0).toBe(0);
  });
});
