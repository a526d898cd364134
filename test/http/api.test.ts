// The HTTP contract through the local server: API Gateway 2.0 events fed to the Lambda handlers.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testApi } from '../helpers.js';
import { dispatch } from '../../infra/local/api-gateway.js';
import { sessionIdFor } from '../../functions/store/sessions.js';

let api: Awaited<ReturnType<typeof testApi>>;
beforeAll(async () => {
  api = await testApi();
  await api.call('PUT', '/services/voice', { unit: 'seconds', price: { amount: 2, per: 60 }, validitySeconds: 300, interimIntervalSeconds: 30 });
  await api.call('PUT', '/services/sms', { unit: 'events', price: { amount: 5, per: 1 } });
  await api.call('POST', '/accounts', { accountId: 'alice', currency: 'EUR', kind: 'prepaid' });
  await api.call('POST', '/accounts/alice/topup', { requestId: 'seed-topup', amount: 1000 });
});
afterAll(() => api.stop());

describe('a whole session over HTTP', () => {
  it('walks reserve → update → debit → refund and the ledger reconciles', async () => {
    const opened = await api.call('POST', '/sessions', { requestId: 'w-r1', accountId: 'alice', clientId: 'scscf-1', serviceId: 'voice', requested: { units: 600 } });
    expect(opened.status).toBe(201);
    expect(opened.contentType).toContain('application/json');
    expect(opened.body).toMatchObject({ state: 'active', granted: { units: 600, amount: 20 }, interimIntervalSeconds: 30, chargedAccountId: 'alice' });
    expect(Date.parse(opened.body.validUntil)).toBeGreaterThan(Date.now());
    const id = opened.body.sessionId;

    const updated = await api.call('POST', `/sessions/${id}/update`, { requestId: 'w-u1', used: { units: 90 }, requested: { units: 600 } });
    expect(updated).toMatchObject({ status: 200, body: { charged: { units: 90, amount: 4 }, granted: { amount: 20 } } });
    const again = await api.call('POST', `/sessions/${id}/update`, { requestId: 'w-u1', used: { units: 90 }, requested: { units: 600 } });
    expect(again).toEqual(updated);

    const closed = await api.call('POST', `/sessions/${id}/debit`, { requestId: 'w-d1', used: { units: 30 } });
    expect(closed.body).toEqual({ state: 'closed', charged: { units: 120, amount: 4 }, returned: { amount: 20 } });
    const refunded = await api.call('POST', `/sessions/${id}/refund`, { requestId: 'w-f1', amount: 1, reason: 'dropped call' });
    expect(refunded).toMatchObject({ status: 200, body: { refunded: { amount: 1 }, state: 'closed' } });

    const session = await api.call('GET', `/sessions/${id}`);
    expect(session.body).toMatchObject({ state: 'closed', charged: { amount: 4 }, refunded: { amount: 1 } });
    const account = await api.call('GET', '/accounts/alice');
    expect(account.body).toMatchObject({ balance: 997, reserved: 0, available: 997, status: 'active', serviceAccounts: [] });
    const ledger = await api.call('GET', '/accounts/alice/ledger');
    expect(ledger.body.entries.reduce((s: number, e: any) => s + e.amount, 0)).toBe(997);
    expect(ledger.body.entries[0]).toMatchObject({ type: 'refund', amount: 1 });
  });

  it('a refund without amount of an active session releases its reservation and closes it (API.md)', async () => {
    const opened = await api.call('POST', '/sessions', { requestId: 'rel-r1', accountId: 'alice', clientId: 'scscf-1', serviceId: 'voice', requested: { units: 120 } });
    const id = opened.body.sessionId;
    const released = await api.call('POST', `/sessions/${id}/refund`, { requestId: 'rel-f1', reason: 'call failed' });
    expect(released).toMatchObject({ status: 200, body: { state: 'closed', released: true, refunded: { amount: 0 }, returned: { amount: 4 } } });
    expect((await api.call('GET', `/sessions/${id}`)).body).toMatchObject({ state: 'closed', released: true, charged: { amount: 0 } });
    expect(await api.call('POST', `/sessions/${id}/update`, { requestId: 'rel-u1', used: { units: 10 } })).toMatchObject({ status: 409, body: { code: 'session_closed', state: 'closed', released: true } });
    expect(await api.call('POST', `/sessions/${id}/refund`, { requestId: 'rel-f2' })).toMatchObject({ status: 409, body: { code: 'session_closed', state: 'closed', released: true } });
  });

  it('an event charge may give { amount } on a service rated in units: the units it buys, at their price', async () => {
    const charged = await api.call('POST', '/debits', { requestId: 'w-ea1', accountId: 'alice', clientId: 'smsc', serviceId: 'sms', amount: 12 });
    expect(charged).toMatchObject({ status: 201, body: { charged: { units: 2, amount: 10 }, chargedAccountId: 'alice' } });
    const tooLittle = await api.call('POST', '/debits', { requestId: 'w-ea2', accountId: 'alice', clientId: 'smsc', serviceId: 'sms', amount: 3 });
    expect(tooLittle).toMatchObject({ status: 400, body: { code: 'validation_failed' } });
  });

  it('charges events directly and answers 402 when credit is short', async () => {
    const charged = await api.call('POST', '/debits', { requestId: 'w-e1', accountId: 'alice', clientId: 'smsc', serviceId: 'sms', units: 2 });
    expect(charged).toMatchObject({ status: 201, body: { charged: { units: 2, amount: 10 }, chargedAccountId: 'alice' } });
    const tooMuch = await api.call('POST', '/debits', { requestId: 'w-e2', accountId: 'alice', clientId: 'smsc', serviceId: 'sms', units: 100_000 });
    expect(tooMuch.status).toBe(402);
    expect(tooMuch.contentType).toContain('application/problem+json');
    expect(tooMuch.body).toMatchObject({ code: 'insufficient_credit', status: 402, finalUnitAction: 'terminate' });
  });

  it('serves multi-sessions, health, and the schedules on request', async () => {
    const a = await api.call('POST', '/sessions', { requestId: 'm-1', accountId: 'alice', clientId: 'scscf', serviceId: 'voice', requested: { units: 60 }, multiSessionId: 'call-1' });
    const b = await api.call('POST', '/sessions', { requestId: 'm-2', accountId: 'alice', clientId: 'ggsn', serviceId: 'voice', requested: { units: 120 }, multiSessionId: 'call-1' });
    await api.call('POST', `/sessions/${a.body.sessionId}/debit`, { requestId: 'm-1d', used: { units: 60 } });
    await api.call('POST', `/sessions/${b.body.sessionId}/debit`, { requestId: 'm-2d', used: { units: 61 } });
    const multi = await api.call('GET', '/multi-sessions/call-1');
    expect(multi.body.sessions).toHaveLength(2);
    expect(multi.body.charged).toEqual({ amount: 6, currency: 'EUR' });
    // Accounts in another currency under the same multi-session are never summed with it.
    await api.call('POST', '/accounts', { accountId: 'yankee', currency: 'USD', kind: 'prepaid' });
    await api.call('POST', '/accounts/yankee/topup', { requestId: 'm-usd', amount: 100 });
    const c = await api.call('POST', '/sessions', { requestId: 'm-3', accountId: 'yankee', clientId: 'ggsn', serviceId: 'voice', requested: { units: 60 }, multiSessionId: 'call-1' });
    await api.call('POST', `/sessions/${c.body.sessionId}/debit`, { requestId: 'm-3d', used: { units: 60 } });
    expect((await api.call('GET', '/multi-sessions/call-1')).body.charged).toEqual({ amount: 6, currency: 'EUR', otherCurrencies: { USD: 2 } });
    expect(await api.call('GET', '/health', undefined, { authorization: '' })).toMatchObject({ status: 200, body: { status: 'ok' } });
    const sweep = await api.call('POST', '/local/schedules/interim-sweep/run');
    expect(sweep.body).toMatchObject({ schedule: 'interim-sweep', summary: { expired: 0 } });
  });
});

