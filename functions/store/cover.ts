// Who pays when an account is short (seeds 002 and 003), in one place for every path that
// takes money from an account: charges (ops.ts), multi-party agreements and updates
// (parties.ts) and service-account recharges (serviceAccounts.ts). Each asks the same
// accounts in the same order, so an account is never refused on one path for what another
// would cover.
import { coverFromFamily, type TakeResult } from './allotments.js';
import { takeFromSponsors, type SponsoredAccount } from './sponsors.js';
import type { Store } from './db.js';
import { getAccountItem, usableAt, type AccountItem } from './accounts.js';
import { roomUnderLimit } from '../domain/allotment.js';
import { sponsorGives } from '../domain/serviceAccount.js';

/**
 * How many times one write asks for cover (coverShortfall) before it is refused. Each ask
 * that says "write again" stands on money that moved (for this request, or for a concurrent
 * one that then spent it: the retry may pass now) or on a first look, so the bound only
 * caps what a request waits among many contenders. Until stop 24 it was 4 rounds: 20
 * concurrent reserves of one member of an empty, sponsored main account land one allotment
 * per round between them, and 5–16 of the 20 were refused while the sponsor held plenty.
 * 100 events at once over 5 members of such a family took up to 57 tries for the unluckiest
 * (10 runs; 32 refused 13–28 of them in half the runs: review).
 */
export const MAX_COVER_TRIES = 64;

/** How many tries a contended give-back holds the sponsors back (coverShortfall). */
const FAMILY_FIRST_TRIES = 8;

/** Whether anyone may pay for `account` when it is short: the checks cost no call. */
export function hasCover(account: AccountItem): boolean {
  return !!account.mainAccountId || (account.allottedOut ?? 0) > 0 || sponsored(account);
}

const sponsored = (account: AccountItem) => !!(account as SponsoredAccount).sponsors?.length;

/**
 * Write again (`gave`: a sponsor transferred under the key asked, now or for a copy of the
 * request), or the main account's refusal when an attached account's main gave nothing.
 */
export type Covered = { retry: true; gave?: true } | { retry: false; taken?: Exclude<TakeResult, 'given' | 'moved'> };

/** What a sponsor's answer tells the caller: write again (`gave`: it transferred), or null when it gave nothing. */
const bySponsor = (given: 'given' | 'moved' | 'none'): Covered | null =>
  (given === 'none' ? null : given === 'given' ? { retry: true, gave: true } : { retry: true });

/**
 * `account`, as read, is short of `shortMinor`. In order:
 * - an attached account takes an allotment from its main account (its charges are its main
 *   account's); when the main account is short, the main account's sponsors top it up (the
 *   next round takes from it), and then the member's own sponsors pay; past its
 *   consumptionLimit only its own sponsors may (the limit caps what the main account gives);
 * - any other account brings back its members' idle allotments, then its sponsors give what
 *   those did not bring.
 * `retry`: money came, or the account moved under us; the caller writes again. `coverKey`
 * names what asks: the request and how many sponsor transfers it has seen (`gave`), never
 * its round. A sponsor pays once per key and account, so copies of one request make it pay
 * once whichever round each is in, while a request whose transfer a concurrent charge spent
 * asks under the next key (fails before, with the round in the key: a copy whose first
 * round brought the family's idle money back asked under another key than a copy that
 * asked at once, and the sponsor paid for each: 600 for a shortfall of 300; review 8 of
 * stop 26). The key counts the request's own transfers only: the paid account's count
 * moves with other requests' transfers between two copies' reads (review 10 of stop 26).
 * `firstRound`: a give-back that brought nothing is worth one more write only the first time
 * (a concurrent charge may have brought the chunks back first), not on every round.
 * `tries`: how many times the caller's write asked before. `stillShort`: asked before a
 * sponsor pays (sponsors.ts).
 */
