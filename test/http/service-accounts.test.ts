// Seed 004 (service accounts, recharges, onEmpty actions, notifications) and seed 003
// (sponsors) over HTTP: the local server feeding API Gateway events to the handlers.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testApi } from '../helpers.js';

let api: Awaited<ReturnType<typeof testApi>>;
const dataAccount = {
  unit: 'kilobytes', rate: { amount: 100, units: 1024 }, priority: 1, minimumLevel: 2048, rechargeAmount: 200,
  onEmpty: 'redirect', redirectUrl: 'https://shop.example/data',
};

beforeAll(async () => {
  api = await testApi();
  await api.call('PUT', '/services/voice', { unit: 'seconds', price: { amount: 2, per: 60 } });
  await api.call('PUT', '/services/data', { unit: 'kilobytes', price: { amount: 100, per: 1024 } });
  await api.call('PUT', '/services/games', { unit: 'events', price: { amount: 50, per: 1 } });
  await api.call('POST', '/accounts', { accountId: 'alice', currency: 'EUR', kind: 'prepaid' });
  await api.call('POST', '/accounts/alice/topup', { requestId: 'alice-topup', amount: 1000 });
});
afterAll(() => api.stop());

describe('a data bundle in kilobytes bought from the main balance', () => {
  it('a top-up answers the account as GET shows it, service accounts and sponsors included', async () => {
    await api.call('POST', '/accounts', { accountId: 'bob', currency: 'EUR', kind: 'prepaid' });
    await api.call('PUT', '/accounts/bob/service-accounts/data', dataAccount);
    // A sponsor with nothing to give (a sponsor pays bob's recharges too: see below).
    await api.call('POST', '/accounts', { accountId: 'zed', currency: 'EUR', kind: 'prepaid' });
    await api.call('PATCH', '/accounts/bob', { sponsors: [{ accountId: 'zed', priority: 1 }] });
    const toppedUp = await api.call('POST', '/accounts/bob/topup', { requestId: 'bob-topup', amount: 100 });
    expect(toppedUp).toMatchObject({ status: 200, body: { balance: 100, sponsors: [{ accountId: 'zed', priority: 1 }], serviceAccounts: [expect.objectContaining({ classification: 'data' })] } });
    expect(toppedUp.body).toEqual((await api.call('GET', '/accounts/bob')).body);
  });

  it('is created, recharged on request, drawn by sessions in units, and recharged below its minimum level by the trigger', async () => {
    const created = await api.call('PUT', '/accounts/alice/service-accounts/data', dataAccount);
    expect(created).toMatchObject({ status: 201, body: { accountId: 'alice', classification: 'data', unit: 'kilobytes', balance: 0, onEmpty: 'redirect' } });
    const recharged = await api.call('POST', '/accounts/alice/service-accounts/data/recharge', { requestId: 'd-r1', amount: 300 });
    expect(recharged).toMatchObject({ status: 200, body: { recharged: { amount: 300, units: 3072 }, serviceAccount: { balance: 3072 } } });
    expect(await api.call('POST', '/accounts/alice/service-accounts/data/recharge', { requestId: 'd-r1', amount: 300 })).toEqual(recharged);

    // A data session draws kilobytes from the service account, not money from alice.
    const opened = await api.call('POST', '/sessions', { requestId: 'd-s1', accountId: 'alice', clientId: 'ggsn', serviceId: 'data', requested: { units: 2048 } });
    expect(opened).toMatchObject({ status: 201, body: { chargedAccountId: 'alice', serviceAccount: 'data', unit: 'kilobytes', granted: { units: 2048 } } });
    const closed = await api.call('POST', `/sessions/${opened.body.sessionId}/debit`, { requestId: 'd-s1-end', used: { units: 1500 } });
    expect(closed).toMatchObject({ status: 200, body: { state: 'closed', charged: { units: 1500 } } });
    let alice = await api.call('GET', '/accounts/alice');
    expect(alice.body).toMatchObject({ balance: 700, serviceAccounts: [expect.objectContaining({ classification: 'data', balance: 1572, available: 1572 })] });

    // The reservation took available from 3072 to 1024 < 2048: that write crossed the level and
    // asked for a recharge (before the units run out, not after); the trigger does it.
    expect((await api.call('GET', '/accounts/alice/notifications')).body.notifications[0]).toMatchObject({ type: 'low_balance', classification: 'data', available: 1024 });
    const run = await api.call('POST', '/local/schedules/recharge-trigger/run');
    // (bob's data account, created below its minimum by the test above, asked too: neither bob
    // nor his sponsor can pay it.)
    expect(run.body.summary).toMatchObject({ recharged: 1 });
    expect((await api.call('POST', '/local/schedules/recharge-trigger/run')).body.summary).toMatchObject({ recharged: 0 });
    alice = await api.call('GET', '/accounts/alice');
    expect(alice.body).toMatchObject({ balance: 500, serviceAccounts: [expect.objectContaining({ balance: 1572 + 2048 })] });
    expect((await api.call('GET', '/accounts/alice/notifications')).body.notifications[0]).toMatchObject({ type: 'recharge_done', amount: 200, units: 2048, trigger: 'threshold' });
    // The notifications went out on the event log (the event bus in AWS).
    const events = (await api.call('GET', '/local/events')).body.events.map((e: any) => e.type);
    expect(events).toEqual(expect.arrayContaining(['low_balance', 'recharge_done']));

    // Both ledgers reconcile: money out of alice, units into the service account.
    const ledger = (await api.call('GET', '/accounts/alice/ledger')).body.entries;
    expect(ledger.reduce((s: number, e: any) => s + e.amount, 0)).toBe(500);
    const units = (await api.call('GET', '/accounts/alice/service-accounts/data/ledger')).body.entries;
    expect(units.reduce((s: number, e: any) => s + e.amount, 0)).toBe(1572 + 2048);

    // A voice call still pays money from alice.
    const voice = await api.call('POST', '/sessions', { requestId: 'd-v1', accountId: 'alice', clientId: 'msc', serviceId: 'voice', requested: { units: 60 } });
    expect(voice.body).toMatchObject({ chargedAccountId: 'alice', granted: { amount: 2 } });
    expect(voice.body.serviceAccount).toBeUndefined();
  });

  it.each([
    ['deny', { finalUnitAction: 'terminate' }],
    ['redirect', { finalUnitAction: 'redirect', redirectUrl: 'https://shop.example/games' }],
    ['restrict', { finalUnitAction: 'restrict' }],
  ])('an empty service account answers per onEmpty: %s', async (onEmpty, expected) => {
    const owner = `empty-${onEmpty}`;
    await api.call('POST', '/accounts', { accountId: owner, currency: 'EUR', kind: 'prepaid' });
    await api.call('PUT', `/accounts/${owner}/service-accounts/games`, {
      unit: 'events', rate: { amount: 50, units: 1 }, priority: 1, onEmpty, ...(onEmpty === 'redirect' ? { redirectUrl: 'https://shop.example/games' } : {}),
    });
    const refused = await api.call('POST', '/debits', { requestId: `${owner}-e1`, accountId: owner, clientId: 'game-server', serviceId: 'games', units: 1 });
    expect(refused).toMatchObject({ status: 402, body: { code: 'insufficient_credit', ...expected } });
    const session = await api.call('POST', '/sessions', { requestId: `${owner}-s1`, accountId: owner, clientId: 'game-server', serviceId: 'games', requested: { units: 1 } });
    expect(session).toMatchObject({ status: 402, body: { code: 'insufficient_credit', ...expected } });
    expect((await api.call('GET', `/accounts/${owner}/notifications`)).body.notifications[0]).toMatchObject({ type: 'service_denied', serviceId: 'games' });
  });

  it('a grant that empties the service account carries finalUnit with the onEmpty action', async () => {
    await api.call('POST', '/accounts', { accountId: 'last-units', currency: 'EUR', kind: 'prepaid' });
    await api.call('POST', '/accounts/last-units/topup', { requestId: 'last-units-topup', amount: 100 });
    await api.call('PUT', '/accounts/last-units/service-accounts/data', { ...dataAccount, minimumLevel: undefined, rechargeAmount: undefined });
    await api.call('POST', '/accounts/last-units/service-accounts/data/recharge', { requestId: 'last-units-r', amount: 100 });
    const opened = await api.call('POST', '/sessions', { requestId: 'last-units-s', accountId: 'last-units', clientId: 'ggsn', serviceId: 'data', requested: { units: 5000 } });
    expect(opened).toMatchObject({ status: 201, body: { granted: { units: 1024 }, finalUnit: { action: 'redirect', redirectUrl: 'https://shop.example/data' } } });
  });

  it('PATCH suspends an account, which then authorizes nothing, and makes it active again', async () => {
    await api.call('POST', '/accounts', { accountId: 'sue', currency: 'EUR', kind: 'prepaid' });
    await api.call('POST', '/accounts/sue/topup', { requestId: 'sue-t', amount: 100 });
    expect(await api.call('PATCH', '/accounts/sue', { status: 'suspended' })).toMatchObject({ status: 200, body: { accountId: 'sue', status: 'suspended' } });
    const event = { requestId: 'sue-e1', accountId: 'sue', clientId: 'smsc', serviceId: 'voice', units: 60 };
    expect(await api.call('POST', '/debits', event)).toMatchObject({ status: 403, body: { code: 'account_inactive' } });
    expect(await api.call('PATCH', '/accounts/sue', { status: 'active' })).toMatchObject({ status: 200, body: { status: 'active' } });
    expect((await api.call('POST', '/debits', { ...event, requestId: 'sue-e2' })).status).toBe(201);
  });

  it('refuses bad service-account input with a 4xx problem and writes nothing', async () => {
    const cases: Array<[string, string, unknown, number]> = [
      ['PUT', '/accounts/alice/service-accounts/video', { ...dataAccount, onEmpty: 'redirect', redirectUrl: undefined }, 400],
      ['PUT', '/accounts/alice/service-accounts/video', { ...dataAccount, rate: { amount: 1.5, units: 1024 } }, 400],
      ['PUT', '/accounts/alice/service-accounts/video', { ...dataAccount, unit: 'money' }, 400],
      ['PUT', '/accounts/alice/service-accounts/video', { ...dataAccount, schedule: { every: 'week', at: 0 } }, 400],
      ['PUT', '/accounts/nobody/service-accounts/video', dataAccount, 404],
      ['PUT', '/accounts/alice/service-accounts/voice', dataAccount, 409], // voice is rated in seconds, not kilobytes
      ['PUT', '/accounts/alice/service-accounts/bad~id', dataAccount, 400],
      ['POST', '/accounts/alice/service-accounts/video/recharge', { requestId: 'x1' }, 404],
      ['POST', '/accounts/alice/service-accounts/data/recharge', { requestId: 'x2', amount: -5 }, 400],
      ['POST', '/accounts/alice/service-accounts/data/recharge', { requestId: 'x3', amount: 1_000_000 }, 402],
      ['PATCH', '/accounts/alice', { sponsors: [{ accountId: 'ghost', priority: 1 }] }, 404],
      ['PATCH', '/accounts/alice', {}, 400],
      ['PATCH', '/accounts/alice', { status: 'closed' }, 400],
      ['PATCH', '/accounts/nobody', { status: 'suspended' }, 404],
    ];
    const before = (await api.call('GET', '/accounts/alice')).body;
    for (const [method, path, body, status] of cases) {
      const answer = await api.call(method, path, body);
      expect({ method, path, status: answer.status }).toEqual({ method, path, status });
      expect(answer.body.code, `${method} ${path}`).toEqual(expect.any(String));
    }
    const after = (await api.call('GET', '/accounts/alice')).body;
    expect(after.balance).toBe(before.balance);
    expect(after.serviceAccounts.map((s: any) => s.classification)).toEqual(['data']);
  });
});

