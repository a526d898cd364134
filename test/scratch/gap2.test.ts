import { describe, it } from 'vitest';
import { reconciled, testStore, voice } from '../helpers.js';
import { putService } from '../../functions/store/services.js';
import { accountView, createAccount, requireAccount, topUp, withMembers } from '../../functions/store/accounts.js';
import { reserve } from '../../functions/store/sessions.js';
import { directDebit } from '../../functions/store/debits.js';
import { setSponsors } from '../../functions/store/sponsors.js';

describe('gap2', () => {
  it('20 concurrent charges of a main account summing to its available', async () => {
    for (let round = 0; round < 4; round++) {
      const store = await testStore();
      await putService(store, voice);
      await createAccount(store, { accountId: 'home', currency: 'EUR', kind: 'prepaid' });
      await topUp(store, 'home', 't', 1000, 'h');
      await createAccount(store, { accountId: 'S', currency: 'EUR', kind: 'prepaid' });
      await topUp(store, 'S', 't', 100, 'h');
      await setSponsors(store, 'home', [{ accountId: 'S', priority: 1 }]);
      const ms = Array.from({ length: 6 }, (_, i) => `m${i}`);
      for (const m of ms) await createAccount(store, { accountId: m, currency: 'EUR', kind: 'prepaid', mainAccountId: 'home' });
      for (const m of ms) await directDebit(store, { requestId: `${m}-e`, accountId: m, clientId: 'c', serviceId: 'voice', units: 60 * (10 + round * 20) }, 'h');
      const { account, members } = await withMembers(store, await requireAccount(store, 'home'));
      const available = accountView(account, store.now(), members).available;
      const each = Math.floor(available / 20 / 2) * 2;
      const answers = await Promise.all(Array.from({ length: 20 }, (_, i) => directDebit(store, { requestId: `x${i}`, accountId: 'home', clientId: 'c', serviceId: 'voice', units: ((i === 19 ? available - 19 * each : each) / 2) * 60 }, 'h').catch((e) => ({ status: 500, body: { error: String(e) } }))));
      console.log('main round', round, available, each, answers.map((a) => a.status).join(','), (await reconciled(store, 'S')).balance, JSON.stringify(await Promise.all(['home', ...ms].map(async (id) => { const a = await reconciled(store, id); return [a.balance, a.reserved]; }))));
    }
  }, 120000);
  it('10 concurrent duplicates of one member reserve', async () => {
    for (let round = 0; round < 4; round++) {
      const store = await testStore();
      await putService(store, voice);
      await createAccount(store, { accountId: 'S', currency: 'EUR', kind: 'prepaid' });
      await topUp(store, 'S', 'ts', 100000, 'h');
      await createAccount(store, { accountId: 'home', currency: 'EUR', kind: 'prepaid' });
      await setSponsors(store, 'home', [{ accountId: 'S', priority: 1 }]);
      await createAccount(store, { accountId: 'kid', currency: 'EUR', kind: 'prepaid', mainAccountId: 'home' });
      const others = Array.from({ length: 0 }, (_, i) => reserve(store, { requestId: `o${i}`, accountId: 'kid', clientId: 'c', serviceId: 'voice', requested: { units: 600 } }, 'h').catch((e) => ({ status: 500, body: { error: String(e) } })));
      const dups = Array.from({ length: 10 }, () => reserve(store, { requestId: `dup`, accountId: 'kid', clientId: 'c', serviceId: 'voice', requested: { units: 600 } }, 'h').catch((e) => ({ status: 500, body: { error: String(e) } })));
      const answers = await Promise.all([...others, ...dups]);
      console.log('dup round', round, answers.map((a) => a.status).join(','), [...new Set(answers.map((a) => a.status))], (await reconciled(store, 'S')).balance, JSON.stringify(await Promise.all(['home', 'kid'].map(async (id) => { const a = await reconciled(store, id); return [a.balance, a.reserved]; }))));
    }
  }, 120000);
});