describe('a request refused because the session is closed (review 11 of stop 27)', () => {
  it('is kept: its repeat gets the same 409, and its requestId with another body is idempotency_conflict (fails before: a refund went through under it, and the repeat was told idempotency_conflict)', async () => {
    const opened = await api.call('POST', '/sessions', { requestId: 'kc-r1', accountId: 'alice', clientId: 'pgw', serviceId: 'voice', requested: { units: 60 } });
    const id = opened.body.sessionId;
    expect((await api.call('POST', `/sessions/${id}/debit`, { requestId: 'kc-d1', used: { units: 60 } })).status).toBe(200);
    // A release, then a refund under its id; an update, then a refund under its id; a debit, then another debit.
    for (const [step, body, otherStep, other] of [
      ['refund', { requestId: 'kc-x' }, 'refund', { requestId: 'kc-x', amount: 1 }],
      ['update', { requestId: 'kc-y', used: { units: 10 } }, 'refund', { requestId: 'kc-y', amount: 1 }],
      ['debit', { requestId: 'kc-z', used: { units: 10 } }, 'debit', { requestId: 'kc-z', used: { units: 20 } }],
    ] as const) {
      const first = await api.call('POST', `/sessions/${id}/${step}`, body);
      expect([first.status, first.body.code]).toEqual([409, 'session_closed']);
      expect((await api.call('POST', `/sessions/${id}/${otherStep}`, other)).body.code).toBe('idempotency_conflict');
      expect(await api.call('POST', `/sessions/${id}/${step}`, body)).toEqual(first);
    }
    const session = await api.call('GET', `/sessions/${id}`);
    expect(session.body).toMatchObject({ state: 'closed', refunded: { amount: 0 } });
  });
});

