// Accounts: create, read, top up, ledger, notifications.
import { httpHandler, parse, pathParam, requestHash } from '../http/handler.js';
import { answerResponse, json } from '../http/problem.js';
import { accountBody, ledgerQuery, topUpBody } from '../http/schemas.js';
import { accountView, createAccount, requireAccount, topUp } from '../store/accounts.js';
import { readLedger } from '../store/ledger.js';
import { store } from '../config.js';

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
