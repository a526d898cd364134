// Seed 000: multi-party sessions where the parties agree who pays, on DynamoDB Local.
import { describe, expect, it } from 'vitest';
import { TransactWriteCommand } from '@aws-sdk/lib-dynamodb';
import { captureNotifications, interleavingStore, readingBeforeTheRecord, relayUntil, codeOf, reconciled, testApi, testClock, testStore, twoWriteAndOneWriteStores } from '../helpers.js';
import type { Store } from '../../functions/store/db.js';
import { listNotifications, relayNotifications } from '../../functions/store/notifications.js';
import { putService } from '../../functions/store/services.js';
import { createAccount, requireAccount, topUp } from '../../functions/store/accounts.js';
import { agree, proposePartySession } from '../../functions/store/parties.js';
import { debitSession, getSessionItem, keepAnswer, refundSession, requireSession, reserve, sessionIdFor, updateSession } from '../../functions/store/sessions.js';
import { sweep } from '../../functions/store/sweep.js';
import { directDebit } from '../../functions/store/debits.js';
import { readLedger } from '../../functions/store/ledger.js';
import { setSponsors } from '../../functions/store/sponsors.js';
import type { Principle } from '../../functions/domain/parties.js';

// A game: 1 minor unit per started second, so costs are easy to make odd.
const game = { serviceId: 'game', unit: 'seconds' as const, price: { amountMinor: 1, perUnits: 1 }, validitySeconds: 600, interimIntervalSeconds: 60 };

async function players(store: Store, balances: Record<string, number>) {
  await putService(store, game);
  for (const [accountId, balance] of Object.entries(balances)) {
    await createAccount(store, { accountId, currency: 'EUR', kind: 'prepaid' });
    if (balance) await topUp(store, accountId, `t-${accountId}`, balance, 'h');
  }
}

async function started(store: Store, requestId: string, parties: string[], principle: Principle, units = 101) {
  const proposed = await proposePartySession(store, { requestId, parties, principle, clientId: 'game-server', serviceId: 'game', requested: { units } }, `h-${requestId}`);
  expect(proposed.status).toBe(201);
  expect(proposed.body.state).toBe('pending_agreement');
  const sessionId = proposed.body.sessionId as string;
  let last;
  for (const accountId of parties) last = await agree(store, sessionId, { requestId: `${requestId}-agree-${accountId}`, accountId }, 'h');
  return { sessionId, last: last! };
}

describe('every principle, odd amounts', () => {
  it.each<[string, Principle, Record<string, string> | undefined, Record<string, number>, Record<string, number>]>([
    // 101 units requested, 77 used: reserved per party, then charged per party.
    ['loser pays', { type: 'loser-pays' }, { loser: 'ben' }, { ann: 101, ben: 101, cid: 101 }, { ann: 0, ben: 77, cid: 0 }],
    ['split: odd cents to the first listed', { type: 'split' }, undefined, { ann: 34, ben: 34, cid: 34 }, { ann: 26, ben: 26, cid: 25 }],
    ['initiator pays', { type: 'initiator-pays' }, undefined, { ann: 101, ben: 0, cid: 0 }, { ann: 77, ben: 0, cid: 0 }],
    ['shares 50/30/20', { type: 'shares', shares: { ann: 50, ben: 30, cid: 20 } }, undefined, { ann: 51, ben: 31, cid: 21 }, { ann: 39, ben: 23, cid: 15 }],
  ])('%s', async (_name, principle, outcome, reservedEach, chargedEach) => {
    const store = await testStore();
    await players(store, { ann: 1000, ben: 1000, cid: 1000 });
    const { sessionId, last } = await started(store, 'g1', ['ann', 'ben', 'cid'], principle);
    expect(last.body.state).toBe('active');
    // The grant shows its price, whatever the parties hold for it (fails before: the sum of
    // the holds, 303 for loser pays; review 6 of stop 26).
    expect(last.body.granted).toEqual({ units: 101, amount: 101 });
    for (const [accountId, amount] of Object.entries(reservedEach)) expect((await requireAccount(store, accountId)).reserved).toBe(amount);
    // 40 used, and the rest of the grant asked again.
    await updateSession(store, sessionId, { requestId: 'u1', usedUnits: 40, requested: { units: 61 } }, 'h');
    const closed = await debitSession(store, sessionId, { requestId: 'd1', usedUnits: 37, outcome }, 'h');
    expect(closed.body).toMatchObject({ state: 'closed', charged: { units: 77, amount: 77 } });
    let paid = 0;
    for (const [accountId, amount] of Object.entries(chargedEach)) {
      const account = await reconciled(store, accountId);
      expect(account).toMatchObject({ balance: 1000 - amount, reserved: 0 });
      paid += amount;
    }
    expect(paid).toBe(77);
    const session = await requireSession(store, sessionId);
    expect(session.parties!.map((p) => p.chargedMinor)).toEqual(Object.values(chargedEach));
  });
});