describe('sponsors', () => {
  it('a low balance is covered by the first sponsor, by priority, that can pay; both ledgers show the transfer', async () => {
    for (const [accountId, amount] of [['kid', 0], ['granny', 10], ['mum', 500]] as const) {
      await api.call('POST', '/accounts', { accountId, currency: 'EUR', kind: 'prepaid' });
      if (amount) await api.call('POST', `/accounts/${accountId}/topup`, { requestId: `${accountId}-topup`, amount });
    }
    const patched = await api.call('PATCH', '/accounts/kid', { sponsors: [{ accountId: 'mum', priority: 2 }, { accountId: 'granny', priority: 1 }] });
    expect(patched).toMatchObject({ status: 200, body: { sponsors: [{ accountId: 'mum', priority: 2 }, { accountId: 'granny', priority: 1 }] } });
    const call = await api.call('POST', '/sessions', { requestId: 'kid-call', accountId: 'kid', clientId: 'msc', serviceId: 'voice', requested: { units: 600 } });
    // granny (priority 1) cannot cover 20 cents; mum (priority 2) can.
    expect(call).toMatchObject({ status: 201, body: { chargedAccountId: 'kid', granted: { units: 600, amount: 20 } } });
    const kid = (await api.call('GET', '/accounts/kid/ledger')).body.entries;
    const mum = (await api.call('GET', '/accounts/mum/ledger')).body.entries;
    expect(kid).toContainEqual(expect.objectContaining({ type: 'sponsor_transfer', amount: 20, counterparty: 'mum' }));
    expect(mum).toContainEqual(expect.objectContaining({ type: 'sponsor_transfer', amount: -20, counterparty: 'kid' }));
    expect((await api.call('GET', '/accounts/granny')).body.balance).toBe(10);
  });
});

