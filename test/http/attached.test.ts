// Seed 002 over HTTP, as API.md words it: an attached account's charges are "authorized
// against and debited from the main account". Inside, members spend allotments taken from the
// main account in chunks (so the main account's item is not written on every charge); what
// GET shows is the contract: the main account's balance drops by what its members charged,
// its reserved holds what their sessions hold, and a member's `consumed` is what its charges
// took from the main account.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testApi } from '../helpers.js';

let api: Awaited<ReturnType<typeof testApi>>;
let clockMs = Date.parse('2031-05-01T10:00:00Z');

beforeAll(async () => {
  api = await testApi({ now: () => new Date(clockMs) });
  await api.call('PUT', '/services/voice', { unit: 'seconds', price: { amount: 2, per: 60 } });
  await api.call('PUT', '/services/sms', { unit: 'events', price: { amount: 5, per: 1 } });
});
afterAll(() => api.stop());

const get = async (accountId: string) => (await api.call('GET', `/accounts/${accountId}`)).body;

describe('an attached account charges its main account', () => {
  it('the main account shows its members\' reservations and charges; a member shows what it consumed', async () => {
    await api.call('POST', '/accounts', { accountId: 'home', currency: 'EUR', kind: 'prepaid' });
    await api.call('POST', '/accounts/home/topup', { requestId: 'home-topup', amount: 1000 });
    expect((await api.call('POST', '/accounts', { accountId: 'kid', currency: 'EUR', kind: 'prepaid', mainAccountId: 'home', consumptionLimit: 500 })).status).toBe(201);

    // A 5-minute grant (10 cents) is reserved from the main account.
    const opened = await api.call('POST', '/sessions', { requestId: 'kid-s1', accountId: 'kid', clientId: 'cscf', serviceId: 'voice', requested: { units: 300 } });
    // Sessions answer with chargedAccountId: the main account, which pays.
    expect(opened).toMatchObject({ status: 201, body: { chargedAccountId: 'home', granted: { units: 300, amount: 10 } } });
    expect((await api.call('GET', `/sessions/${opened.body.sessionId}`)).body).toMatchObject({ accountId: 'kid', chargedAccountId: 'home' });
    expect(await get('home')).toMatchObject({ balance: 1000, reserved: 10, available: 990 });
    expect(await get('kid')).toMatchObject({ mainAccountId: 'home', balance: 0, reserved: 0, available: 0, consumed: 0 });

    // 61 seconds used: 2 blocks, 4 cents, deducted from the main account; the rest goes back.
    const closed = await api.call('POST', `/sessions/${opened.body.sessionId}/debit`, { requestId: 'kid-s1-end', used: { units: 61 } });
    expect(closed).toMatchObject({ status: 200, body: { charged: { amount: 4 }, returned: { amount: 6 } } });
    expect(await get('home')).toMatchObject({ balance: 996, reserved: 0, available: 996 });
    expect(await get('kid')).toMatchObject({ balance: 0, reserved: 0, consumed: 4, consumptionLimit: 500 });

    // An event charge of the member too.
    expect(await api.call('POST', '/debits', { requestId: 'kid-e1', accountId: 'kid', clientId: 'smsc', serviceId: 'sms', units: 2 }))
      .toMatchObject({ status: 201, body: { charged: { units: 2, amount: 10 }, chargedAccountId: 'home' } });
    expect(await get('home')).toMatchObject({ balance: 986, available: 986 });
    expect(await get('kid')).toMatchObject({ consumed: 14 });

    // Known as attached now, the member's next charge goes the one-write way, and names home too.
    expect(await api.call('POST', '/debits', { requestId: 'kid-e2', accountId: 'kid', clientId: 'smsc', serviceId: 'sms', units: 1 }))
      .toMatchObject({ status: 201, body: { chargedAccountId: 'home' } });
    expect(await get('home')).toMatchObject({ balance: 981 });
    expect(await get('kid')).toMatchObject({ consumed: 19 });
    expect(await api.call('POST', '/debits', { requestId: 'kid-e2', accountId: 'kid', clientId: 'smsc', serviceId: 'sms', units: 1 }))
      .toMatchObject({ status: 201, body: { chargedAccountId: 'home' } });

    // A refund goes back to the main account's money.
    expect(await api.call('POST', `/sessions/${opened.body.sessionId}/refund`, { requestId: 'kid-s1-refund', amount: 4 })).toMatchObject({ status: 200 });
    expect(await get('home')).toMatchObject({ balance: 985 });
    expect(await get('kid')).toMatchObject({ consumed: 15 });

    // Once the sweep gives the idle allotment back, the figures do not move.
    const before = { home: await get('home'), kid: await get('kid') };
    clockMs += 3_600_000;
    expect((await api.call('POST', '/local/schedules/interim-sweep/run')).body.summary).toMatchObject({ allotmentsReturned: 1 });
    expect(await get('home')).toMatchObject({ balance: before.home.balance, reserved: 0 });
    expect(await get('kid')).toMatchObject({ balance: 0, consumed: before.kid.consumed });
  });

  it('several members: the main account adds up what each holds, and a top-up of the main account answers the same view', async () => {
    await api.call('POST', '/accounts', { accountId: 'firm', currency: 'EUR', kind: 'postpaid', creditLimit: 200 });
    await api.call('POST', '/accounts/firm/topup', { requestId: 'firm-topup', amount: 300 });
    const members = ['ann', 'ben', 'cat'];
    for (const id of members) await api.call('POST', '/accounts', { accountId: id, currency: 'EUR', kind: 'prepaid', mainAccountId: 'firm' });
    const sessions = await Promise.all(members.map((id, i) => api.call('POST', '/sessions', {
      requestId: `${id}-s`, accountId: id, clientId: 'cscf', serviceId: 'voice', requested: { units: 60 * (i + 1) },
    })));
    expect(sessions.map((s) => s.status)).toEqual([201, 201, 201]);
    // 2 + 4 + 6 cents reserved, nothing charged yet.
    expect(await get('firm')).toMatchObject({ balance: 300, reserved: 12, available: 300 - 12 + 200 });
    await Promise.all(sessions.map((s, i) => api.call('POST', `/sessions/${s.body.sessionId}/debit`, { requestId: `${members[i]}-end`, used: { units: 60 } })));
    const firm = await get('firm');
    expect(firm).toMatchObject({ balance: 294, reserved: 0, available: 494 });
    for (const id of members) expect(await get(id)).toMatchObject({ balance: 0, reserved: 0, consumed: 2 });
    const toppedUp = await api.call('POST', '/accounts/firm/topup', { requestId: 'firm-topup-2', amount: 6 });
    expect(toppedUp.body).toMatchObject({ balance: 300, available: 500 });
    expect(toppedUp.body).toEqual(await get('firm'));
    // Creating a member again answers it as it is, with the same figures as GET.
    expect(await api.call('POST', '/accounts', { accountId: 'ann', currency: 'EUR', kind: 'prepaid', mainAccountId: 'firm' }))
      .toMatchObject({ status: 201, body: { balance: 0, consumed: 2 } });
  });

  it('a member that was ever topped up shows its allotments as its money, and the main account does not count them', async () => {
    await api.call('POST', '/accounts', { accountId: 'gran', currency: 'EUR', kind: 'prepaid' });
    await api.call('POST', '/accounts/gran/topup', { requestId: 'gran-topup', amount: 1000 });
    await api.call('POST', '/accounts', { accountId: 'teen', currency: 'EUR', kind: 'prepaid', mainAccountId: 'gran' });
    // An SMS (5) from an allotment, then a top-up of 30 of teen's own: the item does not say
    // which money later charges spend, so the view stops telling them apart.
    expect(await api.call('POST', '/debits', { requestId: 'teen-e1', accountId: 'teen', clientId: 'smsc', serviceId: 'sms', units: 1 })).toMatchObject({ status: 201 });
    expect(await get('gran')).toMatchObject({ balance: 995 });
    expect(await get('teen')).toMatchObject({ balance: 0, consumed: 5 });
    const toppedUp = await api.call('POST', '/accounts/teen/topup', { requestId: 'teen-topup', amount: 30 });
    const teen = await get('teen');
    const gran = await get('gran');
    expect(toppedUp.body).toEqual(teen);
    // The allotment (50) shows where it is: teen holds 45 of it and its own 30; gran counts none of it.
    expect(teen).toMatchObject({ balance: 75, consumed: 50 });
    expect(gran).toMatchObject({ balance: 950 });
    expect(gran.balance + teen.balance).toBe(1000 - 5 + 30);
  });

  it('read while members charge at once, the main account never shows more money than it had, nor less than it ends with', async () => {
    await api.call('POST', '/accounts', { accountId: 'club', currency: 'EUR', kind: 'prepaid' });
    await api.call('POST', '/accounts/club/topup', { requestId: 'club-topup', amount: 10_000 });
    const members = Array.from({ length: 10 }, (_, i) => `club-m${i}`);
    for (const id of members) await api.call('POST', '/accounts', { accountId: id, currency: 'EUR', kind: 'prepaid', mainAccountId: 'club' });
    let charging = true;
    const seen: number[] = [];
    const reader = (async () => {
      while (charging) {
        const club = await get('club');
        expect(club.available).toBe(club.balance - club.reserved);
        seen.push(club.balance);
      }
    })();
    await Promise.all(members.map(async (id) => {
      for (let n = 0; n < 3; n++) {
        const s = await api.call('POST', '/sessions', { requestId: `${id}-${n}`, accountId: id, clientId: 'cscf', serviceId: 'voice', requested: { units: 120 } });
        expect(s.status).toBe(201);
        expect((await api.call('POST', `/sessions/${s.body.sessionId}/debit`, { requestId: `${id}-${n}-end`, used: { units: 60 } })).status).toBe(200);
      }
    }));
    charging = false;
    await reader;
    const final = await get('club');
    expect(final).toMatchObject({ balance: 10_000 - 10 * 3 * 2, reserved: 0 });
    expect(seen.length).toBeGreaterThan(0);
    for (const balance of seen) {
      expect(balance).toBeLessThanOrEqual(10_000);
      expect(balance).toBeGreaterThanOrEqual(final.balance);
    }
  });
});