describe('verification before the start', () => {
  it('a party that cannot pay: 402 naming it, nothing reserved from anyone', async () => {
    const store = await testStore();
    await players(store, { ann: 1000, ben: 50 });
    const { sessionId, last } = await started(store, 'g1', ['ann', 'ben'], { type: 'loser-pays' });
    expect(last).toMatchObject({ status: 402, body: { code: 'insufficient_credit', accountId: 'ben' } });
    expect(await reconciled(store, 'ann')).toMatchObject({ reserved: 0, balance: 1000 });
    expect(await reconciled(store, 'ben')).toMatchObject({ reserved: 0, balance: 50 });
    expect((await requireSession(store, sessionId)).state).toBe('pending_agreement');
    // Ben tops up and agrees again: now it starts.
    await topUp(store, 'ben', 't2', 100, 'h');
    expect((await agree(store, sessionId, { requestId: 'again', accountId: 'ben' }, 'h')).body.state).toBe('active');
  });

  it('a short party with a sponsor (seed 003) is covered as its charges are: the game starts, the sponsor paid the shortfall', async () => {
    const store = await testStore();
    await players(store, { ann: 1000, ben: 50, gran: 500 });
    await setSponsors(store, 'ben', [{ accountId: 'gran', priority: 1 }]);
    const { last } = await started(store, 'g1', ['ann', 'ben'], { type: 'loser-pays' });
    expect(last.body.state).toBe('active');
    // ben's most possible share is 101: gran gave the 51 he lacked, and nothing more.
    expect(await reconciled(store, 'ben')).toMatchObject({ balance: 101, reserved: 101 });
    expect(await reconciled(store, 'gran')).toMatchObject({ balance: 449, reserved: 0 });
    expect((await readLedger(store, 'gran')).entries[0]).toMatchObject({ type: 'sponsor_transfer', amount: -51 });
  });

  it('parties of different currencies: 409 conflict naming the currencies, nothing written', async () => {
    const store = await testStore();
    await players(store, { ann: 1000, ben: 1000 });
    await createAccount(store, { accountId: 'usd', currency: 'USD', kind: 'prepaid' });
    await topUp(store, 'usd', 't-usd', 1000, 'h');
    const command = { requestId: 'fx', parties: ['ann', 'ben', 'usd'], principle: { type: 'split' } as Principle, clientId: 'g', serviceId: 'game', requested: { units: 10 } };
    const refused = await proposePartySession(store, command, 'h').then(() => null, (error) => error);
    expect([refused?.code, refused?.message]).toEqual(['conflict', expect.stringMatching(/ann EUR.*usd USD/)]);
    expect(await getSessionItem(store, sessionIdFor('fx'))).toBeNull();
    expect(await reconciled(store, 'usd')).toMatchObject({ balance: 1000, reserved: 0 });
  });

  it('a requestId reused with another body naming an unknown service is idempotency_conflict; a repeat is answered alike', async () => {
    const store = await testStore();
    await players(store, { ann: 1000, ben: 1000 });
    const command = { requestId: 'g1', parties: ['ann', 'ben'], principle: { type: 'split' } as Principle, clientId: 'g', serviceId: 'game', requested: { units: 10 } };
    const first = await proposePartySession(store, command, 'h');
    expect(await codeOf(proposePartySession(store, { ...command, serviceId: 'nope' }, 'other'))).toBe('idempotency_conflict');
    expect(await proposePartySession(store, command, 'h')).toEqual(first);
    expect(await codeOf(proposePartySession(store, { ...command, requestId: 'g2', serviceId: 'nope' }, 'h'))).toBe('not_found');
  });

  it('refuses an outcome naming a non-party, and agreements from strangers', async () => {
    const store = await testStore();
    await players(store, { ann: 1000, ben: 1000 });
    const { sessionId } = await started(store, 'g1', ['ann', 'ben'], { type: 'loser-pays' });
    expect(await codeOf(debitSession(store, sessionId, { requestId: 'd1', usedUnits: 10, outcome: { loser: 'eve' } }, 'h'))).toBe('validation_failed');
    expect(await codeOf(agree(store, sessionId, { requestId: 'x', accountId: 'eve' }, 'h'))).toBe('validation_failed');
    expect(await reconciled(store, 'ann')).toMatchObject({ reserved: 101, balance: 1000 });
  });

  it('two sessions sharing a party who can cover only one: exactly one activates', async () => {
    const store = await testStore();
    await players(store, { ann: 150, ben: 1000, cid: 1000 });
    const a = await proposePartySession(store, { requestId: 'ga', parties: ['ann', 'ben'], principle: { type: 'loser-pays' }, clientId: 'g', serviceId: 'game', requested: { units: 101 } }, 'h');
    const b = await proposePartySession(store, { requestId: 'gb', parties: ['ann', 'cid'], principle: { type: 'loser-pays' }, clientId: 'g', serviceId: 'game', requested: { units: 101 } }, 'h');
    await agree(store, a.body.sessionId as string, { requestId: 'a1', accountId: 'ann' }, 'h');
    await agree(store, b.body.sessionId as string, { requestId: 'b1', accountId: 'ann' }, 'h');
    const [ra, rb] = await Promise.all([
      agree(store, a.body.sessionId as string, { requestId: 'a2', accountId: 'ben' }, 'h'),
      agree(store, b.body.sessionId as string, { requestId: 'b2', accountId: 'cid' }, 'h'),
    ]);
    expect([ra.status, rb.status].sort()).toEqual([200, 402]);
    expect(await reconciled(store, 'ann')).toMatchObject({ reserved: 101 });
  });

  it('duplicate agree and debit requests change nothing more', async () => {
    const store = await testStore();
    await players(store, { ann: 1000, ben: 1000 });
    const proposed = await proposePartySession(store, { requestId: 'g1', parties: ['ann', 'ben'], principle: { type: 'split' }, clientId: 'g', serviceId: 'game', requested: { units: 11 } }, 'h');
    const id = proposed.body.sessionId as string;
    const first = await agree(store, id, { requestId: 'ag-ann', accountId: 'ann' }, 'h');
    expect(await agree(store, id, { requestId: 'ag-ann', accountId: 'ann' }, 'h')).toEqual(first);
    const both = await Promise.all([1, 2, 3].map(() => agree(store, id, { requestId: 'ag-ben', accountId: 'ben' }, 'h')));
    for (const answer of both) expect(answer).toEqual(both[0]);
    expect(both[0]!.body.state).toBe('active');
    const debits = await Promise.all([1, 2, 3].map(() => debitSession(store, id, { requestId: 'end', usedUnits: 11 }, 'h')));
    for (const answer of debits) expect(answer).toEqual(debits[0]);
    expect(await reconciled(store, 'ann')).toMatchObject({ balance: 994, reserved: 0 });
    expect(await reconciled(store, 'ben')).toMatchObject({ balance: 995, reserved: 0 });
  });
});

describe('a game and multi-sessions', () => {
  it('a session cannot join a game by its multi-session id (fails before: it took the game\'s place there)', async () => {
    const store = await testStore();
    await players(store, { ann: 500, ben: 500 });
    const { sessionId } = await started(store, 'mg', ['ann', 'ben'], { type: 'split' });
    const joining = { requestId: 'mg-join', accountId: 'ann', clientId: 'scscf', serviceId: 'game', requested: { units: 10 }, multiSessionId: sessionId };
    expect(await codeOf(reserve(store, joining, 'h'))).toBe('conflict');
    expect(await reconciled(store, 'ann')).toMatchObject({ reserved: 101 - 50 });
    // A used requestId with such a body is a reuse first (fails before: conflict).
    await reserve(store, { ...joining, requestId: 'used', multiSessionId: undefined }, 'h1');
    expect(await codeOf(reserve(store, { ...joining, requestId: 'used' }, 'h2'))).toBe('idempotency_conflict');
    await directDebit(store, { requestId: 'used-e', accountId: 'ann', clientId: 'as', serviceId: 'game', units: 1 }, 'h1');
    expect(await codeOf(directDebit(store, { requestId: 'used-e', accountId: 'ann', clientId: 'as', serviceId: 'game', units: 1, multiSessionId: sessionId }, 'h2'))).toBe('idempotency_conflict');
  });
});

describe('duplicates of the last agreement', () => {
  it('a copy that activates the game after another copy kept a refusal answers that refusal, and nothing is reserved (fails before: 200, the game active)', async () => {
    const { store, runBefore } = await interleavingStore((command) => command instanceof TransactWriteCommand && JSON.stringify(command.input).includes('"state":"active"'));
    await players(store, { ann: 500, ben: 500 });
    const proposed = await proposePartySession(store, { requestId: 'dg', parties: ['ann', 'ben'], principle: { type: 'split' }, clientId: 'game-server', serviceId: 'game', requested: { units: 100 } }, 'h');
    const sessionId = proposed.body.sessionId as string;
    await agree(store, sessionId, { requestId: 'dg-ann', accountId: 'ann' }, 'h');
    // Another copy of ben's agreement was refused (say, before a cover landed) and kept its 402 first.
    const kept = { status: 402, body: { code: 'insufficient_credit', accountId: 'ben' } };
    runBefore(() => keepAnswer(store, sessionId, 'dg-ben', 'h', kept));
    expect(await agree(store, sessionId, { requestId: 'dg-ben', accountId: 'ben' }, 'h')).toEqual(kept);
    expect((await requireSession(store, sessionId)).state).toBe('pending_agreement');
    expect(await reconciled(store, 'ann')).toMatchObject({ reserved: 0 });
    expect(await reconciled(store, 'ben')).toMatchObject({ reserved: 0 });
  });
});