describe('notifications', () => {
  it('are paged like the ledger, newest first: every one is reached once, and a bad page is a 400', async () => {
    await api.call('POST', '/accounts', { accountId: 'broke', currency: 'EUR', kind: 'prepaid' });
    // Each refused event is a service_denied notification.
    for (let i = 0; i < 7; i++) {
      const denied = await api.call('POST', '/debits', { requestId: `broke-e${i}`, accountId: 'broke', clientId: 'mmsc', serviceId: 'games', units: 1 });
      expect(denied.status).toBe(402);
    }
    const seen: string[] = [];
    let next: string | undefined;
    let pages = 0;
    do {
      const page = await api.call('GET', `/accounts/broke/notifications?limit=3${next ? `&next=${next}` : ''}`);
      expect(page.status).toBe(200);
      expect(page.body.notifications.length).toBeLessThanOrEqual(3);
      seen.push(...page.body.notifications.map((n: any) => `${n.at}#${n.notificationId}`));
      next = page.body.next;
      pages++;
    } while (next && pages < 10);
    expect(seen).toHaveLength(7);
    // Three pages of 3, 3 and 1, the last without a next.
    expect(pages).toBe(3);
    expect(new Set(seen).size).toBe(7);
    // A page that ends on the last one offers no next (fails before: a next to an empty page).
    const whole = await api.call('GET', '/accounts/broke/notifications?limit=7');
    expect([whole.body.notifications.length, whole.body.next]).toEqual([7, undefined]);
    expect([...seen].sort().reverse()).toEqual(seen);
    expect((await api.call('GET', '/accounts/broke/notifications?limit=0')).body.code).toBe('validation_failed');
    expect((await api.call('GET', '/accounts/broke/notifications?next=garbage')).body.code).toBe('validation_failed');
  });
});