describe('a reserve or an event charge refused against today\'s price (review 12 of stop 27)', () => {
  it('is refused alike when repeated after a PUT that would let it through (fails before: the repeat opened a session, and charged)', async () => {
    await api.call('PUT', '/services/mms', { unit: 'events', price: { amount: 5, per: 1 } });
    const reserve = { requestId: 'kp-r1', accountId: 'alice', clientId: 'mmsc', serviceId: 'mms', requested: { amount: 3 } };
    const event = { requestId: 'kp-e1', accountId: 'alice', clientId: 'mmsc', serviceId: 'mms', amount: 3 };
    const first = [await api.call('POST', '/sessions', reserve), await api.call('POST', '/debits', event)];
    expect(first.map((a) => [a.status, a.body.code])).toEqual([[400, 'validation_failed'], [400, 'validation_failed']]);
    const before = (await api.call('GET', '/accounts/alice')).body;
    await api.call('PUT', '/services/mms', { unit: 'events', price: { amount: 1, per: 1 } });
    expect(await api.call('POST', '/sessions', reserve)).toEqual(first[0]);
    expect(await api.call('POST', '/debits', event)).toEqual(first[1]);
    expect((await api.call('POST', '/debits', { ...event, amount: 4 })).body.code).toBe('idempotency_conflict');
    expect((await api.call('GET', '/accounts/alice')).body).toMatchObject({ balance: before.balance, reserved: before.reserved });
    // A new request is served at the new price.
    expect(await api.call('POST', '/debits', { ...event, requestId: 'kp-e2' })).toMatchObject({ status: 201, body: { charged: { amount: 3 } } });
    // For an account that does not exist, the 404 comes first, and nothing is kept (review 15
    // of stop 27; fails before: a 400, which a repeat after the account came could outgrow;
    // review 24 of stop 28).
    await api.call('PUT', '/services/mms', { unit: 'events', price: { amount: 5, per: 1 } });
    const nobody = { ...reserve, requestId: 'kp-r9', accountId: 'kp-nobody' };
    expect(await api.call('POST', '/sessions', nobody)).toMatchObject({ status: 404, body: { code: 'not_found' } });
    expect(await api.call('POST', '/debits', { ...event, requestId: 'kp-e9', accountId: 'kp-nobody' })).toMatchObject({ status: 404, body: { code: 'not_found' } });
    expect((await api.call('GET', `/sessions/${sessionIdFor('kp-r9')}`)).status).toBe(404);
  });
});