describe('copies of the last agreement covering short parties in another order (review 4: the sponsor paid a party\'s shortfall twice)', () => {
  it('the sponsor pays each party\'s shortfall once', async () => {
    // Copy A covers ann, then ben; copy B runs whole between the two: it finds ben short first.
    const { store, runBefore, pending } = await interleavingStore((command) => command instanceof TransactWriteCommand && JSON.stringify(command.input).includes('SPT#sponsor:ben:'));
    await players(store, { ann: 0, ben: 0, cid: 0, spo: 1000 });
    for (const accountId of ['ann', 'ben', 'cid']) await setSponsors(store, accountId, [{ accountId: 'spo', priority: 1 }]);
    const proposed = await proposePartySession(store, { requestId: 'cg', parties: ['ann', 'ben', 'cid'], principle: { type: 'loser-pays' }, clientId: 'game-server', serviceId: 'game', requested: { units: 100 } }, 'h');
    const sessionId = proposed.body.sessionId as string;
    await agree(store, sessionId, { requestId: 'cg-ann', accountId: 'ann' }, 'h');
    await agree(store, sessionId, { requestId: 'cg-ben', accountId: 'ben' }, 'h');
    const last = { requestId: 'cg-cid', accountId: 'cid' };
    let copyB: unknown;
    runBefore(async () => { copyB = await agree(store, sessionId, last, 'h'); });
    const copyA = await agree(store, sessionId, last, 'h');
    expect(pending()).toBe(false);
    expect(copyA).toMatchObject({ status: 200, body: { state: 'active' } });
    expect(copyB).toEqual(copyA);
    for (const accountId of ['ann', 'ben', 'cid']) expect(await reconciled(store, accountId)).toMatchObject({ balance: 100, reserved: 100 });
    expect(await reconciled(store, 'spo')).toMatchObject({ balance: 700 });
  });
});

describe('a party whose account expires mid-game (review: its hold grew with every update)', () => {
  it('an update that would grow its hold records the usage and grants nothing: 403 naming it, even when it is short too; the debit is taken', async () => {
    const clock = testClock();
    const store = await testStore({ now: clock.now });
    await putService(store, game);
    await createAccount(store, { accountId: 'ann', currency: 'EUR', kind: 'prepaid', validUntil: '2026-01-01T00:01:00.000Z' });
    await topUp(store, 'ann', 't-ann', 60, 'h');
    await players(store, { ben: 1000 });
    const { sessionId, last } = await started(store, 'xg', ['ann', 'ben'], { type: 'split' }, 100);
    expect(last.body.state).toBe('active');
    clock.advanceSeconds(120);
    const updated = await updateSession(store, sessionId, { requestId: 'u1', usedUnits: 40, requested: { units: 600 } }, 'h');
    expect(updated).toMatchObject({ status: 403, body: { code: 'account_inactive', accountId: 'ann', charged: { units: 40 } } });
    expect(await updateSession(store, sessionId, { requestId: 'u1', usedUnits: 40, requested: { units: 600 } }, 'h')).toEqual(updated);
    expect(await reconciled(store, 'ann')).toMatchObject({ balance: 60, reserved: 50 });
    expect(await reconciled(store, 'ben')).toMatchObject({ balance: 1000, reserved: 50 });
    // An update within the holds grows nothing, yet it would grant again what is left, with a
    // new validUntil: refused alike, its usage recorded (until stop 28 it was granted, unlike a
    // plain session's; review 26).
    expect(await updateSession(store, sessionId, { requestId: 'u2', usedUnits: 10, requested: { units: 10 } }, 'h')).toMatchObject({ status: 403, body: { charged: { units: 50 } } });
    const closed = await debitSession(store, sessionId, { requestId: 'd1', usedUnits: 10 }, 'h');
    expect(closed.body).toMatchObject({ state: 'closed', charged: { units: 60, amount: 60 } });
    expect(await reconciled(store, 'ann')).toMatchObject({ balance: 30, reserved: 0 });
    expect(await reconciled(store, 'ben')).toMatchObject({ balance: 970, reserved: 0 });
  });
});

describe('a reserve reusing a proposal\'s requestId that died holding on a party (review 9: the hold stayed for good, and the game could not start)', () => {
  it('its repeat gives the hold back, and the game starts', async () => {
    const { twoWrites: store, failNextTransaction } = await twoWriteAndOneWriteStores();
    await players(store, { p1: 1000, p2: 1000 });
    const proposed = await proposePartySession(store, { requestId: 'g1', parties: ['p1', 'p2'], principle: { type: 'split' }, clientId: 'gs', serviceId: 'game', requested: { units: 100 } }, 'hg');
    const sessionId = proposed.body.sessionId as string;
    const plain = { requestId: 'g1', accountId: 'p1', clientId: 'x', serviceId: 'game', requested: { units: 300 } };
    failNextTransaction(Object.assign(new Error('handler died'), { name: 'HandlerDied' }));
    await expect(reserve(readingBeforeTheRecord(store), plain, 'hr')).rejects.toThrow('handler died');
    expect((await requireAccount(store, 'p1')).reserved).toBe(300);
    expect(await codeOf(reserve(store, plain, 'hr'))).toBe('idempotency_conflict');
    expect(await reconciled(store, 'p1')).toMatchObject({ balance: 1000, reserved: 0 });
    await agree(store, sessionId, { requestId: 'a1', accountId: 'p1' }, 'h');
    expect(await agree(store, sessionId, { requestId: 'a2', accountId: 'p2' }, 'h')).toMatchObject({ status: 200, body: { state: 'active' } });
  });
});

describe('low balances (review 8: a game never told a party it crossed its threshold, nor did a sponsor transfer)', () => {
  it('the last agreement that takes a party below its lowBalanceThreshold tells it, once; a sponsor a transfer takes below its own is told too', async () => {
    const store = await testStore();
    await putService(store, game);
    await createAccount(store, { accountId: 'ann', currency: 'EUR', kind: 'prepaid', lowBalanceThreshold: 500 });
    await topUp(store, 'ann', 't-ann', 1000, 'h');
    await createAccount(store, { accountId: 'gran', currency: 'EUR', kind: 'prepaid', lowBalanceThreshold: 500 });
    await topUp(store, 'gran', 't-gran', 1000, 'h');
    await players(store, { ben: 0 });
    await setSponsors(store, 'ben', [{ accountId: 'gran', priority: 1 }]);
    const lows = async (accountId: string) => (await listNotifications(store, accountId)).notifications.filter((n) => n.type === 'low_balance');
    // A split of 1200: 600 held from each; ben's share comes from gran (1000 -> 400).
    const { sessionId, last } = await started(store, 'lg', ['ann', 'ben'], { type: 'split' }, 1200);
    expect(last.body.state).toBe('active');
    expect(await lows('ann')).toEqual([expect.objectContaining({ available: 400, level: 500 })]);
    expect(await lows('gran')).toEqual([expect.objectContaining({ available: 400, level: 500 })]);
    await debitSession(store, sessionId, { requestId: 'd1', usedUnits: 1200 }, 'h');
    expect(await lows('ann')).toHaveLength(1);
    expect(await reconciled(store, 'ann')).toMatchObject({ balance: 400, reserved: 0 });
  });
});

