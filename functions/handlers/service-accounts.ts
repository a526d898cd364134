// Service accounts (seed 004): create or change one, read it, recharge it on request.
import { httpHandler, parse, pathParam, requestHash } from '../http/handler.js';
import { answerResponse, json } from '../http/problem.js';
import { rechargeBody, serviceAccountBody } from '../http/account-schemas.js';
import { getServiceAccount, manualRecharge, putServiceAccount, serviceAccountId, serviceAccountView } from '../store/serviceAccounts.js';
import { readLedger } from '../store/ledger.js';
import { pageQuery } from '../http/schemas.js';
import { store } from '../config.js';
import { fail } from '../domain/errors.js';

export const handler = httpHandler(async (request) => {
  const s = store();
  const accountId = pathParam(request, 'accountId');
  const classification = pathParam(request, 'classification');
  switch (request.routeKey) {
    case 'PUT /accounts/{accountId}/service-accounts/{classification}': {
      const { rechargeAmount, rate, ...body } = parse(serviceAccountBody, request.body);
      const { serviceAccount, created } = await putServiceAccount(s, accountId, classification, {
        ...body, rate: { amountMinor: rate.amount, units: rate.units }, rechargeAmountMinor: rechargeAmount,
      });
      return json(created ? 201 : 200, { accountId, ...serviceAccountView(serviceAccount) });
    }
    case 'GET /accounts/{accountId}/service-accounts/{classification}': {
      const sa = (await getServiceAccount(s, accountId, classification)) ?? fail('not_found', `account ${accountId} has no service account ${classification}`);
      return json(200, { accountId, ...serviceAccountView(sa) });
    }
    case 'GET /accounts/{accountId}/service-accounts/{classification}/ledger': {
      const query = parse(pageQuery, request.query);
      (await getServiceAccount(s, accountId, classification)) ?? fail('not_found', `account ${accountId} has no service account ${classification}`);
      return json(200, await readLedger(s, serviceAccountId(accountId, classification), query));
    }
    case 'POST /accounts/{accountId}/service-accounts/{classification}/recharge': {
      const body = parse(rechargeBody, request.body);
      return answerResponse(await manualRecharge(s, accountId, classification, { requestId: body.requestId, amountMinor: body.amount }, requestHash(request, body)));
    }
    default:
      return json(404, { code: 'not_found' });
  }
});