describe('multi-party over HTTP', () => {
  it('proposes, agrees, plays, and the loser pays', async () => {
    await api.call('PUT', '/services/game', { unit: 'seconds', price: { amount: 1, per: 1 }, validitySeconds: 600 });
    for (const id of ['p1', 'p2']) {
      await api.call('POST', '/accounts', { accountId: id, currency: 'EUR', kind: 'prepaid' });
      await api.call('POST', `/accounts/${id}/topup`, { requestId: `tp-${id}`, amount: 500 });
    }
    const proposed = await api.call('POST', '/sessions', { requestId: 'mp-1', parties: [{ accountId: 'p1' }, { accountId: 'p2' }], principle: { type: 'loser-pays' }, clientId: 'game-server', serviceId: 'game', requested: { units: 120 } });
    expect(proposed).toMatchObject({ status: 201, body: { state: 'pending_agreement', parties: [{ accountId: 'p1', agreed: false }, { accountId: 'p2', agreed: false }] } });
    const id = proposed.body.sessionId;
    expect((await api.call('POST', `/sessions/${id}/agree`, { requestId: 'mp-a1', accountId: 'p1' })).body.state).toBe('pending_agreement');
    const started = await api.call('POST', `/sessions/${id}/agree`, { requestId: 'mp-a2', accountId: 'p2' });
    expect(started.body).toMatchObject({ state: 'active', parties: [{ reserved: { amount: 120 } }, { reserved: { amount: 120 } }] });
    const stranger = await api.call('POST', `/sessions/${id}/debit`, { requestId: 'mp-d0', used: { units: 90 }, outcome: { loser: 'nobody' } });
    expect(stranger).toMatchObject({ status: 400, body: { code: 'validation_failed' } });
    const ended = await api.call('POST', `/sessions/${id}/debit`, { requestId: 'mp-d1', used: { units: 90 }, outcome: { loser: 'p2' } });
    expect(ended.body).toMatchObject({ state: 'closed', charged: { amount: 90 }, returned: { amount: 150 } });
    expect((await api.call('GET', '/accounts/p2')).body).toMatchObject({ balance: 410, reserved: 0 });
    expect((await api.call('GET', `/sessions/${id}`)).body.parties).toEqual([
      expect.objectContaining({ accountId: 'p1', agreed: true, charged: { amount: 0 } }),
      expect.objectContaining({ accountId: 'p2', agreed: true, charged: { amount: 90 } }),
    ]);
  });
});