describe('a release racing the last agreement (review: 409 conflict, and its repeat released the game)', () => {
  it('releases the game the agreement started, and its repeat is answered alike', async () => {
    const { store, runBefore, pending } = await interleavingStore((command) => command instanceof TransactWriteCommand && JSON.stringify(command.input).includes('rel-1'));
    await players(store, { ann: 500, ben: 500 });
    const proposed = await proposePartySession(store, { requestId: 'rg', parties: ['ann', 'ben'], principle: { type: 'split' }, clientId: 'game-server', serviceId: 'game', requested: { units: 100 } }, 'h');
    const sessionId = proposed.body.sessionId as string;
    await agree(store, sessionId, { requestId: 'rg-ann', accountId: 'ann' }, 'h');
    // The release read the proposal pending; ben's agreement starts the game before its write.
    runBefore(() => agree(store, sessionId, { requestId: 'rg-ben', accountId: 'ben' }, 'h'));
    const released = await refundSession(store, sessionId, { requestId: 'rel-1' }, 'hr');
    expect(pending()).toBe(false);
    expect(released).toMatchObject({ status: 200, body: { state: 'closed', released: true } });
    expect(await refundSession(store, sessionId, { requestId: 'rel-1' }, 'hr')).toEqual(released);
    expect(await reconciled(store, 'ann')).toMatchObject({ balance: 500, reserved: 0 });
    expect(await reconciled(store, 'ben')).toMatchObject({ balance: 500, reserved: 0 });
  });
});

describe('cleanup', () => {
  it('a proposal nobody finishes agreeing, and a silent game, are cleaned up by the sweep', async () => {
    const clock = testClock();
    const store = await testStore({ now: clock.now });
    await players(store, { ann: 1000, ben: 1000 });
    const never = await proposePartySession(store, { requestId: 'g0', parties: ['ann', 'ben'], principle: { type: 'split' }, clientId: 'g', serviceId: 'game', requested: { units: 100 } }, 'h');
    await agree(store, never.body.sessionId as string, { requestId: 'only-ann', accountId: 'ann' }, 'h');
    const { sessionId } = await started(store, 'g1', ['ann', 'ben'], { type: 'loser-pays' });
    expect((await requireAccount(store, 'ann')).reserved).toBe(101);
    clock.advanceSeconds(601);
    const summary = await sweep(store, { batchSize: 10, maxBatches: 5 });
    expect(summary.expired).toBe(2);
    expect((await requireSession(store, never.body.sessionId as string)).state).toBe('expired');
    expect((await requireSession(store, sessionId)).state).toBe('expired');
    expect(await reconciled(store, 'ann')).toMatchObject({ reserved: 0, balance: 1000 });
    expect(await reconciled(store, 'ben')).toMatchObject({ reserved: 0, balance: 1000 });
  });

  it('a game whose server stops reporting is asked for an interim report once per step, like any session; a proposal is not', async () => {
    const clock = testClock();
    const store = await testStore({ now: clock.now });
    const capture = captureNotifications();
    await players(store, { ann: 1000, ben: 1000 });
    await proposePartySession(store, { requestId: 'g0', parties: ['ann', 'ben'], principle: { type: 'split' }, clientId: 'g', serviceId: 'game', requested: { units: 100 } }, 'h');
    const { sessionId } = await started(store, 'g1', ['ann', 'ben'], { type: 'split' });
    clock.advanceSeconds(61); // the game's interval is 60 s
    expect(await sweep(store, { batchSize: 10, maxBatches: 5 })).toMatchObject({ reportsRequested: 1, expired: 0 });
    expect(await relayUntil(store, capture, 1)).toEqual([expect.objectContaining({ type: 'interim_update_requested', sessionId, clientId: 'game-server', interimIntervalSeconds: 60 })]);
    expect((await sweep(store, { batchSize: 10, maxBatches: 5 })).reportsRequested).toBe(0);
    // The report comes; the next interval is counted from it.
    await updateSession(store, sessionId, { requestId: 'u1', usedUnits: 30 }, 'h');
    clock.advanceSeconds(30);
    expect((await sweep(store, { batchSize: 10, maxBatches: 5 })).reportsRequested).toBe(0);
    clock.advanceSeconds(31);
    expect((await sweep(store, { batchSize: 10, maxBatches: 5 })).reportsRequested).toBe(1);
    // Silent to the end: both are expired, and everything held goes back.
    clock.advanceSeconds(600);
    expect((await sweep(store, { batchSize: 10, maxBatches: 5 })).expired).toBe(2);
    expect(await reconciled(store, 'ann')).toMatchObject({ reserved: 0, balance: 1000 - 15 });
    expect(await reconciled(store, 'ben')).toMatchObject({ reserved: 0, balance: 1000 - 15 });
  });

  it('a finished game leaves no entries on its parties\' accounts: the sweep visits them', async () => {
    const clock = testClock();
    const store = await testStore({ now: clock.now });
    await players(store, { ann: 1000, ben: 1000 });
    const { sessionId } = await started(store, 'g1', ['ann', 'ben'], { type: 'split' });
    await debitSession(store, sessionId, { requestId: 'end', usedUnits: 50 }, 'h');
    clock.advanceSeconds(6 * 60);
    await sweep(store, { batchSize: 10, maxBatches: 5 });
    expect((await requireAccount(store, 'ann')).ops ?? {}).toEqual({});
    expect((await requireAccount(store, 'ben')).ops ?? {}).toEqual({});
    expect(await reconciled(store, 'ann')).toMatchObject({ balance: 1000 - 25, reserved: 0 });
  });

  it('a plain reserve under a proposal\'s requestId that died after its hold: the sweep gives the hold back', async () => {
    const clock = testClock();
    const { twoWrites: store, failNextTransaction } = await twoWriteAndOneWriteStores({ now: clock.now });
    await players(store, { ann: 1000, ben: 1000, cat: 1000 });
    await proposePartySession(store, { requestId: 'g', parties: ['ann', 'ben'], principle: { type: 'split' }, clientId: 'g', serviceId: 'game', requested: { units: 100 } }, 'h');
    failNextTransaction(Object.assign(new Error('handler died'), { name: 'HandlerDied' }));
    await expect(reserve(readingBeforeTheRecord(store), { requestId: 'g', accountId: 'cat', clientId: 'g', serviceId: 'game', requested: { units: 100 } }, 'other')).rejects.toThrow('handler died');
    expect((await requireAccount(store, 'cat')).reserved).toBe(100);
    clock.advanceSeconds(600 + 61);
    await sweep(store, { batchSize: 10, maxBatches: 5 });
    expect(await reconciled(store, 'cat')).toMatchObject({ reserved: 0, balance: 1000 });
  });

  it('a refund of a finished game goes back to the parties as they paid, never more than charged, also concurrently', async () => {
    const store = await testStore();
    await players(store, { ann: 1000, ben: 1000 });
    const { sessionId } = await started(store, 'g1', ['ann', 'ben'], { type: 'split' });
    await debitSession(store, sessionId, { requestId: 'end', usedUnits: 50 }, 'h'); // 25 each
    const first = await refundSession(store, sessionId, { requestId: 'f1', amount: 7 }, 'h');
    // 7 by what each paid (25, 25): the odd cent to the party listed first.
    expect(first.body).toMatchObject({ refunded: { amount: 7 }, refundedTotal: { amount: 7 }, parties: [{ accountId: 'ann', refunded: { amount: 4 } }, { accountId: 'ben', refunded: { amount: 3 } }] });
    expect(await refundSession(store, sessionId, { requestId: 'f1', amount: 7 }, 'h')).toEqual(first);
    expect(await codeOf(refundSession(store, sessionId, { requestId: 'f1', amount: 8 }, 'other'))).toBe('idempotency_conflict');
    // Two refunds of 30 at once: 43 is left, so one is refused.
    const both = await Promise.all(['f2', 'f3'].map((rid) => refundSession(store, sessionId, { requestId: rid, amount: 30 }, 'h')));
    expect(both.map((a) => a.status).sort()).toEqual([200, 409]);
    const rest = await refundSession(store, sessionId, { requestId: 'f4', amount: 13 }, 'h');
    expect(rest.body).toMatchObject({ refundedTotal: { amount: 50 } });
    expect(await codeOf(refundSession(store, sessionId, { requestId: 'f5', amount: 1 }, 'h'))).toBe('conflict');
    expect(await reconciled(store, 'ann')).toMatchObject({ balance: 1000, reserved: 0 });
    expect(await reconciled(store, 'ben')).toMatchObject({ balance: 1000, reserved: 0 });
    expect((await requireSession(store, sessionId)).parties!.map((p) => p.refundedMinor)).toEqual([25, 25]);
  });

  it('a refund without amount releases every reservation', async () => {
    const store = await testStore();
    await players(store, { ann: 1000, ben: 1000 });
    const { sessionId } = await started(store, 'g1', ['ann', 'ben'], { type: 'split' });
    const released = await refundSession(store, sessionId, { requestId: 'r' }, 'h');
    expect(released.body).toMatchObject({ state: 'closed', released: true, returned: { amount: 102 } });
    expect(await reconciled(store, 'ann')).toMatchObject({ reserved: 0, balance: 1000 });
  });
});

