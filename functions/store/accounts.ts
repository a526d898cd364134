// Accounts: settings and the three money attributes. `available` = balance - reserved +
// creditLimit is kept on the item so a single conditional UpdateItem can test it.
// `ops` records, per session (or one-shot request) applied to the account, what was done
// last: it is what makes a retried write recognisable as already applied.
import { GetCommand, PutCommand, QueryCommand, TransactGetCommand, TransactWriteCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { dueShardOf, key, MEMBER_SK_PREFIX } from './table.js';
import { batchGetAll, cancellationReasons, conditionFailedAt, isConditionFailure, withConflictRetry, type Store } from './db.js';
import { heldFromMain, type Holding } from '../domain/allotment.js';
import { ledgerPut } from './ledger.js';
import { plainItem } from './db.js';
import { fail, keptRatingRefusalStatus, keptRefusal, reusedRequestId, type ChargingError } from '../domain/errors.js';
import { MAX_BALANCE_MINOR } from '../domain/rating.js';

export interface AccountInput {
  accountId: string;
  currency: string;
  kind: 'prepaid' | 'postpaid';
  creditLimit?: number;
  mainAccountId?: string;
  consumptionLimit?: number;
  validUntil?: string;
  lowBalanceThreshold?: number;
}

/** One applied operation on an account: a live hold, or a finished one kept for retries. */
export interface OpEntry {
  seq: number;
  /** Money held for the session now (0 once finished). */
  amt: number;
  /** Units of the current grant. */
  gu: number;
  /** Cumulative used units and charged money of the session. */
  u: number;
  chg: number;
  /** The request that made this step, and the hash of its body. */
  rid: string;
  h: string;
  /**
   * A random tag of this very entry (see newNonce). Removals, give-backs and "is this hold the
   * session's own?" go by it: `at` cannot tell two attempts within one millisecond apart.
   */
  n: string;
  at: string;
  /** validUntil of the current grant. */
  vu?: string;
  /** Set once the session is finished: how. */
  done?: 'closed' | 'expired' | 'released' | 'charged';
  /** Set when the step could not grant (insufficient credit). */
  denied?: boolean;
  /** With `denied`: it could not grant because the account may not charge now (suspended or expired). */
  ia?: boolean;
  /**
   * Set when the step granted fewer units than it was asked for: its answer carries finalUnit
   * (Final-Unit-Indication). Kept here because a roll-forward records the answer without the
   * request in hand.
   */
  fu?: boolean;
  /**
   * A released orphan only (done 'expired', seq 2): the hold its reserve took before dying
   * ahead of its session write, so a late retry of that reserve can still record it.
   */
  o?: { amt: number; gu: number; at: string; n: string; rid: string; h: string };
  /** Events of a multi-session only: its id, the service and the client, for the record. */
  ms?: string;
  svc?: string;
  cl?: string;
  /** ...and the account that asked, when another's service account paid (a member's, its main account's). */
  ac?: string;
}

export interface AccountItem extends AccountInput {
  creditLimit: number;
  status: 'active' | 'suspended';
  balance: number;
  reserved: number;
  available: number;
  consumed: number;
  ops: Record<string, OpEntry>;
  createdAt: string;
  /** Attached accounts: what was taken from the main account and not given back. */
  takenMinor?: number;
  /** Attached accounts: allotments moved so far (the concurrency guard of transfers). */
  allotSeq?: number;
  /** Attached accounts: allotments taken since the last given back (sizes the next, see domain/allotment.ts). */
  allotStreak?: number;
  /** Attached accounts: when the last allotment was taken (its idle return is due IDLE_RETURN_SECONDS later). */
  allottedAt?: string;
  /**
   * Attached accounts: the main account's validUntil (fixed at its creation), so a member
   * stops charging with it even while it spends an allotment taken before.
   */
  mainValidUntil?: string;
  /**
   * Attached accounts: set while the main account is suspended (setAccountStatus writes it on
   * each member), so a member stops charging with it, even from an allotment taken before.
   */
  mainStatus?: 'suspended';
  /**
   * Main accounts: how many times their status was set (PATCH); members: the count their
   * `mainStatus` reflects. A member takes a status only newer than the one it has, so PATCHes
   * racing each other leave every member as the main account's last write left it.
   */
  statusSeq?: number;
  mainStatusSeq?: number;
  /**
   * Main accounts: set with a status (PATCH) until every member took it. A PATCH whose handler
   * died before it reached them all is finished by the sweep, which the same write calls.
   */
  statusPendingSince?: string;
  /** Main accounts: allotments moved to attached accounts and not given back. */
  allottedOut?: number;
  /** Set by a top-up: the account holds money from outside (see domain/allotment.ts heldFromMain). */
  ownMoney?: boolean;
  /** Owners (seed 004): the service accounts by classification, which sessions of that service charge. */
  serviceAccounts?: Record<string, { unit: string; priority: number }>;
}

/**
 * When an account may spend: active, within its validity and, for a member, within its main
 * account's (`mainValidUntil`). USABLE_CONDITION is the rule in a write's condition (the time
 * at `:now`, the status as `#status`, `:active` = 'active'); usableAt the same rule on an item
 * as read, to tell a caller why a write was refused.
 */
export const USABLE_CONDITION = '#status = :active AND (attribute_not_exists(validUntil) OR validUntil > :now) AND (attribute_not_exists(mainValidUntil) OR mainValidUntil > :now) AND attribute_not_exists(mainStatus)';
export const usableAt = (account: AccountItem, at: string) =>
  account.status === 'active' && account.mainStatus === undefined && [account.validUntil, account.mainValidUntil].every((until) => until === undefined || until > at);

function settingsOf(input: AccountInput) {
  return {
    currency: input.currency,
    kind: input.kind,
    creditLimit: input.creditLimit ?? 0,
    mainAccountId: input.mainAccountId,
    consumptionLimit: input.consumptionLimit,
    validUntil: input.validUntil,
    lowBalanceThreshold: input.lowBalanceThreshold,
  };
}

export async function getAccountItem(store: Store, accountId: string): Promise<AccountItem | null> {
  const result = await store.db.send(new GetCommand({ TableName: store.tableName, Key: key.account(accountId), ConsistentRead: true }));
  return (result.Item as AccountItem | undefined) ?? null;
}

export async function requireAccount(store: Store, accountId: string): Promise<AccountItem> {
  return (await getAccountItem(store, accountId)) ?? fail('not_found', `account ${accountId} does not exist`);
}

/** Creates the account; creating it again with the same settings answers the existing one. */
export async function createAccount(store: Store, input: AccountInput): Promise<{ account: AccountItem; created: boolean }> {
  if (input.kind === 'prepaid' && input.creditLimit) fail('validation_failed', 'creditLimit is for postpaid accounts');
  if (input.mainAccountId === input.accountId) fail('validation_failed', 'an account cannot be its own main account');
  // API.md: an attached account's charges are "authorized against and debited from the main
  // account", so a credit line of its own would never be the one charged (it was, silently,
  // while the answers named the main account).
  if (input.mainAccountId && input.creditLimit) fail('validation_failed', 'creditLimit: an attached account is charged to its main account; give the credit line to the main account');
  // A member's stored balance is a chunk of its main account's money (its view shows none):
  // a threshold on it would fire on chunks no one sees (review). The main account's does.
  if (input.mainAccountId && input.lowBalanceThreshold !== undefined) fail('validation_failed', 'lowBalanceThreshold: an attached account spends its main account\'s money; give the threshold to the main account');
  // A cap on what an account may take from its main account: without one it would cap nothing.
  if (input.consumptionLimit !== undefined && !input.mainAccountId) fail('validation_failed', 'consumptionLimit is for accounts attached to a main account (mainAccountId)');
  let mainValidUntil: string | undefined;
  let mainSuspended = false;
  let mainStatusSeq = 0;
  if (input.mainAccountId) {
    const main = await requireAccount(store, input.mainAccountId);
    if (main.mainAccountId) fail('conflict', `account ${input.mainAccountId} is itself attached to ${main.mainAccountId}`);
    // Allotments move minor units as they are: across currencies they would create or lose money.
    if (main.currency !== input.currency) fail('conflict', `account ${input.mainAccountId} is in ${main.currency}, not ${input.currency}`);
    mainValidUntil = main.validUntil;
    mainSuspended = main.status === 'suspended';
    mainStatusSeq = main.statusSeq ?? 0;
  }
  const creditLimit = input.creditLimit ?? 0;
  const item: AccountItem = {
    accountId: input.accountId,
    ...settingsOf(input),
    creditLimit,
    status: 'active',
    balance: 0,
    reserved: 0,
    available: creditLimit,
    consumed: 0,
    ops: {},
    createdAt: store.now().toISOString(),
    ...(mainValidUntil ? { mainValidUntil } : {}),
    ...(mainSuspended ? { mainStatus: 'suspended' as const } : {}),
    ...(input.mainAccountId ? { mainStatusSeq } : {}),
  };
  try {
    const put = { TableName: store.tableName, Item: { ...key.account(input.accountId), ...item }, ConditionExpression: 'attribute_not_exists(pk)' };
    // A member is created with its link under the main account (listMembers), in one write,
    // which requires the main account's status as read: a status set meanwhile either finds
    // the link (it lists members after its own write) or makes this write read it again
    // (fails before: a member created as its main account was suspended could miss it; review 7).
    if (input.mainAccountId) {
      await withConflictRetry(() => store.db.send(new TransactWriteCommand({
        TransactItems: [{ Put: put }, { Put: { TableName: store.tableName, Item: key.member(input.mainAccountId!, input.accountId) } },
          { ConditionCheck: {
            TableName: store.tableName, Key: key.account(input.mainAccountId!),
            ConditionExpression: mainStatusSeq === 0 ? 'attribute_not_exists(statusSeq)' : 'statusSeq = :seq',
            ...(mainStatusSeq === 0 ? {} : { ExpressionAttributeValues: { ':seq': mainStatusSeq } }),
          } }],
      })));
    } else {
      await store.db.send(new PutCommand(put));
    }
    return { account: item, created: true };
  } catch (error) {
    if (input.mainAccountId && conditionFailedAt(error, 2)) return createAccount(store, input); // its status moved: read it again
    if (!isConditionFailure(error) && !conditionFailedAt(error, 0)) throw error;
  }
  const existing = await requireAccount(store, input.accountId);
  // consumptionLimit is the owner's to change (PATCH) at any time, so it is not part of what makes
  // a repeated create the same account.
  const identity = (settings: ReturnType<typeof settingsOf>) => JSON.stringify({ ...settings, consumptionLimit: undefined });
  const same = identity(settingsOf(existing)) === identity(settingsOf(input));
  if (!same) fail('conflict', `account ${input.accountId} already exists with other settings`);
  return { account: existing, created: false };
}

/**
 * The account as API.md shows it. A member's charges are "authorized against and debited
 * from the main account": the allotments a member holds unspent (domain/allotment.ts
 * heldFromMain) are shown as the main account's money (`members`: the main account's members
 * as read with it, see withMembers) and not as the member's, whose `consumed` is what its
 * charges took from the main account. Stored items keep allotments where they are: the
 * ledgers show the allotments, and reconcile with the items.
 */
export function accountView(account: AccountItem, now: Date, members: readonly Holding[] = []) {
  const expired = account.validUntil !== undefined && account.validUntil <= now.toISOString();
  const own = account.mainAccountId ? heldFromMain(account) : { heldMinor: 0, reservedMinor: 0 };
  const ofMembers = members.map(heldFromMain);
  const heldByMembers = ofMembers.reduce((total, m) => total + m.heldMinor, 0);
  const balance = account.balance - own.heldMinor + heldByMembers;
  const reserved = account.reserved - own.reservedMinor + ofMembers.reduce((total, m) => total + m.reservedMinor, 0);
  return {
    accountId: account.accountId,
    currency: account.currency,
    kind: account.kind,
    balance,
    reserved,
    available: balance - reserved + account.creditLimit,
    creditLimit: account.creditLimit,
    status: account.status === 'active' && expired ? 'expired' : account.status,
    // A member of a suspended or expired main account may not charge either: shown beside its
    // own status (fails before: an expired main account's member showed nothing; review 4).
    ...(account.mainStatus ? { mainStatus: account.mainStatus }
      : account.mainValidUntil !== undefined && account.mainValidUntil <= now.toISOString() ? { mainStatus: 'expired' } : {}),
    ...(account.validUntil ? { validUntil: account.validUntil } : {}),
    ...(account.mainAccountId ? { mainAccountId: account.mainAccountId, consumed: (account.takenMinor ?? 0) - own.heldMinor } : {}),
    ...(heldByMembers > 0 ? { heldByMembers } : {}),
    ...(account.consumptionLimit !== undefined ? { consumptionLimit: account.consumptionLimit } : {}),
    ...(account.lowBalanceThreshold !== undefined ? { lowBalanceThreshold: account.lowBalanceThreshold } : {}),
    serviceAccounts: [] as unknown[],
  };
}

/**
 * Suspends an account or makes it active again (PATCH). A suspended account authorizes
 * nothing (API.md: 403 account_inactive): every charging write carries USABLE_CONDITION. A
 * main account's status is written on each of its members too (`mainStatus`), after its own:
 * their charges are "authorized against" it (API.md), the ones they make from an allotment
 * taken before included, in the order of the main account's writes (`statusSeq`). A member
 * created meanwhile is created with the status it read only if it is still the main
 * account's (createAccount).
 */
export async function setAccountStatus(store: Store, accountId: string, status: 'active' | 'suspended'): Promise<void> {
  let seq: number;
  const now = store.now();
  const later = new Date(now.getTime() + STATUS_GRACE_MS).toISOString();
  // Due for the sweep a minute from now, or sooner (an account's mark may be up to 5 minutes
  // out: fails before, a dead PATCH waited for it; review 5 of stop 26); the status write
  // below puts the mark back should a visit have removed it in between.
  await markAccountDue(store, accountId, later, { onlyEarlier: true });
  try {
    // The status, and the mark that members have yet to take it, in one write: if this
    // handler dies before every member took the status, the sweep's visit finishes the job
    // (fails before: the members it had not reached charged on until the PATCH was sent again).
    const written = await store.db.send(new UpdateCommand({
      TableName: store.tableName, Key: key.account(accountId),
      UpdateExpression: 'SET #status = :status, statusSeq = if_not_exists(statusSeq, :zero) + :one, statusPendingSince = :now, dueShard = :shard, dueAt = if_not_exists(dueAt, :later)',
      ConditionExpression: 'attribute_exists(pk)',
      ExpressionAttributeNames: { '#status': 'status' },
      ExpressionAttributeValues: {
        ':status': status, ':zero': 0, ':one': 1, ':now': now.toISOString(), ':shard': dueShardOf(accountId), ':later': later,
      },
      ReturnValues: 'UPDATED_NEW',
    }));
    seq = written.Attributes!.statusSeq as number;
  } catch (error) {
    if (isConditionFailure(error)) fail('not_found', `account ${accountId} does not exist`);
    throw error;
  }
  await giveMembersStatus(store, accountId, status, seq);
}

/**
 * Puts the account in the due index at `dueAt` (its shard, its time). `onlyEarlier`: only if
 * that brings its mark forward (or it has none). An account that is gone is left alone.
 */
export async function markAccountDue(store: Store, accountId: string, dueAt: string, options: { onlyEarlier?: boolean } = {}): Promise<void> {
  try {
    await store.db.send(new UpdateCommand({
      TableName: store.tableName, Key: key.account(accountId),
      UpdateExpression: 'SET dueShard = :shard, dueAt = :due',
      ConditionExpression: options.onlyEarlier ? 'attribute_exists(pk) AND (attribute_not_exists(dueAt) OR dueAt > :due)' : 'attribute_exists(pk)',
      ExpressionAttributeValues: { ':shard': dueShardOf(accountId), ':due': dueAt },
    }));
  } catch (error) {
    if (!isConditionFailure(error)) throw error; // gone, or (onlyEarlier) due already
  }
}

/** Members given a status at once (giveMembersStatus). */
const MEMBERS_IN_FLIGHT = 25;

/** How long a PATCH has to reach its members before the sweep does it. */
const STATUS_GRACE_MS = 60_000;

/**
 * Every member of `accountId` takes its main account's status number `seq`, then the mark
 * that one is pending goes (only if no newer status came meanwhile: that one has its own).
 * Run by the PATCH, and by the sweep's visit of an account whose PATCH died on the way.
 */
export async function giveMembersStatus(store: Store, accountId: string, status: 'active' | 'suspended', seq: number): Promise<void> {
  // MEMBERS_IN_FLIGHT at once (each write stands alone): one at a time, a family of ~2,000
  // outlasted the handler's 10 s (review 22 of stop 28).
  const members = await listMembers(store, accountId);
  for (let i = 0; i < members.length; i += MEMBERS_IN_FLIGHT) await Promise.all(members.slice(i, i + MEMBERS_IN_FLIGHT).map(async (memberId) => {
    try {
      await store.db.send(new UpdateCommand({
        TableName: store.tableName, Key: key.account(memberId),
        UpdateExpression: status === 'suspended' ? 'SET mainStatus = :suspended, mainStatusSeq = :seq' : 'SET mainStatusSeq = :seq REMOVE mainStatus',
        // Only a newer status than the member has (fails before: a suspension and a resumption
        // racing each other could leave members as the older one left them; review 7).
        ConditionExpression: 'mainAccountId = :main AND (attribute_not_exists(mainStatusSeq) OR mainStatusSeq < :seq)',
        ExpressionAttributeValues: { ':main': accountId, ':seq': seq, ...(status === 'suspended' ? { ':suspended': 'suspended' } : {}) },
      }));
    } catch (error) {
      if (!isConditionFailure(error)) throw error; // no longer its member, or a newer status came first
    }
  }));
  try {
    await store.db.send(new UpdateCommand({
      TableName: store.tableName, Key: key.account(accountId),
      UpdateExpression: 'REMOVE statusPendingSince', ConditionExpression: 'statusSeq = :seq',
      ExpressionAttributeValues: { ':seq': seq },
    }));
  } catch (error) {
    if (!isConditionFailure(error)) throw error; // a newer status: its own PATCH (or the sweep) clears it
  }
}

/** The ids of the accounts attached to `mainAccountId` (their links, written at their creation). */
export async function listMembers(store: Store, mainAccountId: string): Promise<string[]> {
  const ids: string[] = [];
  let startKey: Record<string, unknown> | undefined;
  do {
    const page = await store.db.send(new QueryCommand({
      TableName: store.tableName,
      KeyConditionExpression: 'pk = :pk AND begins_with(sk, :member)',
      ExpressionAttributeValues: { ':pk': key.account(mainAccountId).pk, ':member': MEMBER_SK_PREFIX },
      ProjectionExpression: 'sk',
      ConsistentRead: true,
      ExclusiveStartKey: startKey,
    }));
    ids.push(...(page.Items ?? []).map((item: Record<string, string>) => item.sk!.slice(MEMBER_SK_PREFIX.length)));
    startKey = page.LastEvaluatedKey;
  } while (startKey);
  return ids;
}

/**
 * The account with the members whose allotments its view adds back (accountView). Only a
 * main account with allotments out has any to read. Members are read after the main account
 * by a consistent BatchGetItem, not in a transaction: in DynamoDB a TransactGetItems conflicts
 * with the members' one-write transactions, and a dashboard polling GET would push busy
 * members off that path. An allotment moving between the two reads would show twice or not
 * at all; `allottedOut` on the main account always equals what its members have taken
 * (`takenMinor`, both written by the allotment's transaction), so a read that does not add
 * up is made again, and after three such reads (allotments moving all the time) the main
 * account and up to 99 members are read in one TransactGetItems. Beyond 99, the last read
 * is answered as it is.
 */
export async function withMembers(store: Store, stored: AccountItem): Promise<{ account: AccountItem; members: AccountItem[] }> {
  if (!stored.allottedOut) return { account: stored, members: [] };
  const ids = await listMembers(store, stored.accountId);
  const attached = (item: AccountItem | undefined): item is AccountItem => item?.mainAccountId === stored.accountId;
  const addsUp = (main: AccountItem, members: AccountItem[]) => members.reduce((taken, m) => taken + (m.takenMinor ?? 0), 0) === (main.allottedOut ?? 0);
  let account = stored;
  let members: AccountItem[] = [];
  for (let attempt = 0; attempt < 3; attempt++) {
    if (attempt > 0) account = await requireAccount(store, stored.accountId);
    members = ((await batchGetAll(store, ids.map((id) => key.account(id)), true)) as AccountItem[]).filter(attached);
    if (addsUp(account, members)) return { account, members };
  }
  if (ids.length > 99) return { account, members };
  const read = await withConflictRetry(() => store.db.send(new TransactGetCommand({
    TransactItems: [stored.accountId, ...ids].map((id) => ({ Get: { TableName: store.tableName, Key: key.account(id) } })),
  })));
  const [main, ...items] = (read.Responses ?? []).map((r: { Item?: AccountItem }) => r.Item);
  return { account: main ?? account, members: items.filter(attached) };
}

/**
 * How a reserve's or an event's refusal against today's rating or routing is kept (a PUT may
 * change them; fails before: a repeat after one that would let it through was applied; review
 * 12 of stop 27): only for an account that exists, one read, only on such a refusal. An
 * unknown account is the refusal that comes first, and is not kept (else anyone could leave
 * refusals naming any id; reviews 15 of stop 27 and 24 of stop 28).
 */
export async function keptRatingRefusal(store: Store, accountId: string, refusal: ChargingError): Promise<StoredAnswer> {
  if (!(await getAccountItem(store, accountId))) fail('not_found', `account ${accountId} does not exist`);
  return keptRefusal(refusal, keptRatingRefusalStatus)!;
}

export interface StoredAnswer {
  status: number;
  body: Record<string, unknown>;
}

/**
 * Top-up: money in from outside. Rare per account, so one transaction (request record +
 * account + ledger entry) makes it exactly-once in a single call. Its answer is the account
 * as read after it, kept on the request record so a repeat answers the same (API.md: the
 * original answer), not the account as it is by then. `view`: how the answer shows the
 * account (the HTTP edge adds its service accounts and sponsors, as GET does); the bare
 * item's view by default.
 */
export async function topUp(store: Store, accountId: string, requestId: string, amountMinor: number, bodyHash: string,
  view: AccountViewOf = (account) => accountView(account, store.now())): Promise<StoredAnswer> {
  const at = store.now().toISOString();
  try {
    await withConflictRetry(() => store.db.send(new TransactWriteCommand({
      TransactItems: [
        { Put: { TableName: store.tableName, Item: { ...key.request(requestId), requestId, h: bodyHash, kind: 'topup', accountId, at }, ConditionExpression: 'attribute_not_exists(pk)', ReturnValuesOnConditionCheckFailure: 'ALL_OLD' } },
        { Update: {
          TableName: store.tableName, Key: key.account(accountId),
          // ownMoney: an attached account's money is no longer all its main account's (accountView).
          UpdateExpression: 'SET balance = balance + :a, available = available + :a, ownMoney = :own',
          // No balance past MAX_BALANCE_MINOR: sums of balances must stay exact (see rating.ts).
          ConditionExpression: 'attribute_exists(pk) AND balance <= :most',
          ExpressionAttributeValues: { ':a': amountMinor, ':most': MAX_BALANCE_MINOR - amountMinor, ':own': true },
          ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
        } },
        ledgerPut(store, { accountId, entryId: `topup:${requestId}`, at, type: 'topup', amount: amountMinor, reservedDelta: 0, requestId }),
      ],
    })));
  } catch (error) {
    const reasons = cancellationReasons(error);
    if (!reasons) throw error;
    const previous = plainItem(reasons[0]?.Item);
    if (previous) {
      if (previous.h !== bodyHash || previous.kind !== 'topup') reusedRequestId(requestId);
      return previous.answer ?? keepAnswer(store, accountId, requestId, view);
    }
    if (reasons[1]?.Code === 'ConditionalCheckFailed') {
      if (!reasons[1].Item) fail('not_found', `account ${accountId} does not exist`);
      fail('validation_failed', `amount: the balance would pass ${MAX_BALANCE_MINOR} minor units`, { maxBalance: MAX_BALANCE_MINOR });
    }
    throw error;
  }
  return keepAnswer(store, accountId, requestId, view);
}

export type AccountViewOf = (account: AccountItem) => Record<string, unknown> | Promise<Record<string, unknown>>;

/** The answer of a top-up: the account as it is after it. */
async function keepAnswer(store: Store, accountId: string, requestId: string, view: AccountViewOf): Promise<StoredAnswer> {
  return keepRequestAnswer(store, requestId, { status: 200, body: await view(await requireAccount(store, accountId)) });
}

/**
 * Keeps `answer` on the request record of a one-shot request (top-up, manual recharge) written
 * by its transaction, and answers what is kept: the first answer kept is the one every repeat
 * gets. A repeat that finds none (the first handler died after the transaction, before
 * keeping it, so nobody saw an answer) keeps its own.
 */
export async function keepRequestAnswer(store: Store, requestId: string, answer: StoredAnswer): Promise<StoredAnswer> {
  try {
    await store.db.send(new UpdateCommand({
      TableName: store.tableName, Key: key.request(requestId),
      UpdateExpression: 'SET answer = :answer', ConditionExpression: 'attribute_not_exists(answer)',
      ExpressionAttributeValues: { ':answer': answer },
      ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
    }));
  } catch (error) {
    if (!isConditionFailure(error)) throw error;
    return (plainItem(error.Item)?.answer as StoredAnswer | undefined) ?? answer;
  }
  return answer;
}