export async function coverShortfall(store: Store, account: AccountItem, shortMinor: number, coverKey: string, firstRound = true, tries = 0, stillShort?: () => Promise<boolean>): Promise<Covered> {
  if (account.mainAccountId) return coverMember(store, account, shortMinor, coverKey, stillShort);
  const family = await coverFromFamily(store, account, shortMinor);
  const reclaimedMinor = family?.reclaimedMinor ?? 0;
  // The family's money first: when chunks came back, or when a member moved under a
  // give-back while the family can still pay (a concurrent charge brought it back: fails
  // before, 5–10 of 20 concurrent charges of a main account summing to its available were
  // refused while its members held the money), write again before any sponsor pays (a
  // sponsor paid half of what the family held, as a give-back lost its race; review).
  // Whether it can: what its members still hold to give back (read after the account) and
  // what came to it since (read afresh). A give-back between the two reads counts twice (one
  // more write, never a refusal); a member spending its chunk meanwhile is why it is asked.
  // For the first FAMILY_FIRST_TRIES tries only: a member taking holds under every give-back
  // would otherwise keep the sponsors from ever being asked (fails before: a 503; review).
  if (family && (reclaimedMinor > 0 || (family.contended && tries < FAMILY_FIRST_TRIES && ((await getAccountItem(store, account.accountId))?.available ?? 0) - account.available + family.spareMinor! >= shortMinor))) return { retry: true };
  const given = sponsored(account) ? await takeFromSponsors(store, account as SponsoredAccount, shortMinor, coverKey, stillShort) : 'none';
  return bySponsor(given) ?? (family?.retry && firstRound ? { retry: true } : { retry: false });
}

/**
 * What `account`'s payers could bring it now beyond its own `available` (a refused grant's
 * size: a partial grant counts the money cover can bring, as it would the account's own):
 * one sponsor's whole available at most (each pays a shortfall whole or not at all); for an
 * attached account, what its main account holds and one of its sponsors could add, within the
 * member's consumptionLimit headroom, or one of its own sponsors. Read only on a refusal;
 * 0 without a read when no one pays for the account (hasCover).
 * Before, an empty account whose sponsor held 500 was refused an ask of 502 (review).
 */
export async function coverableMinor(store: Store, account: AccountItem): Promise<number> {
  if (!hasCover(account)) return 0;
  const at = store.now().toISOString();
  // As a transfer's condition has it (sponsors.ts): a usable sponsor, not attached.
  const mostOneSponsorGives = async (of: AccountItem) => {
    const sponsors = (of as SponsoredAccount).sponsors ?? [];
    const items = await Promise.all(sponsors.map((s) => getAccountItem(store, s.accountId)));
    return Math.max(0, ...items.map((s, i) => (s && !s.mainAccountId && usableAt(s, at) ? sponsorGives(sponsors[i]!, s.available) : 0)));
  };
  const main = account.mainAccountId && await getAccountItem(store, account.mainAccountId);
  // A member of an unusable main account is covered by no one (coverMember stops at
  // 'inactive'): counting its payers made an update ask for ever more (fails before: 503; review).
  if (account.mainAccountId && !(main && usableAt(main, at))) return 0;
  return Math.max(await mostOneSponsorGives(account), main ? Math.min(headroomOf(account), Math.max(0, main.available) + await mostOneSponsorGives(main)) : 0);
}

/** What the main account may still give `member` under its consumptionLimit. */
const headroomOf = (member: AccountItem) => Math.max(0, roomUnderLimit(member.consumptionLimit, member.takenMinor ?? 0));

async function coverMember(store: Store, member: AccountItem, shortMinor: number, coverKey: string, stillShort?: () => Promise<boolean>): Promise<Covered> {
  const taken = (await coverFromFamily(store, member, shortMinor))!.taken!;
  // 'moved': the member took an allotment for another request meanwhile (its allotSeq
  // moved), or took part of the need from its siblings: the write may pass now.
  if (taken === 'given' || taken === 'moved') return { retry: true };
  if (taken === 'inactive') return { retry: false, taken };
  if (taken === 'insufficient') {
    const main = await getAccountItem(store, member.mainAccountId!);
    // The main account gives the member at most its consumptionLimit's headroom: its sponsors
    // top it up for no more (fails before: they paid the whole shortfall; review).
    const headroomMinor = Math.min(shortMinor, headroomOf(member));
    const mainShortMinor = main ? headroomMinor - Math.max(0, main.available) : 0;
    // The main account holds what the member may take now, though the take found it short:
    // concurrent requests' sponsors topped it up meanwhile (fails before: 5 of 20 concurrent
    // reserves of a member refused so, while the money sat in the main account).
    if (main && mainShortMinor <= 0 && headroomMinor > 0) return { retry: true };
    if (main && sponsored(main) && mainShortMinor > 0) {
      const covered = bySponsor(await takeFromSponsors(store, main as SponsoredAccount, mainShortMinor, coverKey, stillShort));
      if (covered) return covered;
    }
  }
  const covered = sponsored(member) ? bySponsor(await takeFromSponsors(store, member as SponsoredAccount, shortMinor, coverKey, stillShort)) : null;
  return covered ?? { retry: false, taken };
}