describe('usage reported by updates is paid when the game is released or expires', () => {
  // 101 units reserved, 40 used by an update, then no final debit: the 40 are charged by the
  // principle like a debit would (loser-pays, with no outcome, as split), the rest goes back.
  it.each<[string, 'release' | 'expire', Principle, Record<string, number>]>([
    ['split, released', 'release', { type: 'split' }, { ann: 14, ben: 13, cid: 13 }],
    ['shares 50/30/20, released', 'release', { type: 'shares', shares: { ann: 50, ben: 30, cid: 20 } }, { ann: 20, ben: 12, cid: 8 }],
    ['initiator pays, released', 'release', { type: 'initiator-pays' }, { ann: 40, ben: 0, cid: 0 }],
    ['loser pays with no outcome: split, released', 'release', { type: 'loser-pays' }, { ann: 14, ben: 13, cid: 13 }],
    ['split, expired', 'expire', { type: 'split' }, { ann: 14, ben: 13, cid: 13 }],
    ['initiator pays, expired', 'expire', { type: 'initiator-pays' }, { ann: 40, ben: 0, cid: 0 }],
    ['loser pays with no outcome: split, expired', 'expire', { type: 'loser-pays' }, { ann: 14, ben: 13, cid: 13 }],
  ])('%s', async (_name, end, principle, chargedEach) => {
    const clock = testClock();
    const store = await testStore({ now: clock.now });
    await players(store, { ann: 1000, ben: 1000, cid: 1000 });
    const { sessionId } = await started(store, 'g1', ['ann', 'ben', 'cid'], principle);
    const heldEach = (await requireSession(store, sessionId)).parties!.map((p) => p.holdMinor);
    const held = heldEach.reduce((a, b) => a + b, 0);
    const updated = await updateSession(store, sessionId, { requestId: 'u1', usedUnits: 40 }, 'h');
    expect(updated.body.charged).toEqual({ units: 40, amount: 0 });
    if (end === 'release') {
      const released = await refundSession(store, sessionId, { requestId: 'rel' }, 'h');
      expect(released.body).toMatchObject({ state: 'closed', released: true, charged: { units: 40, amount: 40 }, returned: { amount: held - 40 }, refunded: { amount: 0 } });
      expect(await refundSession(store, sessionId, { requestId: 'rel' }, 'h')).toEqual(released); // a repeat charges nothing more
    } else {
      clock.advanceSeconds(601);
      expect((await sweep(store, { batchSize: 10, maxBatches: 5 })).expired).toBe(1);
      expect((await sweep(store, { batchSize: 10, maxBatches: 5 })).expired).toBe(0);
    }
    const session = await requireSession(store, sessionId);
    expect(session).toMatchObject({ state: end === 'release' ? 'released' : 'expired', returnedMinor: held - 40, hold: { usedUnits: 40, chargedMinor: 40, holdMinor: 0 } });
    expect(session.parties!.map((p) => p.chargedMinor)).toEqual(Object.values(chargedEach));
    for (const [i, [accountId, amount]] of Object.entries(chargedEach).entries()) {
      expect(await reconciled(store, accountId)).toMatchObject({ balance: 1000 - amount, reserved: 0 });
      // An expiry is told to every party, with what came back to it.
      if (end === 'expire') {
        const expired = (await listNotifications(store, accountId)).notifications.filter((n) => n.type === 'session_expired');
        expect(expired).toMatchObject([{ sessionId, accountId, returned: { amount: heldEach[i]! - amount } }]);
      }
      // Each party's ledger shows its own charge.
      const { entries } = await readLedger(store, accountId, { limit: 100 });
      expect(entries.filter((e: any) => e.type === 'debit').reduce((a: number, e: any) => a - e.amount, 0)).toBe(amount);
    }
  });

  it.each(['sponsor', 'main account'] as const)('an update that grows a short party\'s hold is covered by its %s, as its charges are', async (who) => {
    const store = await testStore();
    await players(store, { ann: 5000, gran: 5000 });
    if (who === 'sponsor') {
      await players(store, { ben: 60 });
      await setSponsors(store, 'ben', [{ accountId: 'gran', priority: 1 }]);
    } else {
      await createAccount(store, { accountId: 'ben', currency: 'EUR', kind: 'prepaid', mainAccountId: 'gran' });
    }
    const { sessionId } = await started(store, 'g1', ['ann', 'ben'], { type: 'split' }); // 51 each
    // More than any first chunk of gran's: ben's hold grows from 51 to 1025.
    const updated = await updateSession(store, sessionId, { requestId: 'u1', usedUnits: 50, requested: { units: 2000 } }, 'h');
    expect(updated).toMatchObject({ status: 200, body: { granted: { units: 2000 } } });
    expect((await requireSession(store, sessionId)).parties!.map((p) => p.holdMinor)).toEqual([1025, 1025]);
    const closed = await debitSession(store, sessionId, { requestId: 'd1', usedUnits: 0 }, 'h');
    expect(closed.body).toMatchObject({ state: 'closed', charged: { units: 50, amount: 50 } });
    // Money only moved: what ben paid came from gran, one way or the other (a main account's
    // chunk may have left ben more than he spent; it is still in ben's balance).
    const total = (await reconciled(store, 'ann')).balance + (await reconciled(store, 'gran')).balance + (await reconciled(store, 'ben')).balance;
    expect(total).toBe(10_000 + (who === 'sponsor' ? 60 : 0) - 50);
  });

  it('an update that grows two short parties\' holds covers both, each by its own sponsor', async () => {
    const store = await testStore();
    await players(store, { ann: 60, ben: 60, gran: 5000, gramps: 5000 });
    await setSponsors(store, 'ann', [{ accountId: 'gran', priority: 1 }]);
    await setSponsors(store, 'ben', [{ accountId: 'gramps', priority: 1 }]);
    const { sessionId } = await started(store, 'g1', ['ann', 'ben'], { type: 'split' }); // 51 each
    const updated = await updateSession(store, sessionId, { requestId: 'u1', usedUnits: 50, requested: { units: 2000 } }, 'h');
    expect(updated).toMatchObject({ status: 200, body: { granted: { units: 2000 } } });
    expect((await reconciled(store, 'gran')).balance).toBe(5000 - 965);
    expect((await reconciled(store, 'gramps')).balance).toBe(5000 - 965);
  });

  it('concurrent duplicates of an update that grows a sponsored party\'s hold: answered alike, the sponsor pays once', async () => {
    const store = await testStore();
    await players(store, { ann: 5000, gran: 5000, ben: 60 });
    await setSponsors(store, 'ben', [{ accountId: 'gran', priority: 1 }]);
    const { sessionId } = await started(store, 'g1', ['ann', 'ben'], { type: 'split' }); // 51 each
    const answers = await Promise.all(Array.from({ length: 5 }, () => updateSession(store, sessionId, { requestId: 'u1', usedUnits: 50, requested: { units: 2000 } }, 'h')));
    for (const answer of answers) expect(answer).toEqual(answers[0]);
    expect(answers[0]).toMatchObject({ status: 200, body: { granted: { units: 2000 } } });
    // ben holds 1025: his 60 and what he lacked, 965, from gran; no more.
    expect(await reconciled(store, 'ben')).toMatchObject({ balance: 1025, reserved: 1025 });
    expect(await reconciled(store, 'gran')).toMatchObject({ balance: 5000 - 965 });
  });

  it('usage past the grant (a refused update) is charged on release up to what was reserved, never more', async () => {
    const store = await testStore();
    await players(store, { ann: 1000, ben: 60 });
    const { sessionId } = await started(store, 'g1', ['ann', 'ben'], { type: 'split' }); // 51 each
    const refused = await updateSession(store, sessionId, { requestId: 'u1', usedUnits: 150 }, 'h');
    expect(refused).toMatchObject({ status: 402, body: { accountId: 'ben', charged: { units: 150 } } });
    const released = await refundSession(store, sessionId, { requestId: 'rel' }, 'h');
    expect(released.body).toMatchObject({ state: 'closed', released: true, charged: { units: 150, amount: 101 }, returned: { amount: 1 } });
    expect(await reconciled(store, 'ann')).toMatchObject({ balance: 1000 - 51, reserved: 0 });
    expect(await reconciled(store, 'ben')).toMatchObject({ balance: 60 - 50, reserved: 0 });
  });

  it('a refused update (402, usage recorded) keeps the game alive as long as a granted one would', async () => {
    const clock = testClock();
    const store = await testStore({ now: clock.now });
    await players(store, { ann: 1000, ben: 20 });
    const { sessionId } = await started(store, 'g1', ['ann', 'ben'], { type: 'split' }, 10);
    clock.advanceSeconds(300);
    const refused = await updateSession(store, sessionId, { requestId: 'u1', usedUnits: 10, requested: { units: 500 } }, 'h');
    expect(refused.status).toBe(402);
    expect((await requireSession(store, sessionId)).validUntil).toBe(new Date(Date.parse('2026-01-01T00:00:00.000Z') + 900_000).toISOString());
    clock.advanceSeconds(301); // past the validUntil of the start, within 600 s of the update
    expect((await sweep(store, { batchSize: 10, maxBatches: 5 })).expired).toBe(0);
    const closed = await debitSession(store, sessionId, { requestId: 'd1', usedUnits: 0 }, 'h');
    expect(closed.body).toMatchObject({ state: 'closed', charged: { units: 10, amount: 10 } });
    expect(await reconciled(store, 'ann')).toMatchObject({ balance: 995, reserved: 0 });
    expect(await reconciled(store, 'ben')).toMatchObject({ balance: 15, reserved: 0 });
  });
});

