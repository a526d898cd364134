// Accounts: create, read, top up, ledger, notifications.
import { httpHandler, parse, pathParam, requestHash } from '../http/handler.js';
import { answerResponse, json } from '../http/problem.js';
import { accountBody, ledgerQuery, topUpBody } from '../http/schemas.js';
import { accountView, createAccount, requireAccount, topUp } from '../store/accounts.js';
import { readLedger } from '../store/ledger.js';
import { store } from '../config.js';
import { applyConsumptionLimit } from '../store/allotments.js';
import { fail } from '../domain/errors.js';

/** PATCH body: `{ "consumptionLimit": int | null }` (null removes the limit). */
function consumptionLimitOf(body: unknown): number | null {
  const value = (body as Record<string, unknown> | undefined)?.consumptionLimit;
  if (typeof body !== 'object' || body === null || Array.isArray(body) || !('consumptionLimit' in body)) {
    return fail('validation_failed', 'consumptionLimit: give an integer, or null to remove it');
  }
  if (value === null) return null;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    return fail('validation_failed', 'consumptionLimit: must be a non-negative integer of minor units, or null');
  }
  return value;
}

export const handler = httpHandler(async (request) => {
  const s = store();
  switch (request.routeKey) {
    case 'POST /accounts': {
      const body = parse(accountBody, request.body);
      const { account, created } = await createAccount(s, body);
      return json(created ? 201 : 200, accountView(account, s.now()));
    }
    case 'GET /accounts/{accountId}':
      return json(200, accountView(await requireAccount(s, pathParam(request, 'accountId')), s.now()));
    case 'PATCH /accounts/{accountId}': {
      const accountId = pathParam(request, 'accountId');
      const limit = consumptionLimitOf(request.body);
      const account = await requireAccount(s, accountId);
      if (!account.mainAccountId) fail('conflict', `account ${accountId} is not attached to a main account: it has no consumption limit`);
      await applyConsumptionLimit(s, accountId, limit);
      return json(200, accountView(await requireAccount(s, accountId), s.now()));
    }
    case 'POST /accounts/{accountId}/topup': {
      const accountId = pathParam(request, 'accountId');
      const body = parse(topUpBody, request.body);
      return answerResponse(await topUp(s, accountId, body.requestId, body.amount, requestHash(request, body)));
    }
    case 'GET /accounts/{accountId}/ledger': {
      const accountId = pathParam(request, 'accountId');
      const query = parse(ledgerQuery, request.query);
      await requireAccount(s, accountId);
      return json(200, await readLedger(s, accountId, query));
    }
    case 'GET /accounts/{accountId}/notifications': {
      const accountId = pathParam(request, 'accountId');
      await requireAccount(s, accountId);
      return json(200, { notifications: [] });
    }
    default:
      return json(404, { code: 'not_found' });
  }
});
