// Service accounts (seed 004) on the table. A service account is an account item of its
// own, `ACC#<owner>~<classification>` (`~` cannot occur in an identifier), holding units, so
// sessions charge it through the very same conditional write as any account (ops.ts). The
// owner's item lists its classifications (`serviceAccounts.<classification>`): a new session
// on the owner is refused by that write's condition when the service has an account of its
// own, so routing costs nothing for accounts without service accounts.
//
// A recharge is one transaction: owner -money, service account +units, a ledger entry on
// each, a notification, and the guard that makes it exactly once (the request record of a
// manual recharge, the threshold marker it consumes, the schedule marker whose due time it
// moves). Markers are never deleted (no function may delete items): consumed, they leave the index. Threshold and schedule markers sit in the sparse `due` index (shards `rch#k`),
// where the recharge trigger finds them: off the charging path, and nothing is scanned.
import { createHash, randomUUID } from 'node:crypto';
import { GetCommand, PutCommand, TransactWriteCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { DUE_SHARDS, key } from './table.js';
import { batchGetAll, cancellationReasons, isConditionFailure, withConflictRetry, type Store } from './db.js';
import { ledgerPut } from './ledger.js';
import { getAccountItem, keepRequestAnswer, requireAccount, USABLE_CONDITION, usableAt, type AccountItem, type StoredAnswer } from './accounts.js';
import { coverShortfall, hasCover, MAX_COVER_TRIES } from './cover.js';
import { plainItem } from './db.js';
import { findDueKeys, notificationItem, type AccountNotification } from './notifications.js';
import { ChargingError, fail, keptRechargeRefusalStatus, keptRefusal, reusedRequestId } from '../domain/errors.js';
import { getService } from './services.js';
import {
  crossedBelow, finalUnitActionOf, nextScheduledAt, putAsksForRecharge, rechargeOf, smallestRechargeMinor, unitsBought,
  type ServiceAccountSettings,
} from '../domain/serviceAccount.js';
import type { Movement } from '../domain/session.js';
import { MAX_BALANCE_MINOR } from '../domain/rating.js';

/** The item id of the service account of `accountId` for `classification`. */
export const serviceAccountId = (accountId: string, classification: string) => `${accountId}~${classification}`;
export const isServiceAccountId = (id: string) => id.includes('~');
/** The account a client knows: the owner of a service account, or the account itself. */
export const publicAccountId = (id: string) => id.split('~')[0]!;

export interface ServiceAccountItem extends AccountItem, ServiceAccountSettings {
  ownerAccountId: string;
  classification: string;
  rechargeSeq?: number;
}

/** What the owner's item keeps of each of its service accounts (for routing and listing). */
export interface ServiceAccountRef {
  unit: string;
  priority: number;
}

/**
 * The service accounts a main account keeps, as its item read within the last
 * `serviceCacheMs` (the service cache's window): every session and event of its attached
 * accounts asks (see mainAccountRoute), and a read each time would cost the family's
 * charging path a call. A PUT made in another process shows after the window at most.
 */
const mainRoutes = new Map<string, { refs: Record<string, ServiceAccountRef>; until: number }>();

async function serviceAccountsOf(store: Store, mainAccountId: string): Promise<Record<string, ServiceAccountRef>> {
  const cacheKey = `${store.tableName}/${mainAccountId}`;
  const cached = mainRoutes.get(cacheKey);
  if (cached && cached.until > Date.now()) return cached.refs;
  const item = (await store.db.send(new GetCommand({
    TableName: store.tableName, Key: key.account(mainAccountId), ProjectionExpression: 'serviceAccounts', ConsistentRead: true,
  }))).Item;
  const refs = (item?.serviceAccounts ?? {}) as Record<string, ServiceAccountRef>;
  if (mainRoutes.size > 10_000) mainRoutes.clear(); // a bound, not a cache policy
  if (store.serviceCacheMs > 0) mainRoutes.set(cacheKey, { refs, until: Date.now() + store.serviceCacheMs });
  return refs;
}

/**
 * The service account an attached account's new charge of `serviceId` draws on: its main
 * account's for that service (API.md: a session draws on a service account of the paying
 * account, and an attached account's charges are "debited from the main account"; a
 * family's shared data bundle). A member that may not charge (inactive, expired, its main
 * account suspended or past its validity) is refused (403) here. Null when the member's own
 * write decides instead: its main account keeps none; it has a `consumptionLimit`, which caps the money it
 * takes and which the bundle's units would slip past (its charges stay money); or it keeps a
 * service account of its own for the service. The member is read (its limit may change at any
 * time) only when its main account keeps one.
 */
export async function mainAccountRoute(store: Store, memberId: string, mainAccountId: string, serviceId: string):
  Promise<{ id: string; owner: string; ref: ServiceAccountRef } | null> {
  const refs = await serviceAccountsOf(store, mainAccountId);
  if (!Object.hasOwn(refs, serviceId)) return null;
  const member = await getAccountItem(store, memberId) as (AccountItem & { serviceAccounts?: Record<string, ServiceAccountRef> }) | null;
  if (!member || member.mainAccountId !== mainAccountId) return null;
  // Refused here, as its own write would refuse it: left to that write, a member made usable
  // again meanwhile (its main account resumed) was charged money instead of the bundle
  // (simulator, seed 2529).
  if (!usableAt(member, store.now().toISOString())) fail('account_inactive', `account ${memberId} is suspended or expired`);
  if (member.consumptionLimit !== undefined || Object.hasOwn(member.serviceAccounts ?? {}, serviceId)) return null;
  return { id: serviceAccountId(mainAccountId, serviceId), owner: mainAccountId, ref: refs[serviceId]! };
}

/** Why a charge of a service cannot draw on a service account that holds another unit (409 conflict). */
export const otherUnitDetail = (serviceId: string, serviceUnit: string, owner: string, ref: ServiceAccountRef) =>
  `service ${serviceId} is rated in ${serviceUnit} but the service account of ${owner} holds ${ref.unit}`;

type MarkerKind = 'THRESHOLD' | 'SCHEDULE';
const markerKey = (saId: string, kind: MarkerKind) => ({ pk: `RCH#${saId}`, sk: kind });
const rechargeShard = (saId: string) => `rch#${createHash('sha256').update(saId).digest()[0]! % DUE_SHARDS}`;

export function serviceAccountView(sa: ServiceAccountItem) {
  return {
    classification: sa.classification,
    unit: sa.unit,
    balance: sa.balance,
    reserved: sa.reserved,
    available: sa.available,
    priority: sa.priority,
    rate: { amount: sa.rate.amountMinor, units: sa.rate.units },
    ...(sa.minimumLevel !== undefined ? { minimumLevel: sa.minimumLevel } : {}),
    ...(sa.rechargeAmountMinor !== undefined ? { rechargeAmount: sa.rechargeAmountMinor } : {}),
    ...(sa.schedule ? { schedule: sa.schedule } : {}),
    onEmpty: sa.onEmpty,
    ...(sa.redirectUrl ? { redirectUrl: sa.redirectUrl } : {}),
  };
}

export async function getServiceAccount(store: Store, accountId: string, classification: string): Promise<ServiceAccountItem | null> {
  return (await getAccountItem(store, serviceAccountId(accountId, classification))) as ServiceAccountItem | null;
}

/** The service accounts of an owner, in priority order (one BatchGet). */
export async function listServiceAccounts(store: Store, owner: AccountItem & { serviceAccounts?: Record<string, ServiceAccountRef> }): Promise<ServiceAccountItem[]> {
  const classifications = Object.keys(owner.serviceAccounts ?? {});
  if (classifications.length === 0) return [];
  const items = (await batchGetAll(store, classifications.map((c) => key.account(serviceAccountId(owner.accountId, c))), true)) as ServiceAccountItem[];
  return items.sort((a, b) => a.priority - b.priority || (a.classification < b.classification ? -1 : 1));
}

/** PUT: creates the service account, or changes its settings (never its units). */
export async function putServiceAccount(store: Store, accountId: string, classification: string, settings: ServiceAccountSettings):
  Promise<{ serviceAccount: ServiceAccountItem; created: boolean }> {
  // The owner's `serviceAccounts` map is keyed by classification, and a map key `__proto__`
  // does not survive a read (unmarshall makes it the map's prototype, so the service account
  // would be neither listed nor charged): the one name refused.
  if (classification === '__proto__') fail('validation_failed', 'classification: __proto__ cannot name a service account');
  const rechargeUnits = settings.rechargeAmountMinor === undefined ? undefined : unitsBought(settings.rechargeAmountMinor, settings.rate);
  if (rechargeUnits === null) {
    fail('validation_failed', `rechargeAmount: buys more than an account may hold (${MAX_BALANCE_MINOR} ${settings.unit}) at this rate`, { maxBalance: MAX_BALANCE_MINOR });
  }
  // A recharge that buys nothing would leave the account below its minimum for good, unseen
  // (fails before: accepted, and every automatic recharge then did nothing; review).
  if (rechargeUnits === 0) fail('validation_failed', `rechargeAmount: ${settings.rechargeAmountMinor} buys no ${settings.unit} at this rate`);
  const owner = await requireAccount(store, accountId);
  if (isServiceAccountId(accountId)) fail('validation_failed', 'a service account cannot own service accounts');
  const listed = owner.serviceAccounts ?? {};
  if (!Object.hasOwn(listed, classification) && Object.keys(listed).length >= MAX_SERVICE_ACCOUNTS) {
    fail('conflict', `account ${accountId} keeps ${MAX_SERVICE_ACCOUNTS} service accounts, the most it may`);
  }
  // Sessions of the service draw units one for one: a service rated in another unit cannot
  // use it. (The service may also come later; charging checks again.)
  const service = await getService(store, classification).catch((error) => {
    if (error instanceof ChargingError && error.code === 'not_found') return null;
    throw error;
  });
  if (service && service.unit !== settings.unit) fail('conflict', `service ${classification} is rated in ${service.unit}, not ${settings.unit}`);
  const saId = serviceAccountId(accountId, classification);
  const now = store.now();
  const clean = { ...settings };
  for (const k of Object.keys(clean) as Array<keyof ServiceAccountSettings>) if (clean[k] === undefined) delete clean[k];
  let created = false;
  let before: ServiceAccountItem | undefined;
  try {
    const item: ServiceAccountItem = {
      accountId: saId, ownerAccountId: accountId, classification, currency: owner.currency, kind: 'prepaid', creditLimit: 0,
      status: 'active', balance: 0, reserved: 0, available: 0, consumed: 0, ops: {}, createdAt: now.toISOString(), ...clean,
    };
    await store.db.send(new PutCommand({ TableName: store.tableName, Item: { ...key.account(saId), ...item }, ConditionExpression: 'attribute_not_exists(pk)' }));
    created = true;
  } catch (error) {
    if (!isConditionFailure(error)) throw error;
    const names: Record<string, string> = {};
    const values: Record<string, unknown> = { ':unit': settings.unit };
    const sets: string[] = [];
    const removes: string[] = [];
    for (const field of ['rate', 'priority', 'minimumLevel', 'rechargeAmountMinor', 'schedule', 'onEmpty', 'redirectUrl'] as const) {
      names[`#${field}`] = field;
      if (settings[field] === undefined) removes.push(`#${field}`);
      else { sets.push(`#${field} = :${field}`); values[`:${field}`] = settings[field]; }
    }
    try {
      before = (await store.db.send(new UpdateCommand({
        TableName: store.tableName, Key: key.account(saId),
        UpdateExpression: `SET ${sets.join(', ')}${removes.length ? ` REMOVE ${removes.join(', ')}` : ''}`,
        // The unit of units already held cannot change under them.
        ConditionExpression: 'attribute_exists(pk) AND #unit = :unit',
        ExpressionAttributeNames: { ...names, '#unit': 'unit' }, ExpressionAttributeValues: values,
        ReturnValues: 'ALL_OLD',
      }))).Attributes as ServiceAccountItem;
    } catch (updateError) {
      if (isConditionFailure(updateError)) fail('conflict', `service account ${classification} of ${accountId} holds another unit`);
      throw updateError;
    }
  }
  await registerOnOwner(store, accountId, classification, { unit: settings.unit, priority: settings.priority });
  mainRoutes.delete(`${store.tableName}/${accountId}`);
  await placeScheduleMarker(store, saId, settings, now);
  const serviceAccount = (await getAccountItem(store, saId)) as ServiceAccountItem;
  // Already below a minimum this PUT set or raised (or gave a rechargeAmount): no charge will
  // cross it, so the PUT asks for the recharge itself. (The trigger checks the level again.)
  if (putAsksForRecharge(before, serviceAccount, serviceAccount.available)) {
    await store.db.send(new UpdateCommand(thresholdMarkerUpdate(store, saId, now.toISOString()).Update));
  }
  return { serviceAccount, created };
}

/**
 * Service accounts one owner keeps: its item lists them all, and its answers show them, under
 * DynamoDB's 400 KB (fails before: past ~2,600 a PUT was a half-written 500, and past ~700
 * with long settings a top-up's kept answer was; review 22 of stop 28). Checked on the owner
 * as read: PUTs of new classifications sent at once may pass it by as many, far from the limit.
 */
export const MAX_SERVICE_ACCOUNTS = 100;

async function registerOnOwner(store: Store, accountId: string, classification: string, ref: ServiceAccountRef): Promise<void> {
  // The map may not exist on older items; DynamoDB cannot SET a path under a missing map.
  try {
    await store.db.send(new UpdateCommand({
      TableName: store.tableName, Key: key.account(accountId),
      UpdateExpression: 'SET serviceAccounts.#c = :ref', ConditionExpression: 'attribute_exists(serviceAccounts)',
      ExpressionAttributeNames: { '#c': classification }, ExpressionAttributeValues: { ':ref': ref },
    }));
  } catch (error) {
    if (!isConditionFailure(error)) throw error;
    await store.db.send(new UpdateCommand({
      TableName: store.tableName, Key: key.account(accountId),
      UpdateExpression: 'SET serviceAccounts = if_not_exists(serviceAccounts, :empty)', ExpressionAttributeValues: { ':empty': {} },
    }));
    return registerOnOwner(store, accountId, classification, ref);
  }
}

async function placeScheduleMarker(store: Store, saId: string, settings: ServiceAccountSettings, now: Date): Promise<void> {
  if (!settings.schedule) {
    // Only an existing marker leaves the index (an UpdateItem would otherwise create one).
    await store.db.send(new UpdateCommand({
      TableName: store.tableName, Key: markerKey(saId, 'SCHEDULE'), UpdateExpression: 'REMOVE dueShard, dueAt', ConditionExpression: 'attribute_exists(pk)',
    })).catch((error) => { if (!isConditionFailure(error)) throw error; });
    return;
  }
  const existing = (await store.db.send(new GetCommand({ TableName: store.tableName, Key: markerKey(saId, 'SCHEDULE'), ConsistentRead: true }))).Item;
  if (existing?.dueAt && JSON.stringify(existing.schedule) === JSON.stringify(settings.schedule)) return;
  await store.db.send(new PutCommand({
    TableName: store.tableName,
    Item: { ...markerKey(saId, 'SCHEDULE'), saId, kind: 'SCHEDULE', schedule: settings.schedule, dueShard: rechargeShard(saId), dueAt: nextScheduledAt(settings.schedule, now).toISOString() },
  }));
}

// ------------------------------------------------------------------ levels (charging path)

/**
 * A crossing judged after a transaction that moved `takenMinor` out of `accountId`'s
 * available money (it returns nothing): one read of the account, then afterCharge on it as
 * read (a charge meanwhile may hide or repeat the crossing: README). A failure is logged, not
 * thrown: what was judged has landed, and its caller must still answer.
 */
export async function lowBalanceAfter(store: Store, accountId: string, takenMinor: number, what: string): Promise<void> {
  try {
    const account = await getAccountItem(store, accountId);
    if (account?.lowBalanceThreshold !== undefined) await afterCharge(store, account, { balanceDelta: -takenMinor, reservedDelta: 0, availableDelta: -takenMinor });
  } catch (error) {
    console.error(JSON.stringify({ level: 'ERROR', message: `low balance after ${what} not judged`, accountId, error: String(error) }));
  }
}

/**
 * After a charge on `account` (its item as written): if this write took the level below a
 * minimum, leave a threshold-recharge marker for the trigger (service accounts) and a
 * low-balance notification. Concurrent charges are serialized by the item, so exactly one
 * of them crosses; the marker's condition makes a second marker impossible anyway.
 */
export async function afterCharge(store: Store, account: AccountItem & Partial<ServiceAccountItem>, movement: Movement): Promise<void> {
  if (movement.availableDelta >= 0) return;
  const after = account.available;
  const before = after - movement.availableDelta;
  const level = account.classification ? account.minimumLevel : account.lowBalanceThreshold;
  if (!crossedBelow(before, after, level)) return;
  const at = store.now().toISOString();
  const owner = account.ownerAccountId ?? account.accountId;
  const note: AccountNotification = {
    type: 'low_balance', at, accountId: owner, available: after, level: level!,
    ...(account.classification ? { classification: account.classification, unit: account.unit } : {}),
  };
  if (!account.classification || !account.rechargeAmountMinor) {
    await store.db.send(new PutCommand({ TableName: store.tableName, Item: notificationItem(store, note) }));
    return;
  }
  // The trigger's recharge transaction writes the marker too: a conflict with it is retried.
  await withConflictRetry(() => store.db.send(new TransactWriteCommand({
    TransactItems: [thresholdMarkerUpdate(store, account.accountId, at), { Put: { TableName: store.tableName, Item: notificationItem(store, note) } }],
  })));
}

/**
 * Asks the trigger for a threshold recharge (a charge that crosses the minimum, a PUT that
 * leaves the level below a minimum it set or raised). One pending request is enough (it keeps
 * its dueAt, also a later one a failed recharge set), but every request gives it a new
 * markerId: the trigger consumes or drops only the request it read, so a crossing that comes
 * while it decides "no longer needed" is never lost. A consumed marker stays as an item
 * without due attributes (functions never delete).
 */
function thresholdMarkerUpdate(store: Store, saId: string, at: string) {
  return { Update: {
    TableName: store.tableName, Key: markerKey(saId, 'THRESHOLD'),
    UpdateExpression: 'SET saId = :sa, #kind = :kind, markerId = :m, dueShard = :shard, dueAt = if_not_exists(dueAt, :at)',
    ExpressionAttributeNames: { '#kind': 'kind' },
    ExpressionAttributeValues: { ':sa': saId, ':kind': 'THRESHOLD', ':m': randomUUID(), ':shard': rechargeShard(saId), ':at': at },
  } };
}

/**
 * The sweep's visit of a service account (it visits one while its operations leave entries on
 * it): a charge that took the level below the minimum asks for the recharge after its own
 * write (afterCharge). If that write failed, or its handler died in between, no later charge
 * crosses the minimum again (the level is below it already), and the recharge would never
 * come. The visit asks then, only when no request is pending (a pending one keeps its
 * markerId and its dueAt; the trigger checks the level again before it recharges).
 */
export async function askForMissedRecharge(store: Store, sa: AccountItem & Partial<ServiceAccountItem>): Promise<boolean> {
  if (!sa.classification || !sa.rechargeAmountMinor || !isBelowMinimum(sa as ServiceAccountItem)) return false;
  const { Update } = thresholdMarkerUpdate(store, sa.accountId, store.now().toISOString());
  try {
    await store.db.send(new UpdateCommand({ ...Update, ConditionExpression: 'attribute_not_exists(dueAt)' }));
    return true;
  } catch (error) {
    if (!isConditionFailure(error)) throw error;
    return false; // a request is pending
  }
}

// ------------------------------------------------------------------ recharges

/** Whether a threshold recharge is wanted: the service account has a minimum and is below it. */
const isBelowMinimum = (sa: Pick<ServiceAccountItem, 'available' | 'minimumLevel'>) => sa.minimumLevel !== undefined && sa.available < sa.minimumLevel;

type Guard =
  | { kind: 'manual'; requestId: string; bodyHash: string }
  | { kind: 'threshold'; markerId: string }
  | { kind: 'schedule'; dueAt: string; nextDueAt: string };

export type RechargeOutcome =
  | { ok: true; amountMinor: number; units: number; serviceAccount: ServiceAccountItem }
  | { ok: false; reason: 'insufficient' | 'inactive' | 'already' | 'gone' | 'full' | 'satisfied' };

const rechargeIdOf = (saId: string, guard: Guard) =>
  guard.kind === 'manual' ? `req:${guard.requestId}` : guard.kind === 'threshold' ? `thr:${guard.markerId}` : `sch:${saId}:${guard.dueAt}`;

function guardItem(store: Store, saId: string, guard: Guard, amountMinor: number, units: number) {
  if (guard.kind === 'manual') {
    // What was recharged, so a repeat can answer when the first handler died before keeping
    // its answer (keepRequestAnswer).
    return { Put: {
      TableName: store.tableName,
      Item: { ...key.request(guard.requestId), requestId: guard.requestId, h: guard.bodyHash, kind: 'recharge', saId, amount: amountMinor, units },
      ConditionExpression: 'attribute_not_exists(pk)', ReturnValuesOnConditionCheckFailure: 'ALL_OLD' as const,
    } };
  }
  if (guard.kind === 'threshold') {
    return { Update: {
      TableName: store.tableName, Key: markerKey(saId, 'THRESHOLD'), UpdateExpression: 'REMOVE dueShard, dueAt',
      ConditionExpression: 'markerId = :m AND attribute_exists(dueAt)', ExpressionAttributeValues: { ':m': guard.markerId },
    } };
  }
  return { Update: {
    TableName: store.tableName, Key: markerKey(saId, 'SCHEDULE'),
    UpdateExpression: 'SET dueAt = :next', ConditionExpression: 'dueAt = :due',
    ExpressionAttributeValues: { ':next': guard.nextDueAt, ':due': guard.dueAt },
  } };
}

/**
 * A recharge of `requestedMinor`, exactly once per guard: the units it buys go into `sa`, and
 * the owner pays what they cost (rechargeOf), never the rest of the amount.
 */
async function rechargeOnce(store: Store, sa: ServiceAccountItem, requestedMinor: number, guard: Guard, tries = 0, gave = 0): Promise<RechargeOutcome> {
  const recharge = rechargeOf(requestedMinor, sa.rate);
  if (recharge === null) return { ok: false, reason: 'full' };
  const { units, amountMinor } = recharge;
  const at = store.now().toISOString();
  const rechargeId = rechargeIdOf(sa.accountId, guard);
  const owner = sa.ownerAccountId;
  const threshold = guard.kind === 'threshold';
  const ledger = (accountId: string, amount: number, counterparty: string) => ledgerPut(store, {
    accountId, entryId: `recharge:${rechargeId}`, at, type: 'recharge', amount, reservedDelta: 0, units, counterparty,
    ...(guard.kind === 'manual' ? { requestId: guard.requestId } : {}),
  });
  try {
    await withConflictRetry(() => store.db.send(new TransactWriteCommand({
      TransactItems: [
        guardItem(store, sa.accountId, guard, amountMinor, units),
        { Update: {
          TableName: store.tableName, Key: key.account(owner),
          UpdateExpression: 'SET balance = balance - :m, available = available - :m',
          ConditionExpression: `attribute_exists(pk) AND ${USABLE_CONDITION} AND available >= :m`,
          ExpressionAttributeNames: { '#status': 'status' },
          ExpressionAttributeValues: { ':m': amountMinor, ':active': 'active', ':now': at },
          ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
        } },
        { Update: {
          TableName: store.tableName, Key: key.account(sa.accountId),
          UpdateExpression: 'SET balance = balance + :u, available = available + :u, rechargeSeq = if_not_exists(rechargeSeq, :zero) + :one',
          // No balance past MAX_BALANCE_MINOR, as for a top-up: sums must stay exact and readable.
          // A threshold recharge only while the level is below the minimum now, not as read:
          // a scheduled or manual one may have come first (the owner would pay twice), and a
          // PUT may have removed or lowered the minimum meanwhile (nobody asks for it any more).
          // Hence the item's own minimumLevel, not the one the trigger read.
          ConditionExpression: `attribute_exists(pk) AND balance <= :most${threshold ? ' AND attribute_exists(minimumLevel) AND available < minimumLevel' : ''}`,
          ExpressionAttributeValues: { ':u': units, ':zero': 0, ':one': 1, ':most': MAX_BALANCE_MINOR - units },
          ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
        } },
        ledger(owner, -amountMinor, sa.accountId),
        ledger(sa.accountId, units, owner),
        { Put: { TableName: store.tableName, Item: notificationItem(store, {
          type: 'recharge_done', at, accountId: owner, classification: sa.classification, amount: amountMinor, units, trigger: guard.kind,
        }, `recharge:${rechargeId}`) } },
      ],
    })));
  } catch (error) {
    const reasons = cancellationReasons(error);
    if (!reasons) throw error;
    if (reasons[0]?.Code === 'ConditionalCheckFailed') return { ok: false, reason: 'already' };
    if (reasons[2]?.Code === 'ConditionalCheckFailed') {
      const level = plainItem(reasons[2].Item) as ServiceAccountItem | undefined;
      if (!level) return { ok: false, reason: 'gone' };
      return { ok: false, reason: threshold && !isBelowMinimum(level) ? 'satisfied' : 'full' };
    }
    if (reasons[1]?.Code === 'ConditionalCheckFailed') {
      const ownerItem = plainItem(reasons[1].Item) as AccountItem | undefined;
      if (!ownerItem) return { ok: false, reason: 'gone' };
      if (!usableAt(ownerItem, at)) return { ok: false, reason: 'inactive' };
      // A short owner is covered as its charges are (its family, its sponsors: coverShortfall),
      // and again when a concurrent charge or recharge took what came before this write
      // could, up to MAX_COVER_TRIES tries, as a charge's write (fails before: asked once,
      // concurrent recharges of a sponsored owner were refused 402 while the sponsor held
      // plenty; review 2 of stop 26).
      if (tries < MAX_COVER_TRIES && ownerItem.available < amountMinor && hasCover(ownerItem)) {
        // Once per recharge and sponsor transfer this run has seen (cover.ts): two runs of it
        // at once make a sponsor pay once, whichever round each is in, while a run whose
        // transfer a concurrent charge spent, or a later run of the trigger after the owner
        // could not fund it, asks under the next key (it first finds the earlier keys' guards).
        // Before, the key was the owner's sponsorSeq as read and the try: copies in different
        // rounds each made the sponsor pay (review 8 of stop 26).
        const cover = await coverShortfall(store, ownerItem, amountMinor - ownerItem.available, `recharge:${rechargeId}:#${gave}`, tries === 0, tries);
        if (cover.retry) return rechargeOnce(store, sa, requestedMinor, guard, tries + 1, gave + (cover.gave ? 1 : 0));
        if (cover.taken === 'inactive') return { ok: false, reason: 'inactive' };
      }
      return { ok: false, reason: 'insufficient' };
    }
    throw error;
  }
  // The service account after it (for the answer) and the owner, in one read: a recharge that
  // took the owner below its lowBalanceThreshold is a low balance as a charge's would be.
  const read = await batchGetAll(store, [key.account(sa.accountId), key.account(owner)], true);
  const after = read.find((item) => item.accountId === sa.accountId) as ServiceAccountItem;
  const ownerAfter = read.find((item) => item.accountId === owner) as AccountItem | undefined;
  // Judged on the owner as read after the recharge (a transaction returns nothing): a move of
  // its money in between can hide a crossing or show one twice, as a charge's ALL_NEW never does.
  if (ownerAfter) await afterCharge(store, ownerAfter, { balanceDelta: -amountMinor, reservedDelta: 0, availableDelta: -amountMinor });
  return { ok: true, amountMinor, units, serviceAccount: after };
}

/**
 * POST …/recharge: on request, idempotent by requestId. The answer shows the service account
 * after the recharge; it is kept on the request record after the transaction (as a top-up's
 * is), so every repeat gets exactly what the first caller got.
 */
export async function manualRecharge(store: Store, accountId: string, classification: string, command: { requestId: string; amountMinor?: number }, bodyHash: string): Promise<StoredAnswer> {
  const answerOf = (recharged: { amount: number; units: number }, after: ServiceAccountItem): StoredAnswer => ({
    status: 200, body: { accountId, classification, recharged, serviceAccount: serviceAccountView(after) },
  });
  const replay = async (): Promise<StoredAnswer | null> => {
    const previous = (await store.db.send(new GetCommand({ TableName: store.tableName, Key: key.request(command.requestId), ConsistentRead: true }))).Item;
    if (!previous) return null;
    if (previous.h !== bodyHash || previous.kind !== 'recharge') reusedRequestId(command.requestId);
    if (previous.answer) return previous.answer as StoredAnswer;
    const after = (await getServiceAccount(store, accountId, classification)) ?? fail('not_found', `account ${accountId} has no service account ${classification}`);
    return keepRequestAnswer(store, command.requestId, answerOf({ amount: previous.amount, units: previous.units }, after));
  };
  const sa = await getServiceAccount(store, accountId, classification);
  /**
   * A recharge refused by the owner (short of money, suspended) is kept as the request's
   * record, with its recharge_failed notification in the same write, so a repeat is refused
   * alike even after a top-up (API.md: a repeat gets the original answer) and notifies once;
   * so is one refused against the service account's settings (keptRechargeRefusalStatus).
   * If a record exists already (a concurrent duplicate recharged first), its answer is the answer.
   */
  const keepRefusal = async (saId: string, refusal: ChargingError, notification?: ReturnType<typeof failureItem>): Promise<StoredAnswer> => {
    const record = { ...key.request(command.requestId), requestId: command.requestId, h: bodyHash, kind: 'recharge', saId, at: store.now().toISOString(), answer: keptRefusal(refusal, keptRechargeRefusalStatus) };
    try {
      await withConflictRetry(() => store.db.send(new TransactWriteCommand({ TransactItems: [
        { Put: { TableName: store.tableName, Item: record, ConditionExpression: 'attribute_not_exists(pk)' } },
        ...(notification ? [{ Put: { TableName: store.tableName, Item: notification } }] : []),
      ] })));
    } catch (error) {
      if (cancellationReasons(error)?.[0]?.Code !== 'ConditionalCheckFailed') throw error;
      return (await replay())!;
    }
    throw refusal;
  };
  const amountMinor = command.amountMinor ?? sa?.rechargeAmountMinor;
  if (!sa || amountMinor === undefined || amountMinor < smallestRechargeMinor(sa.rate) || unitsBought(amountMinor, sa.rate) === null) {
    // Refused against the service account as it is now (gone, no rechargeAmount, an amount
    // that buys nothing, or more than an account may hold, at today's rate): it may be a
    // repeat of a request that was fine when it came first, or a requestId reused with
    // another body, so the request record answers first. Only refusals pay this read.
    const previous = await replay();
    if (previous) return previous;
    if (!sa) return fail('not_found', `account ${accountId} has no service account ${classification}`);
    // Kept (fails before: repeated after a PUT gave a rechargeAmount or a cheaper rate, the
    // refused request recharged; review 12 of stop 27).
    if (amountMinor === undefined) return keepRefusal(sa.accountId, new ChargingError('validation_failed', `service account ${classification} has no rechargeAmount: give an amount`));
    if (amountMinor < smallestRechargeMinor(sa.rate)) return keepRefusal(sa.accountId, new ChargingError('validation_failed', `${amountMinor} buys no ${sa.unit} at this rate`));
    return tooManyUnits(sa);
  }
  const outcome = await rechargeOnce(store, sa, amountMinor, { kind: 'manual', requestId: command.requestId, bodyHash });
  // What was paid, which is less than what was asked when the rate does not divide it.
  if (outcome.ok) return keepRequestAnswer(store, command.requestId, answerOf({ amount: outcome.amountMinor, units: outcome.units }, outcome.serviceAccount));
  if (outcome.reason === 'already') return (await replay())!;
  if (outcome.reason === 'full') return tooManyUnits(sa);
  if (outcome.reason === 'insufficient') {
    const cost = rechargeOf(amountMinor, sa.rate)!.amountMinor;
    return keepRefusal(sa.accountId, new ChargingError('insufficient_credit', `account ${accountId} cannot fund ${cost} for ${classification}`, finalUnitActionExtra(sa)),
      failureItem(store, sa, cost, 'manual', 'insufficient_credit', `recharge_failed:${command.requestId}`));
  }
  // Told as an automatic recharge's refusal is (fails before: a manual one refused 403 was
  // never told; review 2 of stop 26).
  if (outcome.reason === 'inactive') {
    return keepRefusal(sa.accountId, new ChargingError('account_inactive', `account ${accountId} is suspended or expired`),
      failureItem(store, sa, rechargeOf(amountMinor, sa.rate)!.amountMinor, 'manual', 'account_inactive', `recharge_failed:${command.requestId}`));
  }
  return fail('not_found', `account ${accountId} has no service account ${classification}`);
}

const tooManyUnits = (sa: ServiceAccountItem): never =>
  fail('validation_failed', `amount: the service account would hold more than ${MAX_BALANCE_MINOR} ${sa.unit}`, { maxBalance: MAX_BALANCE_MINOR });

const finalUnitActionExtra = (sa: ServiceAccountItem) => {
  const action = finalUnitActionOf(sa);
  return { finalUnitAction: action.action, ...(action.redirectUrl ? { redirectUrl: action.redirectUrl } : {}) };
};

type FailureReason = 'insufficient_credit' | 'account_inactive' | 'service_account_full';

function failureItem(store: Store, sa: ServiceAccountItem, amountMinor: number, trigger: string, reason: FailureReason, id?: string) {
  return notificationItem(store, {
    type: 'recharge_failed', at: store.now().toISOString(), accountId: sa.ownerAccountId, classification: sa.classification,
    amount: amountMinor, trigger, reason,
  }, id);
}

/**
 * Settles an automatic recharge that failed: moves its marker on (`markerUpdate`, conditional
 * on the marker as the run read it) and notifies the owner in the same transaction. Runs of
 * the trigger that overlap read the same marker: only one of them moves it, so the owner is
 * told once (the notification's item is keyed by its time too, so a shared id alone would
 * not do); its id derives from the guard, so a retry of this very write lands on the same
 * item. False when another run (or a new crossing) moved the marker first.
 */
async function recordFailure(store: Store, markerUpdate: MarkerUpdate, notification?: ReturnType<typeof failureItem>): Promise<boolean> {
  try {
    await withConflictRetry(() => store.db.send(new TransactWriteCommand({ TransactItems: [
      { Update: markerUpdate },
      ...(notification ? [{ Put: { TableName: store.tableName, Item: notification } }] : []),
    ] })));
    return true;
  } catch (error) {
    if (cancellationReasons(error)?.[0]?.Code !== 'ConditionalCheckFailed') throw error;
    return false;
  }
}

// ------------------------------------------------------------------ the trigger

export interface RechargeSummary {
  examined: number;
  recharged: number;
  failed: number;
}

interface DueMarker {
  saId: string;
  kind: MarkerKind;
  markerId?: string;
  dueAt: string;
  schedule?: ServiceAccountSettings['schedule'];
  /** Threshold: the markerId whose failed recharge the owner was told of (once per request, not per retry). */
  failureNotified?: string;
}

/**
 * A threshold recharge the owner cannot fund (short of money, suspended, expired) is tried
 * again this long after, not dropped: the level is below the minimum already, so no charge
 * will cross it and ask again, and the service account would run dry after the owner tops
 * up. Not at every run of the trigger (each minute): an owner who stays short costs one
 * transaction per service account every quarter of an hour, and is told once.
 */
export const THRESHOLD_RETRY_SECONDS = 15 * 60;

/**
 * Runs every due threshold and scheduled recharge. Markers come from the due index; per
 * owner, recharges run one after another in priority order (lower number first), each a
 * conditional transaction on the owner's `available`, so when the owner cannot fund them all
 * the first ones in priority get the money and the others fail (and are notified).
 */
export async function runDueRecharges(store: Store, limitPerShard = 100): Promise<RechargeSummary> {
  const summary: RechargeSummary = { examined: 0, recharged: 0, failed: 0 };
  const now = store.now();
  const keys = await findDueKeys(store, 'rch', now.toISOString(), limitPerShard);
  if (keys.length === 0) return summary;
  const markers = ((await batchGetAll(store, keys, true)) as DueMarker[]).filter((m) => m.dueAt <= now.toISOString());
  const accounts = new Map<string, ServiceAccountItem>();
  const saIds = [...new Set(markers.map((m) => m.saId))];
  for (const item of (await batchGetAll(store, saIds.map((id) => key.account(id)), true)) as ServiceAccountItem[]) accounts.set(item.accountId, item);
  const byOwner = new Map<string, Array<{ marker: DueMarker; sa: ServiceAccountItem }>>();
  for (const marker of markers) {
    summary.examined++;
    const sa = accounts.get(marker.saId);
    if (!sa) { await dropMarker(store, marker); continue; }
    const list = byOwner.get(sa.ownerAccountId) ?? [];
    list.push({ marker, sa });
    byOwner.set(sa.ownerAccountId, list);
  }
  await Promise.all([...byOwner.entries()].map(async ([owner, list]) => {
    list.push(...await waitingBefore(store, owner, list, now.toISOString()));
    // Per service account, its schedule before its threshold ('SCHEDULE' < 'THRESHOLD'): a
    // scheduled recharge that lifts the level leaves the threshold one nothing to do.
    const order = (x: string, y: string) => (x < y ? -1 : x > y ? 1 : 0);
    list.sort((a, b) => a.sa.priority - b.sa.priority || order(a.sa.accountId, b.sa.accountId) || order(a.marker.kind, b.marker.kind));
    for (const { marker, sa } of list) {
      const outcome = await runMarker(store, marker, sa, now);
      if (outcome === 'recharged') summary.recharged++;
      else if (outcome === 'failed') summary.failed++;
    }
  }));
  return summary;
}

/**
 * The owner's recharges that come before every recharge found due in this run by priority,
 * yet were not found: threshold recharges that wait for a retry (one the owner could not fund
 * is tried again after THRESHOLD_RETRY_SECONDS), and any recharge due now that the run's page
 * of the due index left out (a shard with more than `limitPerShard` due, as on the first of
 * a month). Tried first, in this run, so the owner's money goes to the lower priority number
 * first (fails before: a priority-2 recharge due now took the money a waiting priority-1 one
 * needed, review; and one on the page took what a priority-1 schedule left off it needed,
 * review 18 of stop 28). One read of the owner, and of the markers and accounts of those
 * before, per owner with a recharge due: off the charging path.
 */
async function waitingBefore(store: Store, owner: string, due: Array<{ marker: DueMarker; sa: ServiceAccountItem }>, nowIso: string):
  Promise<Array<{ marker: DueMarker; sa: ServiceAccountItem }>> {
  const best = Math.min(...due.map((d) => d.sa.priority));
  const ownerItem = await getAccountItem(store, owner);
  const dueIds = new Set(due.map((d) => d.sa.accountId));
  const before = Object.entries(ownerItem?.serviceAccounts ?? {})
    .filter(([classification, ref]) => ref.priority < best && !dueIds.has(serviceAccountId(owner, classification)))
    .map(([classification]) => serviceAccountId(owner, classification));
  if (before.length === 0) return [];
  const markerKeys = before.flatMap((id) => [markerKey(id, 'SCHEDULE'), markerKey(id, 'THRESHOLD')]);
  const waiting = ((await batchGetAll(store, markerKeys, true)) as DueMarker[])
    .filter((m) => m.dueAt !== undefined && (m.kind === 'THRESHOLD' || m.dueAt <= nowIso));
  if (waiting.length === 0) return [];
  const accounts = (await batchGetAll(store, waiting.map((m) => key.account(m.saId)), true)) as ServiceAccountItem[];
  return waiting.flatMap((marker) => {
    const sa = accounts.find((a) => a.accountId === marker.saId);
    return sa ? [{ marker, sa }] : [];
  });
}

async function runMarker(store: Store, marker: DueMarker, sa: ServiceAccountItem, now: Date): Promise<'recharged' | 'failed' | 'skipped'> {
  const amountMinor = sa.rechargeAmountMinor;
  const nextDueAt = sa.schedule ? nextScheduledAt(sa.schedule, now).toISOString() : undefined;
  const guard: Guard | null = marker.kind === 'THRESHOLD'
    ? { kind: 'threshold', markerId: marker.markerId! }
    : nextDueAt ? { kind: 'schedule', dueAt: marker.dueAt, nextDueAt } : null;
  if (!guard || !amountMinor || amountMinor < smallestRechargeMinor(sa.rate)) { await dropMarker(store, marker); return 'skipped'; }
  // A threshold recharge that is no longer needed: a manual or scheduled one came first, or
  // a PUT removed the minimum or lowered it below the level.
  if (guard.kind === 'threshold' && !isBelowMinimum(sa)) { await dropMarker(store, marker); return 'skipped'; }
  const outcome = await rechargeOnce(store, sa, amountMinor, guard);
  if (outcome.ok) {
    // Still below the minimum (rechargeAmount buys less than the gap): no charge will cross
    // it again, so the request is made again at once; the next run recharges once more.
    const after = outcome.serviceAccount;
    if (guard.kind === 'threshold' && isBelowMinimum(after)) {
      await store.db.send(new UpdateCommand(thresholdMarkerUpdate(store, sa.accountId, store.now().toISOString()).Update));
    }
    return 'recharged';
  }
  if (outcome.reason === 'satisfied') { await dropMarker(store, marker); return 'skipped'; }
  if (outcome.reason === 'already' || outcome.reason === 'gone') return 'skipped';
  // Cannot be funded now (the owner short, suspended or expired), or would fill the service
  // account past what it may hold: told to the owner. The schedule waits for its next date;
  // a threshold request the owner cannot fund is tried again after THRESHOLD_RETRY_SECONDS,
  // the owner told only the first time; one that would overfill is dropped.
  const reason: FailureReason = outcome.reason === 'full' ? 'service_account_full' : outcome.reason === 'inactive' ? 'account_inactive' : 'insufficient_credit';
  const notification = failureItem(store, sa, rechargeOf(amountMinor, sa.rate)?.amountMinor ?? amountMinor, guard.kind, reason,
    `recharge_failed:${rechargeIdOf(sa.accountId, guard)}`);
  if (guard.kind === 'schedule') {
    return (await recordFailure(store, {
      TableName: store.tableName, Key: markerKey(sa.accountId, 'SCHEDULE'), UpdateExpression: 'SET dueAt = :next', ConditionExpression: 'dueAt = :due',
      ExpressionAttributeValues: { ':next': guard.nextDueAt, ':due': guard.dueAt },
    }, notification)) ? 'failed' : 'skipped';
  }
  if (reason === 'service_account_full') return (await recordFailure(store, dropUpdate(store, marker), notification)) ? 'failed' : 'skipped';
  const retryAt = new Date(now.getTime() + THRESHOLD_RETRY_SECONDS * 1000).toISOString();
  return (await recordFailure(store, {
    // Pending still (in the index), due later; a crossing meanwhile renews the markerId and keeps this dueAt.
    TableName: store.tableName, Key: markerKey(sa.accountId, 'THRESHOLD'),
    UpdateExpression: 'SET dueAt = :retry, failureNotified = :m', ConditionExpression: 'dueAt = :due AND markerId = :m',
    ExpressionAttributeValues: { ':retry': retryAt, ':due': marker.dueAt, ':m': guard.markerId },
  }, marker.failureNotified === guard.markerId ? undefined : notification)) ? 'failed' : 'skipped';
}

interface MarkerUpdate {
  TableName: string;
  Key: { pk: string; sk: string };
  UpdateExpression: string;
  ConditionExpression: string;
  ExpressionAttributeValues: Record<string, unknown>;
}

/** Drops the marker as read: a threshold request renewed since (a new markerId) stays. */
function dropUpdate(store: Store, marker: DueMarker): MarkerUpdate {
  const renewable = marker.kind === 'THRESHOLD' && marker.markerId !== undefined;
  return {
    TableName: store.tableName, Key: markerKey(marker.saId, marker.kind), UpdateExpression: 'REMOVE dueShard, dueAt',
    ConditionExpression: `dueAt = :due${renewable ? ' AND markerId = :m' : ''}`,
    ExpressionAttributeValues: { ':due': marker.dueAt, ...(renewable ? { ':m': marker.markerId } : {}) },
  };
}

async function dropMarker(store: Store, marker: DueMarker): Promise<void> {
  await store.db.send(new UpdateCommand(dropUpdate(store, marker))).catch((error) => { if (!isConditionFailure(error)) throw error; });
}
