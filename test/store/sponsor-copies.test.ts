// Copies of one request (same requestId) make a sponsor pay once, whichever round each copy
// is in (review 8 of stop 26: a copy whose first round went to the family asked the sponsor
// under another key than a copy that asked it at once, and the sponsor paid for each).
import { describe, expect, it } from 'vitest';
import { TransactWriteCommand } from '@aws-sdk/lib-dynamodb';
import { reconciled, testStore, voice } from '../helpers.js';
import type { Db, Store } from '../../functions/store/db.js';
import { putService } from '../../functions/store/services.js';
import { createAccount, topUp } from '../../functions/store/accounts.js';
import { reserve, debitSession } from '../../functions/store/sessions.js';
import { setSponsors } from '../../functions/store/sponsors.js';
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
});
