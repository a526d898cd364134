// Low-balance transfers from sponsors (seed 003): an account may list sponsors with
// priorities; when a grant finds its balance too low, the first sponsor (by priority) that
// can cover the shortfall transfers it. One transaction per transfer (sponsor -x, account
// +x, a ledger entry and a notification on each side); the account's `sponsorSeq` makes
// concurrent shortfalls of one account fetch once, the sponsor's `available >= x` means a
// sponsor never goes below its floor.
import { TransactWriteCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { key } from './table.js';
import { conditionFailedAt, withConflictRetry, type Store } from './db.js';
import { ledgerPut, type LedgerEntryType } from './ledger.js';
import { requireAccount, USABLE_CONDITION, type AccountItem } from './accounts.js';
import { notificationItem } from './notifications.js';
import { fail } from '../domain/errors.js';
import { sponsorsInOrder, type Sponsor } from '../domain/serviceAccount.js';

export type SponsoredAccount = AccountItem & { sponsors?: Sponsor[]; sponsorSeq?: number };

/** Covers `shortfallMinor` of `account` from its sponsors; 'moved' when the account changed under us. */
export async function takeFromSponsors(store: Store, account: SponsoredAccount, shortfallMinor: number): Promise<'given' | 'moved' | 'none'> {
  if (shortfallMinor <= 0) return 'moved';
  for (const sponsor of sponsorsInOrder(account.sponsors ?? [])) {
    const result = await transferFromSponsor(store, account, sponsor.accountId, shortfallMinor);
    if (result !== 'short') return result;
  }
  return 'none';
}

async function transferFromSponsor(store: Store, account: SponsoredAccount, sponsorId: string, x: number): Promise<'given' | 'moved' | 'short'> {
  const seq = account.sponsorSeq ?? 0;
  const transferId = `sponsor:${account.accountId}:${seq + 1}`;
  const at = store.now().toISOString();
  const entry = (accountId: string, amount: number, counterparty: string) =>
    ledgerPut(store, { accountId, entryId: `${transferId}:${amount < 0 ? 'from' : 'to'}`, at, type: 'sponsor_transfer', amount, reservedDelta: 0, counterparty });
  try {
    await withConflictRetry(() => store.db.send(new TransactWriteCommand({
      TransactItems: [
        { Update: {
          TableName: store.tableName, Key: key.account(sponsorId),
          UpdateExpression: 'SET balance = balance - :x, available = available - :x',
          ConditionExpression: `attribute_exists(pk) AND ${USABLE_CONDITION} AND available >= :x`,
          ExpressionAttributeNames: { '#status': 'status' },
          ExpressionAttributeValues: { ':x': x, ':active': 'active', ':now': at },
        } },
        { Update: {
          TableName: store.tableName, Key: key.account(account.accountId),
          // An attached account now holds money from outside its family, as after a top-up
          // (ownMoney: its main account's view no longer counts its money as the main's).
          UpdateExpression: `SET balance = balance + :x, available = available + :x, sponsorSeq = :next${account.mainAccountId ? ', ownMoney = :own' : ''}`,
          ConditionExpression: seq === 0 ? 'attribute_not_exists(sponsorSeq)' : 'sponsorSeq = :seq',
          ExpressionAttributeValues: { ':x': x, ':next': seq + 1, ...(seq === 0 ? {} : { ':seq': seq }), ...(account.mainAccountId ? { ':own': true } : {}) },
        } },
        entry(sponsorId, -x, account.accountId),
        entry(account.accountId, x, sponsorId),
        { Put: { TableName: store.tableName, Item: notificationItem(store, { type: 'sponsor_transfer', at, accountId: sponsorId, to: account.accountId, amount: x }, `${transferId}:from`) } },
        { Put: { TableName: store.tableName, Item: notificationItem(store, { type: 'sponsor_transfer', at, accountId: account.accountId, from: sponsorId, amount: x }, `${transferId}:to`) } },
      ],
    })));
  } catch (error) {
    if (conditionFailedAt(error, 1)) return 'moved';
    if (conditionFailedAt(error, 0)) return 'short';
    throw error;
  }
  return 'given';
}

/** PATCH { sponsors }: who pays when this account runs low, in priority order. */
export async function setSponsors(store: Store, accountId: string, sponsors: Sponsor[]): Promise<void> {
  const account = await requireAccount(store, accountId);
  for (const sponsor of sponsors) {
    if (sponsor.accountId === accountId) fail('validation_failed', 'an account cannot sponsor itself');
    const sponsorAccount = await requireAccount(store, sponsor.accountId);
    if (sponsorAccount.currency !== account.currency) fail('conflict', `sponsor ${sponsor.accountId} holds ${sponsorAccount.currency}, not ${account.currency}`);
  }
  await store.db.send(new UpdateCommand({
    TableName: store.tableName, Key: key.account(accountId),
    UpdateExpression: sponsors.length ? 'SET sponsors = :s' : 'REMOVE sponsors',
    ConditionExpression: 'attribute_exists(pk)',
    ...(sponsors.length ? { ExpressionAttributeValues: { ':s': sponsors } } : {}),
  }));
}
