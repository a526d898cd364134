// Low-balance transfers from sponsors (seed 003): an account may list sponsors with
// priorities; when a grant finds its balance too low, the first sponsor (by priority) that
// can cover the shortfall transfers it. One transaction per transfer (sponsor -x, account
// +x, a guard, a ledger entry and a notification on each side). The guard is one item per
// account and cover key (the asking operation and its n-th transfer; cover.ts): a request,
// its retries and its concurrent duplicates make a sponsor pay once, while concurrent
// shortfalls of different requests each get theirs at once. Until stop 23 the account's sponsorSeq was the guard,
// one transfer per account at a time: ten concurrent charges of an empty sponsored account
// got four refusals while the sponsor held plenty. The sponsor's `available >= x` means a
// sponsor never goes below its floor.
import { TransactWriteCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { key, TTL_ATTRIBUTE } from './table.js';
import { cancellationReasons, conditionFailedAt, plainItem, withConflictRetry, type Store } from './db.js';
import { ledgerPut } from './ledger.js';
import { requireAccount, USABLE_CONDITION, usableAt, type AccountItem } from './accounts.js';
import { reclaimAllotments } from './allotments.js';
import { notificationItem } from './notifications.js';
import { lowBalanceAfter } from './serviceAccounts.js';
import { fail } from '../domain/errors.js';
import { sponsorsInOrder, type Sponsor } from '../domain/serviceAccount.js';

/** `sponsorSeq`: how many transfers the account received (the simulator's auditor counts them). */
export type SponsoredAccount = AccountItem & { sponsors?: Sponsor[]; sponsorSeq?: number };

/** How long a transfer's guard outlives it: retries and retransmissions of its request come within minutes. */
const TRANSFER_GUARD_DAYS = 7;

/**
 * Covers `shortfallMinor` of `account` from its sponsors, once per `coverKey`. 'given': the
 * money came, now or for an earlier attempt of the same key; the caller writes again.
 * `stillShort`: asked first, false when the caller's write need not be covered any more.
 */
export async function takeFromSponsors(store: Store, account: SponsoredAccount, shortfallMinor: number, coverKey: string, stillShort?: () => Promise<boolean>): Promise<'given' | 'moved' | 'none'> {
  if (shortfallMinor <= 0) return 'moved';
  // A copy of the same request may have been applied since this one's write was refused
  // (with money another request brought): it asks no sponsor (fails before: the sponsor paid
  // the shortfall, and the money stayed in the account; review 15 of stop 27).
  if (stillShort && !(await stillShort())) return 'moved';
  for (const sponsor of sponsorsInOrder(account.sponsors ?? [])) {
    // Past its cap, a shortfall is the next sponsor's (fails before: one oversized reserve
    // could empty any sponsor into the account; review 4 of stop 26).
    if (shortfallMinor > (sponsor.maxTransfer ?? Number.MAX_SAFE_INTEGER)) continue;
    const result = await transferFromSponsor(store, account, sponsor.accountId, shortfallMinor, coverKey);
    if (result !== 'short') return result;
  }
  return 'none';
}

/** How many times a sponsor short only of what its members hold idle brings it back and is asked again. */
const SPONSOR_RECLAIM_TRIES = 3;

async function transferFromSponsor(store: Store, account: SponsoredAccount, sponsorId: string, x: number, coverKey: string, tries = 0): Promise<'given' | 'moved' | 'short'> {
  const transferId = `sponsor:${account.accountId}:${coverKey}`;
  const at = store.now().toISOString();
  const entry = (accountId: string, amount: number, counterparty: string) =>
    ledgerPut(store, { accountId, entryId: `${transferId}:${amount < 0 ? 'from' : 'to'}`, at, type: 'sponsor_transfer', amount, reservedDelta: 0, counterparty });
  try {
    await withConflictRetry(() => store.db.send(new TransactWriteCommand({
      TransactItems: [
        { Update: {
          TableName: store.tableName, Key: key.account(sponsorId),
          UpdateExpression: 'SET balance = balance - :x, available = available - :x',
          // Not an attached account (refused as a sponsor; one named before that was is skipped).
          ConditionExpression: `attribute_exists(pk) AND attribute_not_exists(mainAccountId) AND ${USABLE_CONDITION} AND available >= :x`,
          ExpressionAttributeNames: { '#status': 'status' },
          ExpressionAttributeValues: { ':x': x, ':active': 'active', ':now': at },
          ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
        } },
        { Update: {
          TableName: store.tableName, Key: key.account(account.accountId),
          // An attached account now holds money from outside its family, as after a top-up
          // (ownMoney: its main account's view no longer counts its money as the main's).
          UpdateExpression: `SET balance = balance + :x, available = available + :x, sponsorSeq = if_not_exists(sponsorSeq, :zero) + :one${account.mainAccountId ? ', ownMoney = :own' : ''}`,
          ConditionExpression: 'attribute_exists(pk)',
          ExpressionAttributeValues: { ':x': x, ':zero': 0, ':one': 1, ...(account.mainAccountId ? { ':own': true } : {}) },
        } },
        { Put: {
          TableName: store.tableName,
          Item: { ...key.sponsorTransfer(transferId), sponsorId, amount: x, at, [TTL_ATTRIBUTE]: Math.floor(Date.parse(at) / 1000) + TRANSFER_GUARD_DAYS * 86_400 },
          ConditionExpression: 'attribute_not_exists(pk)',
        } },
        entry(sponsorId, -x, account.accountId),
        entry(account.accountId, x, sponsorId),
        { Put: { TableName: store.tableName, Item: notificationItem(store, { type: 'sponsor_transfer', at, accountId: sponsorId, to: account.accountId, amount: x }, `${transferId}:from`) } },
        { Put: { TableName: store.tableName, Item: notificationItem(store, { type: 'sponsor_transfer', at, accountId: account.accountId, from: sponsorId, amount: x }, `${transferId}:to`) } },
      ],
    })));
  } catch (error) {
    if (conditionFailedAt(error, 2)) return 'given'; // an earlier attempt of this key transferred
    if (conditionFailedAt(error, 1)) return 'moved'; // the account is gone: the caller's write finds out
    if (conditionFailedAt(error, 0)) {
      // A main account sponsors with what its GET shows available, its members' idle
      // allotments included, as it charges with them: it brings those back and is asked again
      // (fails before: it could pay only what its own item held; review 4 of stop 26).
      const sponsor = plainItem(cancellationReasons(error)?.[0]?.Item) as AccountItem | undefined;
      if (tries < SPONSOR_RECLAIM_TRIES && sponsor && (sponsor.allottedOut ?? 0) > 0 && sponsor.available < x && usableAt(sponsor, at)) {
        const back = await reclaimAllotments(store, sponsorId, x - sponsor.available);
        if (back.backMinor > 0 || back.contended) return transferFromSponsor(store, account, sponsorId, x, coverKey, tries + 1);
      }
      return 'short';
    }
    throw error;
  }
  // The sponsor's own threshold (fails before: a transfer that took it below was never told,
  // and no later charge of its crossed again; review 8).
  await lowBalanceAfter(store, sponsorId, x, 'a sponsor transfer');
  return 'given';
}

/** PATCH { sponsors }: who pays when this account runs low, in priority order. */
export async function setSponsors(store: Store, accountId: string, sponsors: Sponsor[]): Promise<void> {
  const account = await requireAccount(store, accountId);
  // A sponsor named twice would be asked twice per shortfall (review).
  if (new Set(sponsors.map((s) => s.accountId)).size !== sponsors.length) fail('validation_failed', 'sponsors: an account is named more than once');
  for (const sponsor of sponsors) {
    if (sponsor.accountId === accountId) fail('validation_failed', 'an account cannot sponsor itself');
    const sponsorAccount = await requireAccount(store, sponsor.accountId);
    if (sponsorAccount.currency !== account.currency) fail('conflict', `sponsor ${sponsor.accountId} holds ${sponsorAccount.currency}, not ${account.currency}`);
    // Its money is its main account's allotment (its view shows none): it would pay outsiders
    // with the family's money (fails before; review).
    if (sponsorAccount.mainAccountId) fail('conflict', `sponsor ${sponsor.accountId} is attached to ${sponsorAccount.mainAccountId}, whose money it spends: name that account instead`);
    // Its main account's money comes within the member's consumptionLimit; as a sponsor it
    // would come past it (fails before: a member capped at 100 took 950; review).
    if (sponsor.accountId === account.mainAccountId) fail('conflict', `sponsor ${sponsor.accountId} is the main account of ${accountId}, which pays for it within its consumptionLimit`);
  }
  await store.db.send(new UpdateCommand({
    TableName: store.tableName, Key: key.account(accountId),
    UpdateExpression: sponsors.length ? 'SET sponsors = :s' : 'REMOVE sponsors',
    ConditionExpression: 'attribute_exists(pk)',
    ...(sponsors.length ? { ExpressionAttributeValues: { ':s': sponsors } } : {}),
  }));
}
