// A consumptionLimit lowered while a session holds more than the new limit (review 20 of
// stop 28). What open sessions hold was granted under the old limit and stays the member's
// while they hold it; once it goes back (a release, a debit that used less, an expiry), what
// the member holds beyond the limit is the main account's again, and the member spends
// nothing new past the limit. Before, the released money was the member's to spend: 400
// consumed under a limit of 100.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testApi } from '../helpers.js';

let api: Awaited<ReturnType<typeof testApi>>;
let clockMs = Date.parse('2031-06-01T10:00:00Z');

beforeAll(async () => {
  api = await testApi({ now: () => new Date(clockMs) });
  await api.call('PUT', '/services/wallet', { unit: 'money', validitySeconds: 300 });
  await api.call('PUT', '/services/voice', { unit: 'seconds', price: { amount: 1, per: 1 }, validitySeconds: 300 });
});
afterAll(() => api.stop());

const get = async (accountId: string) => (await api.call('GET', `/accounts/${accountId}`)).body;

/** `home-<tag>` holding 10,000, and `kid-<tag>` attached to it, limited to 1,000. */
async function family(tag: string) {
  await api.call('POST', '/accounts', { accountId: `home-${tag}`, currency: 'EUR', kind: 'prepaid' });
  await api.call('POST', `/accounts/home-${tag}/topup`, { requestId: `${tag}-topup`, amount: 10_000 });
  expect((await api.call('POST', '/accounts', { accountId: `kid-${tag}`, currency: 'EUR', kind: 'prepaid', mainAccountId: `home-${tag}`, consumptionLimit: 1000 })).status).toBe(201);
}

/** A family (see `family`) whose member holds a session of 500, then is limited to 100. */
async function familyWithHeldSession(tag: string) {
  const main = `home-${tag}`;
  const kid = `kid-${tag}`;
  await family(tag);
  const opened = await api.call('POST', '/sessions', { requestId: `${tag}-s`, accountId: kid, clientId: 'app', serviceId: 'wallet', requested: { amount: 500 } });
  expect(opened).toMatchObject({ status: 201, body: { granted: { amount: 500 } } });
  expect(await api.call('PATCH', `/accounts/${kid}`, { consumptionLimit: 100 })).toMatchObject({ status: 200, body: { consumed: 0, consumptionLimit: 100 } });
  return { main, kid, sessionId: opened.body.sessionId as string };
}

/** The family's money is where GET says: the main account's balance plus what members consumed is what was topped up. */
async function expectConserved(main: string, kid: string, toppedUp: number) {
  const [m, k] = [await get(main), await get(kid)];
  expect(m.balance + k.consumed).toBe(toppedUp);
  expect(k.consumed).toBeLessThanOrEqual(k.consumptionLimit);
}

