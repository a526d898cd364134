import { describe, expect, it } from 'vitest';
import { reconciled, testStore, voice } from '../helpers.js';
import { countingDb } from '../../functions/store/db.js';
import { putService } from '../../functions/store/services.js';
import { createAccount, topUp } from '../../functions/store/accounts.js';
import { reserve } from '../../functions/store/sessions.js';
import { setSponsors } from '../../functions/store/sponsors.js';

describe('gap', () => {
  it('20 concurrent reserves of a member of an empty sponsored main', async () => {
    for (let round = 0; round < 5; round++) {
      const store = await testStore();
      await putService(store, voice);
      await createAccount(store, { accountId: 'S', currency: 'EUR', kind: 'prepaid' });
      await topUp(store, 'S', 't', 100000, 'h');
      await createAccount(store, { accountId: 'home', currency: 'EUR', kind: 'prepaid' });
      await setSponsors(store, 'home', [{ accountId: 'S', priority: 1 }]);
      await createAccount(store, { accountId: 'kid', currency: 'EUR', kind: 'prepaid', mainAccountId: 'home' });
      const answers = await Promise.all(Array.from({ length: 20 }, (_, i) => reserve(store, { requestId: `r${i}`, accountId: 'kid', clientId: 'c', serviceId: 'voice', requested: { units: 600 } }, 'h').catch((e) => ({ status: 500, body: { error: String(e) } }))));
      const statuses = answers.map((a) => a.status);
      console.log('round', round, statuses.join(','), JSON.stringify(answers.filter(a => a.status !== 201).map(a => a.body)).slice(0, 400));
      console.log((await reconciled(store, 'S')).balance, (await reconciled(store, 'home')).balance, (await reconciled(store, 'kid')).balance);
    }
  }, 120000);
});