describe('requested as an amount, like any reserve', () => {
  it('a proposal (and an update) may ask for { amount }: the units it buys at the service\'s price', async () => {
    const api = await testApi();
    try {
      await api.call('PUT', '/services/match', { unit: 'seconds', price: { amount: 2, per: 60 }, validitySeconds: 300, interimIntervalSeconds: 30 });
      for (const accountId of ['p1', 'p2']) {
        await api.call('POST', '/accounts', { accountId, currency: 'EUR', kind: 'prepaid' });
        await api.call('POST', `/accounts/${accountId}/topup`, { requestId: `t-${accountId}`, amount: 100 });
      }
      // 5 buys two started minutes (4): the same grant a plain reserve of { amount: 5 } gets.
      const plain = await api.call('POST', '/sessions', { requestId: 'plain', accountId: 'p1', clientId: 'g', serviceId: 'match', requested: { amount: 5 } });
      expect(plain.body.granted).toEqual({ units: 120, amount: 4 });
      await api.call('POST', `/sessions/${plain.body.sessionId}/refund`, { requestId: 'plain-r' });
      const proposed = await api.call('POST', '/sessions', { requestId: 'm1', parties: [{ accountId: 'p1' }, { accountId: 'p2' }], principle: { type: 'split' }, clientId: 'g', serviceId: 'match', requested: { amount: 5 } });
      expect(proposed).toMatchObject({ status: 201, body: { state: 'pending_agreement' } });
      const id = proposed.body.sessionId;
      await api.call('POST', `/sessions/${id}/agree`, { requestId: 'a1', accountId: 'p1' });
      const started = await api.call('POST', `/sessions/${id}/agree`, { requestId: 'a2', accountId: 'p2' });
      expect(started.body).toMatchObject({ state: 'active', granted: { units: 120, amount: 4 }, parties: [{ reserved: { amount: 2 } }, { reserved: { amount: 2 } }] });
      // 60 s used, { amount: 4 } more: 120 s more, so 180 s granted in all (6, 3 each).
      const updated = await api.call('POST', `/sessions/${id}/update`, { requestId: 'u1', used: { units: 60 }, requested: { amount: 4 } });
      expect(updated).toMatchObject({ status: 200, body: { granted: { units: 120, amount: 4 }, parties: [{ reserved: { amount: 3 } }, { reserved: { amount: 3 } }] } });
    } finally {
      await api.stop();
    }
  });
});