describe('a consumption limit lowered while a session held more', () => {
  it('once the session is released, the member spends only up to the new limit', async () => {
    const { main, kid, sessionId } = await familyWithHeldSession('rel');
    expect(await api.call('POST', `/sessions/${sessionId}/refund`, { requestId: 'rel-release' })).toMatchObject({ status: 200, body: { returned: { amount: 500 } } });
    // 400 is past the limit: refused, and nothing is charged.
    expect(await api.call('POST', '/debits', { requestId: 'rel-e1', accountId: kid, clientId: 'app', serviceId: 'wallet', amount: 400 }))
      .toMatchObject({ status: 402, body: { code: 'insufficient_credit' } });
    expect(await get(kid)).toMatchObject({ consumed: 0, consumptionLimit: 100 });
    // The limit itself can be spent, and not a cent more.
    expect(await api.call('POST', '/debits', { requestId: 'rel-e2', accountId: kid, clientId: 'app', serviceId: 'wallet', amount: 100 })).toMatchObject({ status: 201 });
    expect(await api.call('POST', '/debits', { requestId: 'rel-e3', accountId: kid, clientId: 'app', serviceId: 'wallet', amount: 1 })).toMatchObject({ status: 402 });
    expect(await get(kid)).toMatchObject({ consumed: 100 });
    await expectConserved(main, kid, 10_000);
    expect(await get(main)).toMatchObject({ balance: 9_900, reserved: 0 });
  });

  it('once a debit used less than its hold, a new session is granted no more than the limit leaves', async () => {
    const { main, kid, sessionId } = await familyWithHeldSession('deb');
    expect(await api.call('POST', `/sessions/${sessionId}/debit`, { requestId: 'deb-end', used: { units: 30 } })).toMatchObject({ status: 200, body: { charged: { amount: 30 } } });
    // 30 consumed of 100: a new session gets 70 at most.
    const next = await api.call('POST', '/sessions', { requestId: 'deb-s2', accountId: kid, clientId: 'app', serviceId: 'wallet', requested: { amount: 500 } });
    expect(next).toMatchObject({ status: 201, body: { granted: { amount: 70 } } });
    expect(await api.call('POST', `/sessions/${next.body.sessionId}/debit`, { requestId: 'deb-s2-end', used: { units: 70 } })).toMatchObject({ status: 200 });
    expect(await get(kid)).toMatchObject({ consumed: 100 });
    await expectConserved(main, kid, 10_000);
  });

  it('while the session holds, it keeps what it was granted, and nothing new is granted past the limit', async () => {
    const { main, kid, sessionId } = await familyWithHeldSession('held');
    // Within its hold, the session goes on (granted under the old limit).
    const within = await api.call('POST', `/sessions/${sessionId}/update`, { requestId: 'held-u1', used: { units: 100 }, requested: { amount: 400 } });
    expect(within).toMatchObject({ status: 200, body: { granted: { amount: 400 } } });
    // An event is new money: refused while the member is past its limit.
    expect(await api.call('POST', '/debits', { requestId: 'held-e1', accountId: kid, clientId: 'app', serviceId: 'wallet', amount: 1 })).toMatchObject({ status: 402 });
    // Asking more than the hold left: only what it holds is granted again.
    const more = await api.call('POST', `/sessions/${sessionId}/update`, { requestId: 'held-u2', used: { units: 100 }, requested: { amount: 1000 } });
    expect(more).toMatchObject({ status: 200, body: { granted: { amount: 300 } } });
    expect(await api.call('POST', `/sessions/${sessionId}/debit`, { requestId: 'held-end', used: { units: 0 } })).toMatchObject({ status: 200, body: { returned: { amount: 300 } } });
    // 200 consumed under the old grant: past the new limit, so nothing more.
    expect(await get(kid)).toMatchObject({ consumed: 200, consumptionLimit: 100 });
    expect(await api.call('POST', '/debits', { requestId: 'held-e2', accountId: kid, clientId: 'app', serviceId: 'wallet', amount: 1 })).toMatchObject({ status: 402 });
    const [m, k] = [await get(main), await get(kid)];
    expect(m.balance + k.consumed).toBe(10_000);
    expect(m).toMatchObject({ balance: 9_800, reserved: 0 });
  });

  it('an expiry by the sweep gives the excess back too (concurrent events after it: the limit holds)', async () => {
    const { main, kid } = await familyWithHeldSession('exp');
    clockMs += 301_000;
    expect((await api.call('POST', '/local/schedules/interim-sweep/run')).status).toBe(200);
    const answers = await Promise.all(Array.from({ length: 20 }, (_, i) =>
      api.call('POST', '/debits', { requestId: `exp-e${i}`, accountId: kid, clientId: 'app', serviceId: 'wallet', amount: 10 })));
    expect(answers.every((a) => a.status === 201 || (a.status === 402 && a.body.code === 'insufficient_credit'))).toBe(true);
    expect(answers.filter((a) => a.status === 201)).toHaveLength(10);
    expect(await get(kid)).toMatchObject({ consumed: 100, reserved: 0 });
    await expectConserved(main, kid, 10_000);
  });

  it('a game: a member past its lowered limit pays its share only within the limit', async () => {
    const { main, kid, sessionId } = await familyWithHeldSession('game');
    await api.call('POST', `/sessions/${sessionId}/refund`, { requestId: 'game-release' });
    await api.call('POST', '/accounts', { accountId: 'game-friend', currency: 'EUR', kind: 'prepaid' });
    await api.call('POST', '/accounts/game-friend/topup', { requestId: 'game-friend-topup', amount: 10_000 });
    // Split between the two: 400 seconds at 1 a second, 200 each; the member may pay 100.
    const proposed = await api.call('POST', '/sessions', { requestId: 'game-p', parties: [{ accountId: kid }, { accountId: 'game-friend' }], principle: { type: 'split' }, clientId: 'game', serviceId: 'voice', requested: { units: 400 } });
    expect(proposed.status).toBe(201);
    const game = proposed.body.sessionId as string;
    expect((await api.call('POST', `/sessions/${game}/agree`, { requestId: 'game-a1', accountId: 'game-friend' })).status).toBe(200);
    const agreed = await api.call('POST', `/sessions/${game}/agree`, { requestId: 'game-a2', accountId: kid });
    expect([200, 402]).toContain(agreed.status);
    if (agreed.status === 200) {
      const ended = await api.call('POST', `/sessions/${game}/debit`, { requestId: 'game-end', used: { units: 400 } });
      expect(ended.status).toBe(200);
    }
    const k = await get(kid);
    expect(k.consumed).toBeLessThanOrEqual(100);
    expect((await get(main)).balance + k.consumed).toBe(10_000);
  });

  it('money spent under the old limit stays spent: the member still spends its own top-up and its sponsor\'s money (review 25 of stop 28: the first fix gave its top-up to the main account, and asked no sponsor)', async () => {
    const tag = 'own';
    await family(tag);
    await api.call('POST', '/accounts', { accountId: `aunt-${tag}`, currency: 'EUR', kind: 'prepaid' });
    await api.call('POST', `/accounts/aunt-${tag}/topup`, { requestId: `${tag}-aunt`, amount: 1000 });
    expect((await api.call('POST', '/debits', { requestId: `${tag}-e1`, accountId: `kid-${tag}`, clientId: 'app', serviceId: 'wallet', amount: 1000 })).status).toBe(201);
    expect((await api.call('PATCH', `/accounts/kid-${tag}`, { consumptionLimit: 500 })).status).toBe(200);
    // Its own money.
    await api.call('POST', `/accounts/kid-${tag}/topup`, { requestId: `${tag}-kid-topup`, amount: 300 });
    expect((await api.call('POST', '/debits', { requestId: `${tag}-e2`, accountId: `kid-${tag}`, clientId: 'app', serviceId: 'wallet', amount: 100 })).status).toBe(201);
    expect((await get(`kid-${tag}`)).balance).toBe(200);
    expect((await get(`home-${tag}`)).balance).toBe(9_000);
    // Its sponsor's, once its own is spent; never the main account's.
    expect((await api.call('PATCH', `/accounts/kid-${tag}`, { sponsors: [{ accountId: `aunt-${tag}`, priority: 1 }] })).status).toBe(200);
    expect((await api.call('POST', '/debits', { requestId: `${tag}-e3`, accountId: `kid-${tag}`, clientId: 'app', serviceId: 'wallet', amount: 250 })).status).toBe(201);
    expect((await get(`aunt-${tag}`)).balance).toBe(950);
    expect((await get(`home-${tag}`)).balance).toBe(9_000);
  });

  it('what went back cannot be spent another way: a service account\'s recharge is held to the limit too (review 25 of stop 28)', async () => {
    const { main, kid, sessionId } = await familyWithHeldSession('sa');
    await api.call('POST', `/sessions/${sessionId}/refund`, { requestId: 'sa-release' });
    expect((await api.call('PUT', `/accounts/${kid}/service-accounts/data`, { unit: 'kilobytes', rate: { amount: 1, units: 1 }, priority: 1, onEmpty: 'deny' })).status).toBe(201);
    expect(await api.call('POST', `/accounts/${kid}/service-accounts/data/recharge`, { requestId: 'sa-r1', amount: 400 })).toMatchObject({ status: 402 });
    expect((await api.call('POST', `/accounts/${kid}/service-accounts/data/recharge`, { requestId: 'sa-r2', amount: 100 })).status).toBe(200);
    const k = await get(kid);
    expect(k.consumed).toBeLessThanOrEqual(100);
    expect((await get(main)).balance + k.consumed).toBe(10_000);
  });

  it('a member ever topped up keeps its own money when a hold comes back (review 26 of stop 28: it went to the main account)', async () => {
    const tag = 'own2';
    await family(tag);
    expect((await api.call('POST', '/debits', { requestId: `${tag}-e1`, accountId: `kid-${tag}`, clientId: 'app', serviceId: 'wallet', amount: 1000 })).status).toBe(201);
    await api.call('PATCH', `/accounts/kid-${tag}`, { consumptionLimit: 500 });
    await api.call('POST', `/accounts/kid-${tag}/topup`, { requestId: `${tag}-kid-topup`, amount: 300 });
    const opened = await api.call('POST', '/sessions', { requestId: `${tag}-s`, accountId: `kid-${tag}`, clientId: 'app', serviceId: 'wallet', requested: { amount: 100 } });
    expect(opened.status).toBe(201);
    expect((await api.call('POST', `/sessions/${opened.body.sessionId}/debit`, { requestId: `${tag}-end`, used: { units: 50 } })).status).toBe(200);
    expect((await get(`kid-${tag}`)).balance).toBe(250);
    expect((await get(`home-${tag}`)).balance).toBe(9_000);
  });

  it('a refund of a member\'s closed session past its lowered limit goes back to the main account (review 26 of stop 28: it was spent past the limit)', async () => {
    const { main, kid, sessionId } = await familyWithHeldSession('ref');
    expect((await api.call('POST', `/sessions/${sessionId}/debit`, { requestId: 'ref-end', used: { units: 500 } })).status).toBe(200);
    expect((await api.call('POST', `/sessions/${sessionId}/refund`, { requestId: 'ref-back', amount: 300 })).status).toBe(200);
    // 500 taken, 200 of it spent for good: nothing past the limit of 100 is left to spend.
    expect((await api.call('POST', '/debits', { requestId: 'ref-e1', accountId: kid, clientId: 'app', serviceId: 'wallet', amount: 1 })).status).toBe(402);
    const [m, k] = [await get(main), await get(kid)];
    expect(k).toMatchObject({ balance: 0, consumed: 200 });
    expect(m.balance + k.consumed).toBe(10_000);
  });

  it('a game\'s end gives a member party\'s excess back at once (review 26 of stop 28: it was spent at once past the limit)', async () => {
    const tag = 'g2';
    await family(tag);
    await api.call('POST', '/accounts', { accountId: `pal-${tag}`, currency: 'EUR', kind: 'prepaid' });
    await api.call('POST', `/accounts/pal-${tag}/topup`, { requestId: `${tag}-pal`, amount: 10_000 });
    const proposed = await api.call('POST', '/sessions', { requestId: `${tag}-p`, parties: [{ accountId: `kid-${tag}` }, { accountId: `pal-${tag}` }], principle: { type: 'split' }, clientId: 'game', serviceId: 'voice', requested: { units: 1000 } });
    const game = proposed.body.sessionId as string;
    for (const p of [`kid-${tag}`, `pal-${tag}`]) expect((await api.call('POST', `/sessions/${game}/agree`, { requestId: `${tag}-a-${p}`, accountId: p })).status).toBe(200);
    await api.call('PATCH', `/accounts/kid-${tag}`, { consumptionLimit: 100 });
    expect((await api.call('POST', `/sessions/${game}/debit`, { requestId: `${tag}-end`, used: { units: 100 } })).status).toBe(200);
    expect((await api.call('POST', '/debits', { requestId: `${tag}-e1`, accountId: `kid-${tag}`, clientId: 'app', serviceId: 'wallet', amount: 400 })).status).toBe(402);
    expect((await api.call('POST', '/debits', { requestId: `${tag}-e2`, accountId: `kid-${tag}`, clientId: 'app', serviceId: 'wallet', amount: 50 })).status).toBe(201);
    const [m, k] = [await get(`home-${tag}`), await get(`kid-${tag}`)];
    expect(k.consumed).toBe(100);
    expect(m.balance + k.consumed).toBe(10_000);
  });
});