describe('a manual recharge refused against its service account\'s settings (review 12 of stop 27)', () => {
  it('is refused alike when repeated after a PUT that would let it through, and moves no money (fails before: 200, and the owner paid)', async () => {
    await api.call('POST', '/accounts', { accountId: 'rita', currency: 'EUR', kind: 'prepaid' });
    await api.call('POST', '/accounts/rita/topup', { requestId: 'rita-topup', amount: 600 });
    const games = { unit: 'events', rate: { amount: 10, units: 1 }, priority: 1, onEmpty: 'deny' };
    expect((await api.call('PUT', '/accounts/rita/service-accounts/games', games)).status).toBe(201);
    const noAmount = { requestId: 'rita-r1' };
    const tooLittle = { requestId: 'rita-r2', amount: 5 };
    const first = [await api.call('POST', '/accounts/rita/service-accounts/games/recharge', noAmount), await api.call('POST', '/accounts/rita/service-accounts/games/recharge', tooLittle)];
    expect(first.map((a) => [a.status, a.body.code])).toEqual([[400, 'validation_failed'], [400, 'validation_failed']]);
    expect((await api.call('PUT', '/accounts/rita/service-accounts/games', { ...games, rate: { amount: 5, units: 1 }, rechargeAmount: 100 })).status).toBe(200);
    expect(await api.call('POST', '/accounts/rita/service-accounts/games/recharge', noAmount)).toEqual(first[0]);
    expect(await api.call('POST', '/accounts/rita/service-accounts/games/recharge', tooLittle)).toEqual(first[1]);
    expect((await api.call('POST', '/accounts/rita/service-accounts/games/recharge', { ...tooLittle, amount: 6 })).body.code).toBe('idempotency_conflict');
    expect((await api.call('GET', '/accounts/rita')).body).toMatchObject({ balance: 600, serviceAccounts: [expect.objectContaining({ classification: 'games', balance: 0 })] });
    // A new request is served under the new settings.
    expect(await api.call('POST', '/accounts/rita/service-accounts/games/recharge', { requestId: 'rita-r3' })).toMatchObject({ status: 200, body: { recharged: { amount: 100, units: 20 } } });
  });
});