describe('answers kept for repeats, and the proposal window', () => {
  it('an agreement arriving after the session started is answered alike when repeated later', async () => {
    const store = await testStore();
    await players(store, { ann: 1000, ben: 1000 });
    const { sessionId } = await started(store, 'g1', ['ann', 'ben'], { type: 'split' }, 11);
    const late = await agree(store, sessionId, { requestId: 'late-ann', accountId: 'ann' }, 'h');
    expect(late.body).toMatchObject({ state: 'active', charged: { amount: 0 } });
    await updateSession(store, sessionId, { requestId: 'u1', usedUnits: 5 }, 'h');
    await debitSession(store, sessionId, { requestId: 'd1', usedUnits: 6 }, 'h');
    expect(await agree(store, sessionId, { requestId: 'late-ann', accountId: 'ann' }, 'h')).toEqual(late);
    expect(await codeOf(agree(store, sessionId, { requestId: 'late-ann', accountId: 'ann' }, 'other body'))).toBe('idempotency_conflict');
  });

  it('an update refused for a party short of credit is refused alike when repeated after a top-up', async () => {
    const store = await testStore();
    await players(store, { ann: 1000, ben: 20 });
    const { sessionId } = await started(store, 'g1', ['ann', 'ben'], { type: 'split' }, 10);
    const refused = await updateSession(store, sessionId, { requestId: 'u1', usedUnits: 4, requested: { units: 500 } }, 'h');
    expect([refused.status, refused.body.code, refused.body.accountId]).toEqual([402, 'insufficient_credit', 'ben']);
    await topUp(store, 'ben', 't-ben-2', 1000, 'h');
    expect(await updateSession(store, sessionId, { requestId: 'u1', usedUnits: 4, requested: { units: 500 } }, 'h')).toEqual(refused);
    const next = await updateSession(store, sessionId, { requestId: 'u2', usedUnits: 4, requested: { units: 500 } }, 'h');
    expect(next.status).toBe(200);
    expect(await reconciled(store, 'ben')).toMatchObject({ balance: 1020 });
  });

  it('an update refused for a party short of credit still records the usage it reports: the debit charges it', async () => {
    const store = await testStore();
    await players(store, { ann: 1000, ben: 20 });
    const { sessionId } = await started(store, 'g1', ['ann', 'ben'], { type: 'split' }, 10);
    const refused = await updateSession(store, sessionId, { requestId: 'u1', usedUnits: 10, requested: { units: 500 } }, 'h');
    expect(refused).toMatchObject({ status: 402, body: { code: 'insufficient_credit', accountId: 'ben', finalUnitAction: 'terminate', charged: { units: 10, amount: 0 } } }); // fails before: no finalUnitAction
    const closed = await debitSession(store, sessionId, { requestId: 'd1', usedUnits: 0 }, 'h');
    expect(closed.body).toMatchObject({ state: 'closed', charged: { units: 10, amount: 10 }, returned: { amount: 0 } });
    expect(await reconciled(store, 'ann')).toMatchObject({ balance: 995, reserved: 0 });
    expect(await reconciled(store, 'ben')).toMatchObject({ balance: 15, reserved: 0 });
  });

  it('a proposal is agreed to only before its validUntil: later it is expired by the sweep, which says so; nothing reserved', async () => {
    const clock = testClock();
    const store = await testStore({ now: clock.now });
    await players(store, { ann: 1000, ben: 1000 });
    const proposed = await proposePartySession(store, { requestId: 'g1', parties: ['ann', 'ben'], principle: { type: 'split' }, clientId: 'g', serviceId: 'game', requested: { units: 100 } }, 'h');
    const id = proposed.body.sessionId as string;
    await agree(store, id, { requestId: 'ag-ann', accountId: 'ann' }, 'h');
    clock.advanceSeconds(601); // past the proposal's validUntil, before any sweep
    expect(await codeOf(agree(store, id, { requestId: 'ag-ben', accountId: 'ben' }, 'h'))).toBe('session_closed');
    // The late agreement wrote nothing: the sweep closes the proposal and publishes its expiry.
    expect((await requireSession(store, id)).state).toBe('pending_agreement');
    const capture = captureNotifications();
    expect((await sweep(store, { batchSize: 10, maxBatches: 5 })).expired).toBe(1);
    expect((await requireSession(store, id)).state).toBe('expired');
    // Both parties are told.
    const told = await relayUntil(store, capture, 2);
    expect(told.map((n: any) => n.accountId).sort()).toEqual(['ann', 'ben']);
    for (const note of told) expect(note).toMatchObject({ type: 'session_expired', sessionId: id, returned: { amount: 0 } });
    // Each under an id of its own: a consumer dropping repeated ids gets both (fails before: one id).
    expect(new Set(told.map((n: any) => n.notificationId)).size).toBe(2);
    expect(await codeOf(agree(store, id, { requestId: 'ag-ben', accountId: 'ben' }, 'h'))).toBe('session_closed');
    expect(await reconciled(store, 'ann')).toMatchObject({ reserved: 0, balance: 1000 });
    expect(await reconciled(store, 'ben')).toMatchObject({ reserved: 0, balance: 1000 });
    expect((await sweep(store, { batchSize: 10, maxBatches: 5 })).expired).toBe(0);
    expect(await relayNotifications(store, capture.notifier)).toBe(0);
    expect(capture.published).toHaveLength(2);
  });

  it('an update or a debit refused while the parties have not all agreed is refused alike once the game started (fails before: the repeats were applied; review 21 of stop 28)', async () => {
    const store = await testStore();
    await players(store, { ann: 1000, ben: 1000 });
    const proposed = await proposePartySession(store, { requestId: 'g1', parties: ['ann', 'ben'], principle: { type: 'split' }, clientId: 'g', serviceId: 'game', requested: { units: 10 } }, 'h');
    const id = proposed.body.sessionId as string;
    const update = { requestId: 'u-early', usedUnits: 4, requested: { units: 100 } };
    const debit = { requestId: 'd-early', usedUnits: 35 };
    expect(await codeOf(updateSession(store, id, update, 'h'))).toBe('conflict');
    expect(await codeOf(debitSession(store, id, debit, 'h'))).toBe('conflict');
    for (const accountId of ['ann', 'ben']) await agree(store, id, { requestId: `ag-${accountId}`, accountId }, 'h');
    expect((await requireSession(store, id)).state).toBe('active');
    for (const repeat of [updateSession(store, id, update, 'h'), debitSession(store, id, debit, 'h')]) {
      expect(await repeat).toMatchObject({ status: 409, body: { code: 'conflict' } });
    }
    // The game is as the agreements left it: nothing grown, nothing charged.
    expect(await requireSession(store, id)).toMatchObject({ state: 'active', hold: { grantedUnits: 10, usedUnits: 0, holdMinor: 10 } });
    expect(await reconciled(store, 'ann')).toMatchObject({ balance: 1000, reserved: 5 });
  });

  it('an update asking an { amount } that buys no block is 400 with nothing written, as on a plain session (fails before: 200 granting nothing; review 21 of stop 28)', async () => {
    const store = await testStore();
    await players(store, { ann: 1000, ben: 1000 });
    await putService(store, { ...game, serviceId: 'dear', price: { amountMinor: 10, perUnits: 60 } });
    const proposed = await proposePartySession(store, { requestId: 'g1', parties: ['ann', 'ben'], principle: { type: 'split' }, clientId: 'g', serviceId: 'dear', requested: { units: 60 } }, 'h');
    const id = proposed.body.sessionId as string;
    for (const accountId of ['ann', 'ben']) await agree(store, id, { requestId: `ag-${accountId}`, accountId }, 'h');
    const before = await requireSession(store, id);
    expect(await codeOf(updateSession(store, id, { requestId: 'u1', usedUnits: 30, requested: { amount: 5 } }, 'h'))).toBe('validation_failed');
    expect((await requireSession(store, id)).seq).toBe(before.seq);
    expect((await updateSession(store, id, { requestId: 'u2', usedUnits: 30, requested: { amount: 10 } }, 'h')).status).toBe(200);
  });

  it.each<[string, Principle, number, string]>([
    ['loser-pays between two, each holding the whole', { type: 'loser-pays' }, 2 ** 52 + 1, 'proposal'],
    ['split among three, rounding up each part', { type: 'split' }, Number.MAX_SAFE_INTEGER, 'proposal'],
    ['loser-pays, grown by an update', { type: 'loser-pays' }, 2 ** 52, 'update'],
  ])('holds that would together pass 2^53-1 are 400, never a 500 (%s; fails before: the SDK refused the number; review 21 of stop 28)', async (_name, principle, units, where) => {
    const store = await testStore();
    const parties = principle.type === 'split' ? ['ann', 'ben', 'cid'] : ['ann', 'ben'];
    await players(store, Object.fromEntries(parties.map((p) => [p, 1000])));
    const propose = (requestedUnits: number) => proposePartySession(store, { requestId: 'g1', parties, principle, clientId: 'g', serviceId: 'game', requested: { units: requestedUnits } }, 'h');
    if (where === 'proposal') {
      expect(await codeOf(propose(units))).toBe('validation_failed');
      expect(await getSessionItem(store, sessionIdFor('g1'))).toBeNull();
      return;
    }
    const id = (await propose(10)).body.sessionId as string;
    for (const accountId of parties) await agree(store, id, { requestId: `ag-${accountId}`, accountId }, 'h');
    expect(await codeOf(updateSession(store, id, { requestId: 'u1', usedUnits: 1, requested: { units } }, 'h'))).toBe('validation_failed');
    expect(await reconciled(store, 'ann')).toMatchObject({ balance: 1000, reserved: 10 });
  });

  it('a party past its validUntil stops the game growing its grant, also within what the holds cover (fails before: granted 9,216 units more; review 23 of stop 28)', async () => {
    const clock = testClock();
    const store = await testStore({ now: clock.now });
    await putService(store, { ...game, serviceId: 'blocky', price: { amountMinor: 100, perUnits: 1024 }, validitySeconds: 3600 });
    await createAccount(store, { accountId: 'ann', currency: 'EUR', kind: 'prepaid' });
    await topUp(store, 'ann', 't-ann', 1000, 'h');
    await createAccount(store, { accountId: 'ben', currency: 'EUR', kind: 'prepaid', validUntil: new Date(clock.now().getTime() + 60_000).toISOString() });
    await topUp(store, 'ben', 't-ben', 1000, 'h');
    const proposed = await proposePartySession(store, { requestId: 'g1', parties: ['ann', 'ben'], principle: { type: 'split' }, clientId: 'g', serviceId: 'blocky', requested: { units: 100 } }, 'h');
    const id = proposed.body.sessionId as string;
    for (const accountId of ['ann', 'ben']) await agree(store, id, { requestId: `ag-${accountId}`, accountId }, 'h');
    clock.advanceSeconds(120); // ben's validUntil has passed
    const refused = await updateSession(store, id, { requestId: 'u1', usedUnits: 100, requested: { units: 500 } }, 'h');
    expect(refused).toMatchObject({ status: 403, body: { code: 'account_inactive', accountId: 'ben' } });
    expect((await requireSession(store, id)).hold.grantedUnits).toBe(100);
  });

  it('a party past its validUntil is granted nothing again, also what is left of the game\'s grant (fails before: 200 with 900 units and a new validUntil; review 26 of stop 28)', async () => {
    const clock = testClock();
    const store = await testStore({ now: clock.now });
    await putService(store, { ...game, validitySeconds: 3600 });
    await createAccount(store, { accountId: 'ann', currency: 'EUR', kind: 'prepaid' });
    await topUp(store, 'ann', 't-ann', 1000, 'h');
    await createAccount(store, { accountId: 'ben', currency: 'EUR', kind: 'prepaid', validUntil: new Date(clock.now().getTime() + 60_000).toISOString() });
    await topUp(store, 'ben', 't-ben', 1000, 'h');
    const proposed = await proposePartySession(store, { requestId: 'g1', parties: ['ann', 'ben'], principle: { type: 'split' }, clientId: 'g', serviceId: 'game', requested: { units: 1000 } }, 'h');
    const id = proposed.body.sessionId as string;
    for (const accountId of ['ann', 'ben']) await agree(store, id, { requestId: `ag-${accountId}`, accountId }, 'h');
    clock.advanceSeconds(120);
    const before = await requireSession(store, id);
    for (const [rid, requested] of [['u1', { units: 100 }], ['u2', undefined]] as const) {
      const answer = await updateSession(store, id, { requestId: rid, usedUnits: 100, ...(requested ? { requested } : {}) }, 'h');
      expect(answer).toMatchObject({ status: 403, body: { code: 'account_inactive', accountId: 'ben' } });
    }
    // The usage is recorded, the game lives no longer for it than the refusal's validitySeconds.
    expect(await requireSession(store, id)).toMatchObject({ hold: { grantedUnits: before.hold.grantedUnits, usedUnits: 200 } });
  });
});
