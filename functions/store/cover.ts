// Who pays when an account is short (seeds 002 and 003), in one place for every path that
// takes money from an account: charges (ops.ts), the last agreement of a multi-party session
// (parties.ts) and service-account recharges (serviceAccounts.ts). Each asks the same people
// in the same order, so an account is never refused on one path for what another would cover.
import { coverFromFamily, type TakeResult } from './allotments.js';
import { takeFromSponsors, type SponsoredAccount } from './sponsors.js';
import type { Store } from './db.js';
import type { AccountItem } from './accounts.js';

/** Whether anyone may pay for `account` when it is short: the checks cost no call. */
export function hasCover(account: AccountItem): boolean {
  return !!account.mainAccountId || (account.allottedOut ?? 0) > 0 || !!(account as SponsoredAccount).sponsors?.length;
}

/** Write again, or the main account's refusal when an attached account's main gave nothing. */
export type Covered = { retry: true } | { retry: false; taken?: Exclude<TakeResult, 'given' | 'moved'> };

/**
 * `account`, as read, is short of `shortMinor`. An attached account takes an allotment from
 * its main account, and only that (its charges are its main account's: `taken` is the main
 * account's answer when it gave nothing). A main account brings back its members' idle
 * allotments, then its sponsors give what those did not bring. `retry`: money came, or the
 * account moved under us; the caller writes again, as it read nothing the write did not.
 */
export async function coverShortfall(store: Store, account: AccountItem, shortMinor: number): Promise<Covered> {
  const family = await coverFromFamily(store, account, shortMinor);
  if (family?.taken !== undefined) {
    const taken = family.taken;
    return taken === 'given' || taken === 'moved' ? { retry: true } : { retry: false, taken };
  }
  const stillShortMinor = shortMinor - (family?.reclaimedMinor ?? 0);
  const sponsored = !!(account as SponsoredAccount).sponsors?.length;
  const given = sponsored && stillShortMinor > 0 ? await takeFromSponsors(store, account as SponsoredAccount, stillShortMinor) : 'none';
  return family?.retry || given === 'given' || given === 'moved' ? { retry: true } : { retry: false };
}
