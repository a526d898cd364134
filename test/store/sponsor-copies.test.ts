// Copies of one request (same requestId) make a sponsor pay once, whichever round each copy
// is in (review 8 of stop 26: a copy whose first round went to the family asked the sponsor
// under another key than a copy that asked it at once, and the sponsor paid for each).
import { describe, expect, it } from 'vitest';
import { GetCommand, TransactWriteCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { reconciled, testStore, voice } from '../helpers.js';
import type { Db, Store } from '../../functions/store/db.js';
import { putService } from '../../functions/store/services.js';
import { createAccount, topUp } from '../../functions/store/accounts.js';
import { reserve, debitSession } from '../../functions/store/sessions.js';
import { setSponsors } from '../../functions/store/sponsors.js';
import { agree, proposePartySession } from '../../functions/store/parties.js';
import { getServiceAccount, manualRecharge, putServiceAccount } from '../../functions/store/serviceAccounts.js';

const data = { unit: 'kilobytes' as const, rate: { amountMinor: 100, units: 1024 }, priority: 1, onEmpty: 'deny' as const, rechargeAmountMinor: 500 };
const keysOf = (command: TransactWriteCommand) => JSON.stringify(command.input.TransactItems!.map((item: any) => item.Put?.Item?.pk ?? item.Update?.Key?.pk));

/**
 * `wrapped` runs `hook` (once) just before its first transaction that `when` matches; `base`
 * is the same table without it (the other copy, another process).
 */
async function hookedStores() {
  let inner!: Db;
  const hooks: Array<{ when: (command: TransactWriteCommand) => boolean; run: () => Promise<unknown> }> = [];
  const wrapped = await testStore({ db: (db) => { inner = db; return { send: (async (command: any) => {
    if (command instanceof TransactWriteCommand) for (const hook of [...hooks]) if (hook.when(command)) { hooks.splice(hooks.indexOf(hook), 1); await hook.run(); }
    return db.send(command);
  }) as Db['send'] }; } });
  const base: Store = { ...wrapped, db: inner };
  return { wrapped, base, hooks };
}

/** alice holds 200, all of it idle in her member kid's allotment; mum, holding 10,000, sponsors alice. */
async function familyWithSponsor(store: Store) {
  await putService(store, voice);
  await createAccount(store, { accountId: 'alice', currency: 'EUR', kind: 'prepaid' });
  await topUp(store, 'alice', 'ta', 200, 'h');
  await createAccount(store, { accountId: 'kid', currency: 'EUR', kind: 'prepaid', mainAccountId: 'alice' });
  const held = await reserve(store, { requestId: 'k1', accountId: 'kid', clientId: 'c', serviceId: 'voice', requested: { units: 6000 } }, 'h');
  await debitSession(store, held.body.sessionId as string, { requestId: 'k1d', usedUnits: 0 }, 'h');
  await createAccount(store, { accountId: 'mum', currency: 'EUR', kind: 'prepaid' });
  await topUp(store, 'mum', 'tm', 10_000, 'h');
  await setSponsors(store, 'alice', [{ accountId: 'mum', priority: 1 }]);
  await putServiceAccount(store, 'alice', 'data', data);
}

describe('copies of one request and the family\'s money', () => {
  it('two copies of a reserve, one running through just before the other\'s transfer: the sponsor pays the shortfall once', async () => {
    const { wrapped, base, hooks } = await hookedStores();
    await familyWithSponsor(base);
    const call = { requestId: 'call1', accountId: 'alice', clientId: 'c', serviceId: 'voice', requested: { units: 15_000 } }; // 500
    hooks.push({ when: (command) => keysOf(command).includes('SPT#'), run: () => reserve(base, call, 'h') });
    expect((await reserve(wrapped, call, 'h')).status).toBe(201);
    expect(10_000 - (await reconciled(base, 'mum')).balance).toBe(300); // the family held 200
  });

  it('two copies of a recharge, alike', async () => {
    const { wrapped, base, hooks } = await hookedStores();
    await familyWithSponsor(base);
    hooks.push({ when: (command) => keysOf(command).includes('SPT#'), run: () => manualRecharge(base, 'alice', 'data', { requestId: 'r1' }, 'h') });
    expect((await manualRecharge(wrapped, 'alice', 'data', { requestId: 'r1' }, 'h')).status).toBe(200);
    expect((await getServiceAccount(base, 'alice', 'data'))!.balance).toBe(5120);
    expect(10_000 - (await reconciled(base, 'mum')).balance).toBe(300);
  });

  it('two copies of a recharge with a charge taking what the first transfer brought: the sponsor pays for the recharge and the charge, no more', async () => {
    const { wrapped, base, hooks } = await hookedStores();
    await putService(base, voice);
    await createAccount(base, { accountId: 'alice', currency: 'EUR', kind: 'prepaid' });
    await createAccount(base, { accountId: 'mum', currency: 'EUR', kind: 'prepaid' });
    await topUp(base, 'mum', 'tm', 10_000, 'h');
    await setSponsors(base, 'alice', [{ accountId: 'mum', priority: 1 }]);
    await putServiceAccount(base, 'alice', 'data', data);
    let recharges = 0;
    // Before the recharge's second write: a call takes what the first transfer brought; before
    // its second transfer: the copy runs through.
    hooks.push({ when: (command) => keysOf(command).includes('REQ#r1') && ++recharges === 2, run: () => reserve(base, { requestId: 'drain', accountId: 'alice', clientId: 'c', serviceId: 'voice', requested: { units: 15_000 } }, 'h') });
    let transfers = 0;
    hooks.push({ when: (command) => keysOf(command).includes('SPT#') && ++transfers === 2, run: () => manualRecharge(base, 'alice', 'data', { requestId: 'r1' }, 'h') });
    expect((await manualRecharge(wrapped, 'alice', 'data', { requestId: 'r1' }, 'h')).status).toBe(200);
    expect((await getServiceAccount(base, 'alice', 'data'))!.balance).toBe(5120);
    expect(10_000 - (await reconciled(base, 'mum')).balance).toBe(1000); // one recharge of 500, one call of 500
  });

  it('two copies of a member\'s reserve, one running through after the other found its main account empty: the main account\'s sponsor pays once (a key counting the account\'s transfers, tried at stop 26, made it pay again)', async () => {
    let inner!: Db;
    let copy: (() => Promise<unknown>) | null = null;
    const wrapped = await testStore({ db: (db) => { inner = db; return { send: (async (command: any) => {
      // After this copy's take of an allotment came back refused (the main account empty),
      // the other copy runs through: its sponsor transfer and its take.
      if (copy && command instanceof TransactWriteCommand && JSON.stringify(command.input).includes('"allotment"')) {
        const run = copy;
        copy = null;
        try { return await db.send(command); } finally { await run(); }
      }
      return db.send(command);
    }) as Db['send'] }; } });
    const base: Store = { ...wrapped, db: inner };
    await putService(base, voice);
    await createAccount(base, { accountId: 'home', currency: 'EUR', kind: 'prepaid' });
    await createAccount(base, { accountId: 'kid', currency: 'EUR', kind: 'prepaid', mainAccountId: 'home' });
    await createAccount(base, { accountId: 'S', currency: 'EUR', kind: 'prepaid' });
    await topUp(base, 'S', 't', 10_000, 'h');
    await setSponsors(base, 'home', [{ accountId: 'S', priority: 1 }]);
    const call = { requestId: 'dup', accountId: 'kid', clientId: 'c', serviceId: 'voice', requested: { units: 600 } }; // 20
    copy = () => reserve(base, call, 'h');
    const answer = await reserve(wrapped, call, 'h');
    expect(answer.status).toBe(201);
    expect(await reserve(base, call, 'h')).toEqual(answer);
    expect(10_000 - (await reconciled(base, 'S')).balance).toBe(20);
  });

  it('two copies of a game\'s last agreement, the short party\'s family money coming back in one of them first: its sponsor pays the rest once (fails before: 80 for a shortfall of 40)', async () => {
    const { wrapped, base, hooks } = await hookedStores();
    await putService(base, voice);
    await putService(base, { serviceId: 'game', unit: 'seconds', price: { amountMinor: 1, perUnits: 1 }, validitySeconds: 600, interimIntervalSeconds: 60 });
    for (const accountId of ['ann', 'ben', 'cid', 'spo']) await createAccount(base, { accountId, currency: 'EUR', kind: 'prepaid' });
    await topUp(base, 'ann', 'ta', 1000, 'h');
    await topUp(base, 'ben', 'tb', 1000, 'h');
    await topUp(base, 'spo', 'ts', 1000, 'h');
    // cid's 60 sit idle in its member's allotment.
    await topUp(base, 'cid', 'tc', 60, 'h');
    await createAccount(base, { accountId: 'kid', currency: 'EUR', kind: 'prepaid', mainAccountId: 'cid' });
    const held = await reserve(base, { requestId: 'k1', accountId: 'kid', clientId: 'c', serviceId: 'voice', requested: { units: 1800 } }, 'h');
    await debitSession(base, held.body.sessionId as string, { requestId: 'k1d', usedUnits: 0 }, 'h');
    await setSponsors(base, 'cid', [{ accountId: 'spo', priority: 1 }]);
    const proposed = await proposePartySession(base, { requestId: 'g', parties: ['ann', 'ben', 'cid'], principle: { type: 'loser-pays' }, clientId: 'game-server', serviceId: 'game', requested: { units: 100 } }, 'h');
    const sessionId = proposed.body.sessionId as string;
    await agree(base, sessionId, { requestId: 'g-ann', accountId: 'ann' }, 'h');
    await agree(base, sessionId, { requestId: 'g-ben', accountId: 'ben' }, 'h');
    // Copy A brings cid's 60 back, then asks the sponsor for 40; copy B runs whole just before.
    const last = { requestId: 'g-cid', accountId: 'cid' };
    let copyB: unknown;
    hooks.push({ when: (command) => keysOf(command).includes('SPT#'), run: async () => { copyB = await agree(base, sessionId, last, 'h'); } });
    const copyA = await agree(wrapped, sessionId, last, 'h');
    expect(copyA).toMatchObject({ status: 200, body: { state: 'active' } });
    expect(copyB).toEqual(copyA);
    expect(1000 - (await reconciled(base, 'spo')).balance).toBe(40);
    expect(await reconciled(base, 'cid')).toMatchObject({ reserved: 100 });
  });

  it('a copy whose write was refused, while the other copy was applied with the account\'s own money, makes the sponsor pay nothing (fails before: 500; review 15 of stop 27)', async () => {
    let inner!: Db;
    let wroteOnce = false;
    let copy: (() => Promise<unknown>) | null = null;
    const wrapped = await testStore({ db: (db) => { inner = db; return { send: (async (command: any) => {
      const text = JSON.stringify(command.input ?? {});
      // After this copy's refused write, before it asks the sponsor (its look at the account,
      // or its transfer): the other copy runs through, with money a top-up brought.
      const asksNow = (command instanceof GetCommand && wroteOnce && text.includes('"ACC#alice"')) || (command instanceof TransactWriteCommand && text.includes('SPT#'));
      if (copy && asksNow) { const run = copy; copy = null; await run(); }
      if (command instanceof TransactWriteCommand || command instanceof UpdateCommand) wroteOnce = true;
      return db.send(command);
    }) as Db['send'] }; } });
    const base: Store = { ...wrapped, db: inner };
    await putService(base, voice);
    await createAccount(base, { accountId: 'alice', currency: 'EUR', kind: 'prepaid' });
    await createAccount(base, { accountId: 'mum', currency: 'EUR', kind: 'prepaid' });
    await topUp(base, 'mum', 'tm', 10_000, 'h');
    await setSponsors(base, 'alice', [{ accountId: 'mum', priority: 1 }]);
    const call = { requestId: 'call1', accountId: 'alice', clientId: 'c', serviceId: 'voice', requested: { units: 15_000 } }; // 500
    copy = async () => { await topUp(base, 'alice', 'ta', 500, 'h'); return reserve(base, call, 'h'); };
    const answer = await reserve(wrapped, call, 'h');
    expect(copy).toBe(null);
    expect(answer).toEqual(await reserve(base, call, 'h'));
    expect(answer).toMatchObject({ status: 201, body: { granted: { amount: 500 } } });
    expect((await reconciled(base, 'mum')).balance).toBe(10_000);
    expect(await reconciled(base, 'alice')).toMatchObject({ balance: 500, reserved: 500 });
  });
});
