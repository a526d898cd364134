// DynamoDB's item limit (400 KB) against what grows with use (review 22 of stop 28): an
// account records each open operation in its item, so the number it records at once is
// capped (MAX_RECORDED_OPS), with a refusal a client can act on instead of a 500; and an
// owner keeps at most MAX_SERVICE_ACCOUNTS service accounts.
import { describe, expect, it } from 'vitest';
import { GetCommand } from '@aws-sdk/lib-dynamodb';
import { codeOf, testClock, testStore } from '../helpers.js';
import { key } from '../../functions/store/table.js';
import { createAccount, topUp } from '../../functions/store/accounts.js';
import { putService } from '../../functions/store/services.js';
import { debitSession, reserve, sessionIdFor, updateSession } from '../../functions/store/sessions.js';
import { directDebit } from '../../functions/store/debits.js';
import { agree, proposePartySession } from '../../functions/store/parties.js';
import { sweep } from '../../functions/store/sweep.js';
import { MAX_RECORDED_OPS } from '../../functions/store/ops.js';
import { manualRecharge, MAX_SERVICE_ACCOUNTS, putServiceAccount } from '../../functions/store/serviceAccounts.js';
import { claimRemovals } from '../../functions/store/compaction.js';

describe('an account with as many operations recorded as its item may hold', () => {
  it('refuses a new reserve, event or game 409 conflict (fails before: 500 past ~2,000); its open sessions go on, and a close and the sweep make room', async () => {
    // The cap, reached sooner: every write of the account rewrites its growing item.
    const cap = 100;
    const store = { ...(await testStore()), maxRecordedOps: cap };
    await putService(store, { serviceId: 'call', unit: 'seconds', price: { amountMinor: 1, perUnits: 1 }, validitySeconds: 86_400, interimIntervalSeconds: 60 });
    await createAccount(store, { accountId: 'big', currency: 'EUR', kind: 'prepaid' });
    await topUp(store, 'big', 't-big', 1_000_000_000, 'h');
    await createAccount(store, { accountId: 'friend', currency: 'EUR', kind: 'prepaid' });
    await topUp(store, 'friend', 't-friend', 1000, 'h');
    const rid = (i: number) => `r-${i}`;
    // One with a 128-character request id, the largest entry there is: so many would fit.
    const longest = 'r'.repeat(128);
    await reserve(store, { requestId: longest, accountId: 'big', clientId: 'c', serviceId: 'call', requested: { units: 10 } }, 'h');
    for (let i = 1; i < cap; i += 33) {
      await Promise.all(Array.from({ length: Math.min(33, cap - i) }, (_, j) => reserve(store, { requestId: rid(i + j), accountId: 'big', clientId: 'c', serviceId: 'call', requested: { units: 10 } }, 'h')));
    }
    const item = (await store.db.send(new GetCommand({ TableName: store.tableName, Key: key.account('big') }))).Item!;
    expect(Object.keys(item.ops)).toHaveLength(cap);
    const largest = Buffer.byteLength(JSON.stringify({ [sessionIdFor(longest)]: item.ops[sessionIdFor(longest)] }));
    expect(largest * MAX_RECORDED_OPS).toBeLessThan(350_000);

    expect(await codeOf(reserve(store, { requestId: 'one-more', accountId: 'big', clientId: 'c', serviceId: 'call', requested: { units: 10 } }, 'h'))).toBe('conflict');
    expect(await codeOf(directDebit(store, { requestId: 'e-more', accountId: 'big', clientId: 'c', serviceId: 'call', units: 1 }, 'h'))).toBe('conflict');
    const game = await proposePartySession(store, { requestId: 'g', parties: ['friend', 'big'], principle: { type: 'split' }, clientId: 'g', serviceId: 'call', requested: { units: 10 } }, 'h');
    await agree(store, game.body.sessionId as string, { requestId: 'g-a1', accountId: 'friend' }, 'h');
    expect(await agree(store, game.body.sessionId as string, { requestId: 'g-a2', accountId: 'big' }, 'h')).toMatchObject({ status: 409, body: { code: 'conflict', accountId: 'big' } });
    // A repeat of a reserve answered before is answered as before; open sessions go on.
    expect((await reserve(store, { requestId: rid(7), accountId: 'big', clientId: 'c', serviceId: 'call', requested: { units: 10 } }, 'h')).status).toBe(201);
    expect((await updateSession(store, sessionIdFor(longest), { requestId: `${longest.slice(0, 120)}-u1`, usedUnits: 10, requested: { units: 10 } }, 'h')).status).toBe(200);
    // Closed sessions' entries go at the sweep's visit: then there is room again.
    for (let i = 1; i <= 10; i++) await debitSession(store, sessionIdFor(rid(i)), { requestId: 'end', usedUnits: 1 }, 'h');
    await sweep(store, { batchSize: 100, maxBatches: 20 });
    expect((await reserve(store, { requestId: 'one-more', accountId: 'big', clientId: 'c', serviceId: 'call', requested: { units: 10 } }, 'h')).status).toBe(201);
  }, 120_000);
});

