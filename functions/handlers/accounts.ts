// Accounts: create, read, top up, ledger, notifications.
import { httpHandler, parse, pathParam, requestHash } from '../http/handler.js';
import { answerResponse, json } from '../http/problem.js';
import { accountBody, pageQuery, topUpBody } from '../http/schemas.js';
import { accountView, createAccount, requireAccount, setAccountStatus, topUp, withMembers } from '../store/accounts.js';
import { readLedger } from '../store/ledger.js';
import { store } from '../config.js';
import { applyConsumptionLimit } from '../store/allotments.js';
import { fail } from '../domain/errors.js';
import { accountPatchBody } from '../http/account-schemas.js';
import { listServiceAccounts, serviceAccountView } from '../store/serviceAccounts.js';
import { setSponsors, type SponsoredAccount } from '../store/sponsors.js';
import { listNotifications } from '../store/notifications.js';
import type { AccountItem } from '../store/accounts.js';
import type { Store } from '../store/db.js';

/** The account as API.md shows it, with its service accounts and sponsors (and a main account's members' allotments). */
async function fullView(s: Store, stored: AccountItem) {
  const { account, members } = await withMembers(s, stored);
  const serviceAccounts = await listServiceAccounts(s, account);
  const sponsors = (account as SponsoredAccount).sponsors;
  return { ...accountView(account, s.now(), members), serviceAccounts: serviceAccounts.map(serviceAccountView), ...(sponsors?.length ? { sponsors } : {}) };
}

export const handler = httpHandler(async (request) => {
  const s = store();
  switch (request.routeKey) {
    case 'POST /accounts': {
      const body = parse(accountBody, request.body);
      const { account, created } = await createAccount(s, body);
      const { account: read, members } = created ? { account, members: [] } : await withMembers(s, account);
      // A create repeated with the same settings is a client's retry (its first answer may have
      // been lost): it gets the create's status, with the account as it is now.
      return json(201, accountView(read, s.now(), members));
    }
    case 'GET /accounts/{accountId}':
      return json(200, await fullView(s, await requireAccount(s, pathParam(request, 'accountId'))));
    case 'PATCH /accounts/{accountId}': {
      const accountId = pathParam(request, 'accountId');
      const body = parse(accountPatchBody, request.body);
      const account = await requireAccount(s, accountId);
      if (body.consumptionLimit !== undefined && !account.mainAccountId) {
        fail('conflict', `account ${accountId} is not attached to a main account: it has no consumption limit`);
      }
      if (body.sponsors) await setSponsors(s, accountId, body.sponsors);
      if (body.consumptionLimit !== undefined) await applyConsumptionLimit(s, accountId, body.consumptionLimit);
      if (body.status !== undefined) await setAccountStatus(s, accountId, body.status);
      return json(200, await fullView(s, await requireAccount(s, accountId)));
    }
    case 'POST /accounts/{accountId}/topup': {
      const accountId = pathParam(request, 'accountId');
      const body = parse(topUpBody, request.body);
      return answerResponse(await topUp(s, accountId, body.requestId, body.amount, requestHash(request, body), (account) => fullView(s, account)));
    }
    case 'GET /accounts/{accountId}/ledger': {
      const accountId = pathParam(request, 'accountId');
      const query = parse(pageQuery, request.query);
      await requireAccount(s, accountId);
      return json(200, await readLedger(s, accountId, query));
    }
    case 'GET /accounts/{accountId}/notifications': {
      const accountId = pathParam(request, 'accountId');
      const query = parse(pageQuery, request.query);
      await requireAccount(s, accountId);
      return json(200, await listNotifications(s, accountId, query));
    }
    default:
      return json(404, { code: 'not_found' });
  }
});