describe('problems', () => {
  it('needs the token on every route but /health', async () => {
    for (const headers of [{ authorization: '' }, { authorization: 'Bearer wrong-token' }, { authorization: 'Basic dGVzdA==' }]) {
      const answer = await api.call('GET', '/accounts/alice', undefined, headers);
      expect(answer).toMatchObject({ status: 401, body: { code: 'unauthorized' } });
      expect(await api.call('POST', '/local/schedules/interim-sweep/run', undefined, headers)).toMatchObject({ status: 401, body: { code: 'unauthorized' } });
    }
    // The scheme is case-insensitive, on the API and on the local operator routes alike.
    const lowercase = { authorization: `bearer ${api.token}` };
    expect((await api.call('GET', '/accounts/alice', undefined, lowercase)).status).not.toBe(401);
    expect((await api.call('POST', '/local/schedules/interim-sweep/run', undefined, lowercase)).status).toBe(200);
  });

  const big = 2 ** 53;
  const reserveOk = { requestId: 'x', accountId: 'alice', clientId: 'c', serviceId: 'voice', requested: { units: 60 } };
  const cases: Array<[string, string, string, unknown, number, string]> = [
    ['malformed JSON', 'POST', '/sessions', '{"requestId": ', 400, 'validation_failed'],
    ['no body', 'POST', '/sessions', undefined, 400, 'validation_failed'],
    ['a JSON array', 'POST', '/sessions', '[]', 400, 'validation_failed'],
    ['a float', 'POST', '/sessions', { ...reserveOk, requested: { units: 1.5 } }, 400, 'validation_failed'],
    ['a string number', 'POST', '/sessions', { ...reserveOk, requested: { units: '60' } }, 400, 'validation_failed'],
    ['zero units', 'POST', '/sessions', { ...reserveOk, requested: { units: 0 } }, 400, 'validation_failed'],
    ['negative units', 'POST', '/sessions', { ...reserveOk, requested: { units: -5 } }, 400, 'validation_failed'],
    ['above 2^53-1', 'POST', '/sessions', { ...reserveOk, requested: { units: big } }, 400, 'validation_failed'],
    ['units and amount', 'POST', '/sessions', { ...reserveOk, requested: { units: 1, amount: 1 } }, 400, 'validation_failed'],
    ['a bad identifier', 'POST', '/sessions', { ...reserveOk, accountId: 'bad id!' }, 400, 'validation_failed'],
    ['an over-long identifier', 'POST', '/sessions', { ...reserveOk, requestId: 'x'.repeat(129) }, 400, 'validation_failed'],
    ['an unknown account', 'POST', '/sessions', { ...reserveOk, requestId: 'p-1', accountId: 'nobody' }, 404, 'not_found'],
    ['an unknown service', 'POST', '/sessions', { ...reserveOk, requestId: 'p-2', serviceId: 'nothing' }, 404, 'not_found'],
    ['update: unknown session', 'POST', '/sessions/ses_nothing/update', { requestId: 'p-3', used: { units: 1 } }, 404, 'not_found'],
    ['update: no used', 'POST', '/sessions/ses_nothing/update', { requestId: 'p-4' }, 400, 'validation_failed'],
    ['update: bad session id', 'POST', '/sessions/bad%20id/update', { requestId: 'p-5', used: { units: 1 } }, 400, 'validation_failed'],
    ['debit: negative used', 'POST', '/sessions/ses_nothing/debit', { requestId: 'p-6', used: { units: -1 } }, 400, 'validation_failed'],
    ['refund: float amount', 'POST', '/sessions/ses_nothing/refund', { requestId: 'p-7', amount: 0.5 }, 400, 'validation_failed'],
    ['refund: unknown session', 'POST', '/sessions/ses_nothing/refund', { requestId: 'p-8' }, 404, 'not_found'],
    ['debits: neither units nor amount', 'POST', '/debits', { requestId: 'p-9', accountId: 'alice', clientId: 'c', serviceId: 'sms' }, 400, 'validation_failed'],
    ['debits: unknown account', 'POST', '/debits', { requestId: 'p-10', accountId: 'nobody', clientId: 'c', serviceId: 'sms', units: 1 }, 404, 'not_found'],
    ['topup: zero', 'POST', '/accounts/alice/topup', { requestId: 'p-11', amount: 0 }, 400, 'validation_failed'],
    ['topup: float', 'POST', '/accounts/alice/topup', { requestId: 'p-12', amount: 10.25 }, 400, 'validation_failed'],
    ['topup: huge', 'POST', '/accounts/alice/topup', { requestId: 'p-13', amount: 1e300 }, 400, 'validation_failed'],
    ['topup: unknown account', 'POST', '/accounts/nobody/topup', { requestId: 'p-14', amount: 1 }, 404, 'not_found'],
    ['account: bad currency', 'POST', '/accounts', { accountId: 'z', currency: 'euro', kind: 'prepaid' }, 400, 'validation_failed'],
    ['account: bad kind', 'POST', '/accounts', { accountId: 'z', currency: 'EUR', kind: 'free' }, 400, 'validation_failed'],
    ['account: credit limit on prepaid', 'POST', '/accounts', { accountId: 'z', currency: 'EUR', kind: 'prepaid', creditLimit: 5 }, 400, 'validation_failed'],
    ['account: consumption limit without a main account', 'POST', '/accounts', { accountId: 'z', currency: 'EUR', kind: 'prepaid', consumptionLimit: 100 }, 400, 'validation_failed'],
    ['account: unknown main account', 'POST', '/accounts', { accountId: 'z', currency: 'EUR', kind: 'prepaid', mainAccountId: 'nobody' }, 404, 'not_found'],
    ['account: exists with other settings', 'POST', '/accounts', { accountId: 'alice', currency: 'USD', kind: 'prepaid' }, 409, 'conflict'],
    ['account: unknown', 'GET', '/accounts/nobody', undefined, 404, 'not_found'],
    ['ledger: unknown', 'GET', '/accounts/nobody/ledger', undefined, 404, 'not_found'],
    ['ledger: bad cursor', 'GET', '/accounts/alice/ledger?next=garbage', undefined, 400, 'validation_failed'],
    ['ledger: a cursor past a sort key\'s 1,024 bytes (refused before DynamoDB is asked)', 'GET', `/accounts/alice/ledger?next=${Buffer.from(`2026-01-01T00:00:00.000Z#${'x'.repeat(1100)}`).toString('base64url')}`, undefined, 400, 'validation_failed'],
    ['ledger: a cursor that is not UTF-8', 'GET', `/accounts/alice/ledger?next=${Buffer.concat([Buffer.from('2026-01-01T00:00:00.000Z#'), Buffer.from([0xff, 0xfe])]).toString('base64url')}`, undefined, 400, 'validation_failed'],
    ['ledger: bad limit', 'GET', '/accounts/alice/ledger?limit=-1', undefined, 400, 'validation_failed'],
    ['ledger: a repeated limit (API Gateway joins it: "5,7")', 'GET', '/accounts/alice/ledger?limit=5&limit=7', undefined, 400, 'validation_failed'],
    ['a schedule that does not exist', 'POST', '/local/schedules/nope/run', undefined, 404, 'not_found'],
    ['service: bad unit', 'PUT', '/services/x', { unit: 'parsecs', price: { amount: 1, per: 1 } }, 400, 'validation_failed'],
    ['service: no price', 'PUT', '/services/x', { unit: 'seconds' }, 400, 'validation_failed'],
    ['service: per zero', 'PUT', '/services/x', { unit: 'seconds', price: { amount: 1, per: 0 } }, 400, 'validation_failed'],
    ['service: unknown', 'GET', '/services/nothing', undefined, 404, 'not_found'],
    ['session: unknown', 'GET', '/sessions/ses_nothing', undefined, 404, 'not_found'],
    ['multi-session: unknown', 'GET', '/multi-sessions/nothing', undefined, 404, 'not_found'],
    ['no such route', 'GET', '/nothing', undefined, 404, 'not_found'],
    ['propose: one party', 'POST', '/sessions', { requestId: 'p-20', parties: [{ accountId: 'alice' }], principle: { type: 'split' }, clientId: 'g', serviceId: 'voice', requested: { units: 1 } }, 400, 'validation_failed'],
    ['propose: shares not 100', 'POST', '/sessions', { requestId: 'p-21', parties: [{ accountId: 'alice' }, { accountId: 'bob' }], principle: { type: 'shares', shares: { alice: 50, bob: 40 } }, clientId: 'g', serviceId: 'voice', requested: { units: 1 } }, 400, 'validation_failed'],
    ['propose: unknown principle', 'POST', '/sessions', { requestId: 'p-22', parties: [{ accountId: 'alice' }, { accountId: 'bob' }], principle: { type: 'winner-takes-all' }, clientId: 'g', serviceId: 'voice', requested: { units: 1 } }, 400, 'validation_failed'],
    ['propose: unknown party', 'POST', '/sessions', { requestId: 'p-23', parties: [{ accountId: 'alice' }, { accountId: 'nobody' }], principle: { type: 'split' }, clientId: 'g', serviceId: 'voice', requested: { units: 1 } }, 404, 'not_found'],
    ['agree: unknown session', 'POST', '/sessions/ses_nothing/agree', { requestId: 'p-24', accountId: 'alice' }, 404, 'not_found'],
    ['agree: no accountId', 'POST', '/sessions/ses_nothing/agree', { requestId: 'p-25' }, 400, 'validation_failed'],
    // Floats JSON.parse rounds to a whole number (review 7 of stop 26: applied before).
    ['topup: 1.0000000000000001', 'POST', '/accounts/alice/topup', '{"requestId":"p-40","amount":1.0000000000000001}', 400, 'validation_failed'],
    ['topup: 10.0', 'POST', '/accounts/alice/topup', '{"requestId":"p-41","amount":10.0}', 400, 'validation_failed'],
    ['topup: 1e1', 'POST', '/accounts/alice/topup', '{"requestId":"p-42","amount":1e1}', 400, 'validation_failed'],
    ['reserve: a multiSessionId of dots (no URL could read it)', 'POST', '/sessions', { ...reserveOk, requestId: 'p-43', multiSessionId: '..' }, 400, 'validation_failed'],
    ['debits: a multiSessionId of dots', 'POST', '/debits', { requestId: 'p-44', accountId: 'alice', clientId: 'c', serviceId: 'sms', units: 1, multiSessionId: '.' }, 400, 'validation_failed'],
    ['propose: a shares key naming no party (constructor: valibot dropped it)', 'POST', '/sessions', { requestId: 'p-45', parties: [{ accountId: 'alice' }, { accountId: 'bob' }], principle: { type: 'shares', shares: { alice: 50, bob: 50, constructor: 0 } }, clientId: 'g', serviceId: 'voice', requested: { units: 1 } }, 400, 'validation_failed'],
  ];

  it.each(cases)('%s (%s %s): a problem, nothing written', async (_name, method, path, body, status, code) => {
    const before = await api.call('GET', '/accounts/alice');
    const ledgerBefore = await api.call('GET', '/accounts/alice/ledger?limit=1000');
    const answer = await api.call(method, path, body);
    expect(answer.status).toBe(status);
    expect(answer.contentType).toContain('application/problem+json');
    expect(answer.body).toMatchObject({ status, code });
    expect(typeof answer.body.title).toBe('string');
    expect(typeof answer.body.detail).toBe('string');
    expect(await api.call('GET', '/accounts/alice')).toEqual(before);
    expect((await api.call('GET', '/accounts/alice/ledger?limit=1000')).body.entries.length).toBe(ledgerBefore.body.entries.length);
  });

  it('a party named constructor can be in a shares game (review 7 of stop 26: valibot dropped its key, 400)', async () => {
    expect((await api.call('POST', '/accounts', { accountId: 'constructor', currency: 'EUR', kind: 'prepaid' })).status).toBe(201);
    const proposed = await api.call('POST', '/sessions', { requestId: 'p-46', parties: [{ accountId: 'constructor' }, { accountId: 'alice' }], principle: { type: 'shares', shares: { constructor: 30, alice: 70 } }, clientId: 'g', serviceId: 'voice', requested: { units: 60 } });
    expect(proposed).toMatchObject({ status: 201, body: { state: 'pending_agreement' } });
    await api.call('POST', '/accounts/constructor/topup', { requestId: 'p-47', amount: 1000 });
    const id = proposed.body.sessionId;
    for (const party of ['constructor', 'alice']) expect((await api.call('POST', `/sessions/${id}/agree`, { requestId: `p-48-${party}`, accountId: party })).status).toBe(200);
    expect((await api.call('POST', `/sessions/${id}/debit`, { requestId: 'p-49', used: { units: 60 } })).status).toBe(200);
    const session = await api.call('GET', `/sessions/${id}`);
    expect(session.body.parties.map((p: { accountId: string }) => p.accountId)).toEqual(['constructor', 'alice']);
  });

  it('the local server: a 405 says what is allowed, a body too large is 413 and closes the connection, a GET ignores a body (review 7 of stop 26)', async () => {
    const notAllowed = await fetch(`${api.url}/accounts/alice`, { method: 'DELETE', headers: { authorization: 'Bearer test-token' } });
    expect(notAllowed.status).toBe(405);
    expect(notAllowed.headers.get('allow')).toBe('GET, PATCH');
    expect(await notAllowed.json()).toMatchObject({ code: 'method_not_allowed', title: 'Method not allowed' });
    const tooLarge = await fetch(`${api.url}/accounts/alice/topup`, { method: 'POST', headers: { authorization: 'Bearer test-token' }, body: 'x'.repeat(2 * 1024 * 1024) });
    expect(tooLarge.status).toBe(413);
    expect(tooLarge.headers.get('connection')).toBe('close');
    expect(await tooLarge.json()).toMatchObject({ status: 413, code: 'payload_too_large' });
    expect((await dispatch('GET', new URL('http://localhost/health'), {}, '{')).statusCode).toBe(200);
  });

  it('a bad path parameter is named in the problem (not "body")', async () => {
    expect((await api.call('POST', '/sessions/bad%20id/refund', { requestId: 'p-30' })).body.detail).toMatch(/^sessionId: /);
    expect((await api.call('GET', '/accounts/a~b')).body.detail).toMatch(/^accountId: /);
  });

  it('POST /accounts repeated with the same settings answers 201 again (a retried create), with the account as it is now', async () => {
    const first = await api.call('POST', '/accounts', { accountId: 'again', currency: 'EUR', kind: 'prepaid' });
    expect(first).toMatchObject({ status: 201, body: { accountId: 'again', balance: 0 } });
    await api.call('POST', '/accounts/again/topup', { requestId: 'again-1', amount: 7 });
    expect(await api.call('POST', '/accounts', { accountId: 'again', currency: 'EUR', kind: 'prepaid' })).toMatchObject({ status: 201, body: { accountId: 'again', balance: 7 } });
    expect(await api.call('POST', '/accounts', { accountId: 'again', currency: 'EUR', kind: 'postpaid' })).toMatchObject({ status: 409, body: { code: 'conflict' } });
  });

  it('a repeated request gets the original answer byte for byte (API.md), refusals included, also after the state moved on', async () => {
    await api.call('POST', '/accounts', { accountId: 'bytes', currency: 'EUR', kind: 'prepaid' });
    const topUp = ['POST', '/accounts/bytes/topup', { requestId: 'b-t1', amount: 10 }] as const;
    const reserve = ['POST', '/sessions', { requestId: 'b-r1', accountId: 'bytes', clientId: 'c', serviceId: 'voice', requested: { units: 120 } }] as const;
    const refused = ['POST', '/sessions', { requestId: 'b-r2', accountId: 'bytes', clientId: 'c', serviceId: 'voice', requested: { units: 600 } }] as const;
    const event = ['POST', '/debits', { requestId: 'b-e1', accountId: 'bytes', clientId: 'c', serviceId: 'sms', units: 1 }] as const;
    const requests: Array<readonly [string, string, unknown]> = [topUp, reserve];
    const firsts = [await api.call(...topUp), await api.call(...reserve)];
    const sessionId = firsts[1]!.body.sessionId;
    const steps = [
      ['POST', `/sessions/${sessionId}/update`, { requestId: 'b-u1', used: { units: 60 }, requested: { units: 60 } }],
      event, refused,
      ['POST', `/sessions/${sessionId}/debit`, { requestId: 'b-d1', used: { units: 30 } }],
      ['POST', `/sessions/${sessionId}/refund`, { requestId: 'b-f1', amount: 1 }],
    ] as const;
    for (const step of steps) {
      requests.push(step);
      firsts.push(await api.call(step[0], step[1], step[2]));
    }
    expect(firsts.map((f) => f.status)).toEqual([200, 201, 200, 201, 402, 200, 200]);
    for (const [i, request] of requests.entries()) {
      const again = await api.call(request[0], request[1], request[2]);
      expect({ request: request[1], status: again.status, text: again.text }).toEqual({ request: request[1], status: firsts[i]!.status, text: firsts[i]!.text });
    }
  });

  it('same requestId with another body is 409 idempotency_conflict', async () => {
    await api.call('POST', '/accounts/alice/topup', { requestId: 'idem-1', amount: 5 });
    const conflict = await api.call('POST', '/accounts/alice/topup', { requestId: 'idem-1', amount: 6 });
    expect(conflict).toMatchObject({ status: 409, body: { code: 'idempotency_conflict' } });
  });

  it('a closed session refuses updates with 409 session_closed', async () => {
    const opened = await api.call('POST', '/sessions', { requestId: 'c-r1', accountId: 'alice', clientId: 'c', serviceId: 'voice', requested: { units: 60 } });
    await api.call('POST', `/sessions/${opened.body.sessionId}/debit`, { requestId: 'c-d1', used: { units: 10 } });
    const late = await api.call('POST', `/sessions/${opened.body.sessionId}/update`, { requestId: 'c-u1', used: { units: 10 } });
    expect(late).toMatchObject({ status: 409, body: { code: 'session_closed' } });
  });
});