describe('an account at its cap of recorded operations makes room', () => {
  async function full(cap: number) {
    const clock = testClock();
    const store = { ...(await testStore({ now: clock.now })), maxRecordedOps: cap };
    await putService(store, { serviceId: 'call', unit: 'seconds', price: { amountMinor: 1, perUnits: 1 }, validitySeconds: 86_400, interimIntervalSeconds: 60 });
    await createAccount(store, { accountId: 'big', currency: 'EUR', kind: 'prepaid' });
    await topUp(store, 'big', 't-big', 1_000_000, 'h');
    for (let i = 0; i < cap; i++) await reserve(store, { requestId: `r-${i}`, accountId: 'big', clientId: 'c', serviceId: 'call', requested: { units: 10 } }, 'h');
    expect(await codeOf(reserve(store, { requestId: 'more', accountId: 'big', clientId: 'c', serviceId: 'call', requested: { units: 10 } }, 'h'))).toBe('conflict');
    return { store, clock };
  }
  const more = (requestId: string) => ({ requestId, accountId: 'big', clientId: 'c', serviceId: 'call', requested: { units: 10 } });

  it('at once after a close in the same process: its removal rides on the next write (fails before: counted as still there; review 25 of stop 28)', async () => {
    const { store } = await full(10);
    await debitSession(store, sessionIdFor('r-0'), { requestId: 'end', usedUnits: 1 }, 'h');
    expect((await reserve(store, more('more'), 'h')).status).toBe(201);
  });

  it('within a minute after a close elsewhere: the refusal brings the sweep, which removes finished entries without their 5 minutes (fails before: 5 minutes; review 25 of stop 28)', async () => {
    const { store, clock } = await full(10);
    await debitSession(store, sessionIdFor('r-0'), { requestId: 'end', usedUnits: 1 }, 'h');
    claimRemovals(store, 'big', ''); // the close ran in another container: this one never carries its removal
    expect(await codeOf(reserve(store, more('more'), 'h'))).toBe('conflict');
    clock.advanceSeconds(61);
    await sweep(store, { batchSize: 100, maxBatches: 5 });
    expect((await reserve(store, more('more'), 'h')).status).toBe(201);
  });

  it('a charge routed to a service account is recorded there, whatever the owner\'s item holds (fails before: 409; review 25 of stop 28)', async () => {
    const { store } = await full(10);
    await putService(store, { serviceId: 'data', unit: 'kilobytes', price: { amountMinor: 100, perUnits: 1024 }, validitySeconds: 300, interimIntervalSeconds: 60 });
    await putServiceAccount(store, 'big', 'data', { unit: 'kilobytes', rate: { amountMinor: 100, units: 1024 }, priority: 1, onEmpty: 'deny' });
    await manualRecharge(store, 'big', 'data', { requestId: 'g1', amountMinor: 1000 }, 'h');
    expect((await reserve(store, { requestId: 'd1', accountId: 'big', clientId: 'ggsn', serviceId: 'data', requested: { units: 100 } }, 'h')).status).toBe(201);
    expect((await directDebit(store, { requestId: 'd2', accountId: 'big', clientId: 'ggsn', serviceId: 'data', units: 100 }, 'h')).status).toBe(201);
  });
});

describe('an owner with as many service accounts as it may keep', () => {
  it('refuses another classification 409 conflict, and changes those it has (fails before: past ~2,600 a half-written 500)', async () => {
    const store = await testStore();
    await createAccount(store, { accountId: 'own', currency: 'EUR', kind: 'prepaid' });
    const settings = { unit: 'kilobytes' as const, rate: { amountMinor: 100, units: 1024 }, priority: 1, onEmpty: 'deny' as const };
    for (let i = 0; i < MAX_SERVICE_ACCOUNTS; i += 25) {
      await Promise.all(Array.from({ length: 25 }, (_, j) => putServiceAccount(store, 'own', `c${i + j}`, settings)));
    }
    expect(await codeOf(putServiceAccount(store, 'own', 'one-more', settings))).toBe('conflict');
    expect((await store.db.send(new GetCommand({ TableName: store.tableName, Key: key.account('own~one-more') }))).Item).toBeUndefined();
    expect((await putServiceAccount(store, 'own', 'c3', { ...settings, priority: 2 })).created).toBe(false);
  });
});
