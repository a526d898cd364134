// Account notifications (seed 004: low balance, recharge done or failed, service denied) and
// the session notices (interim-update requests, expiries). Each is an item under its account,
// read by GET /accounts/{id}/notifications, and an outbox entry in the sparse `due` index
// (shards `out#k`), written by the transaction that decides it. The notification relay
// (functions/handlers/notification-relay.ts) publishes it to the event bus (EventBridge in
// AWS, the local event log locally) and clears the entry: from the table's stream about a
// second after the write, and from the outbox itself on a schedule, as a backstop. Writing
// the item is the commit; publishing is at least once, never lost with a failed call.
import { createHash, randomUUID } from 'node:crypto';
import { PutCommand, QueryCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { DUE_INDEX, DUE_SHARDS, TTL_ATTRIBUTE } from './table.js';
import { unmarshall } from '@aws-sdk/util-dynamodb';
import { batchGetAll, type Store } from './db.js';
import { decodeCursor, pageOf } from './cursor.js';
import type { Notification, Notifier } from '../notify.js';

export type AccountNotificationType = 'low_balance' | 'recharge_done' | 'recharge_failed' | 'service_denied' | 'sponsor_transfer' | 'session_expired' | 'interim_update_requested';

export interface AccountNotification {
  type: AccountNotificationType;
  at: string;
  accountId: string;
  [detail: string]: unknown;
}

/** Notifications are kept this long (DynamoDB TTL removes them). */
export const NOTIFICATION_RETENTION_DAYS = 90;

export const notificationKey = (accountId: string, at: string, id: string) => ({ pk: `NOTE#${accountId}`, sk: `${at}#${id}` });
const outboxShard = (id: string) => `out#${createHash('sha256').update(id).digest()[0]! % DUE_SHARDS}`;

/**
 * The item of a notification, for a Put on its own or inside a transaction. `id` makes a
 * retried write land on the same item (pass one derived from the operation).
 */
export function notificationItem(store: Store, n: AccountNotification, id: string = randomUUID()) {
  return {
    ...notificationKey(n.accountId, n.at, id),
    ...n,
    notificationId: id,
    dueShard: outboxShard(id),
    dueAt: n.at,
    [TTL_ATTRIBUTE]: Math.floor(Date.parse(n.at) / 1000) + NOTIFICATION_RETENTION_DAYS * 86_400,
  };
}

export async function recordNotification(store: Store, n: AccountNotification, id?: string): Promise<void> {
  await store.db.send(new PutCommand({ TableName: store.tableName, Item: notificationItem(store, n, id) }));
}

const INTERNAL = new Set(['pk', 'sk', 'dueShard', 'dueAt', TTL_ATTRIBUTE]);
const publicView = (item: Record<string, unknown>) => Object.fromEntries(Object.entries(item).filter(([k]) => !INTERNAL.has(k)));

export async function listNotifications(store: Store, accountId: string, options: { limit?: number; next?: string } = {}):
  Promise<{ notifications: Array<Record<string, unknown>>; next?: string }> {
  const pk = `NOTE#${accountId}`;
  const limit = options.limit ?? 50;
  const result = await store.db.send(new QueryCommand({
    TableName: store.tableName,
    KeyConditionExpression: 'pk = :pk',
    ExpressionAttributeValues: { ':pk': pk },
    ScanIndexForward: false,
    Limit: limit + 1,
    ...(options.next ? { ExclusiveStartKey: { pk, sk: decodeCursor(options.next) } } : {}),
  }));
  const page = pageOf(result.Items ?? [], limit, result.LastEvaluatedKey);
  return { notifications: page.items.map(publicView), ...(page.next ? { next: page.next } : {}) };
}

/** Keys of due-index entries in shards `<prefix>#0..7` due by `until`. */
export async function findDueKeys(store: Store, prefix: string, until: string, limitPerShard: number): Promise<Array<{ pk: string; sk: string }>> {
  const pages = await Promise.all(Array.from({ length: DUE_SHARDS }, (_, shard) => store.db.send(new QueryCommand({
    TableName: store.tableName,
    IndexName: DUE_INDEX,
    KeyConditionExpression: 'dueShard = :shard AND dueAt <= :until',
    ExpressionAttributeValues: { ':shard': `${prefix}#${shard}`, ':until': until },
    Limit: limitPerShard,
  }))));
  return pages.flatMap((page) => (page.Items ?? []).map((item: Record<string, any>) => ({ pk: String(item.pk), sk: String(item.sk) })));
}

async function clearOutboxEntry(store: Store, itemKey: { pk: unknown; sk: unknown }): Promise<void> {
  await store.db.send(new UpdateCommand({
    TableName: store.tableName, Key: itemKey,
    UpdateExpression: 'REMOVE dueShard, dueAt', ConditionExpression: 'attribute_exists(pk)',
  })).catch((error) => { if ((error as Error).name !== 'ConditionalCheckFailedException') throw error; });
}

export interface RelayOptions {
  /** Entries read per shard and round. */
  limitPerShard?: number;
  maxRounds?: number;
  /** Only entries at least this old: younger ones are the stream's to send (fewer duplicates). */
  graceSeconds?: number;
}

/**
 * The backstop: publishes what is pending in the outbox and clears the entries; returns how
 * many went out. Rounds of up to `limitPerShard` per shard, while a round finds any: a backlog
 * (a stream whose deliveries all failed) drains in one run, up to `maxRounds` rounds, rather
 * than 100 per shard a minute.
 */
export async function relayNotifications(store: Store, notifier: Notifier, options: RelayOptions = {}): Promise<number> {
  const { limitPerShard = 100, maxRounds = 10, graceSeconds = 0 } = options;
  let relayed = 0;
  for (let round = 0; round < maxRounds; round++) {
    const until = new Date(store.now().getTime() - graceSeconds * 1000).toISOString();
    const keys = await findDueKeys(store, 'out', until, limitPerShard);
    let relayedThisRound = 0;
    // A hundred at a time: each batch is published before the next is read.
    for (let i = 0; i < keys.length; i += 100) {
      // The index trails the table: an entry cleared a moment ago may still be listed, so the
      // items are read consistently (else a cleared one could go out again in every round).
      const items = await batchGetAll(store, keys.slice(i, i + 100), true);
      relayedThisRound += await publishAndClear(store, notifier, items.filter(isOutboxEntry));
    }
    relayed += relayedThisRound;
    if (relayedThisRound === 0) break;
  }
  return relayed;
}

/** A record of the table's stream, as Lambda hands it over (only its new image matters here). */
export interface StreamRecord {
  dynamodb?: { NewImage?: Record<string, unknown> };
}

/**
 * The prompt path: publishes the outbox entries among a batch of the table's stream records
 * (new images: an entry just written) and clears them. The event source's filter passes only
 * such records; anything else is skipped here too. An entry the backstop cleared meanwhile
 * goes out again: at least once.
 */
export async function relayStreamRecords(store: Store, notifier: Notifier, records: StreamRecord[]): Promise<number> {
  const byKey = new Map<string, Record<string, any>>();
  for (const record of records) {
    const image = record.dynamodb?.NewImage;
    const item = image ? unmarshall(image as any) : undefined;
    // A notification written twice (a retried Put) in one batch goes out once.
    if (item && isOutboxEntry(item)) byKey.set(`${item.pk}\n${item.sk}`, item);
  }
  return publishAndClear(store, notifier, [...byKey.values()]);
}

const isOutboxEntry = (item: Record<string, any>) =>
  String(item.pk).startsWith('NOTE#') && typeof item.dueShard === 'string' && item.dueShard.startsWith('out#');

async function publishAndClear(store: Store, notifier: Notifier, items: Array<Record<string, any>>): Promise<number> {
  if (items.length === 0) return 0;
  await notifier.publish(items.map((item) => publicView(item) as unknown as Notification));
  await Promise.all(items.map((item) => clearOutboxEntry(store, { pk: item.pk, sk: item.sk })));
  return items.length;
}

/**
 * A charge refused for want of credit or an inactive account is worth telling the owner
 * (seed 004's "service denied"). Best effort: the refusal is the answer either way.
 */
export async function noteDenial(store: Store, error: unknown, what: { accountId?: string; serviceId?: string; requestId?: string }): Promise<void> {
  const code = (error as { code?: string })?.code;
  if (!what.accountId || (code !== 'insufficient_credit' && code !== 'account_inactive')) return;
  await recordNotification(store, {
    type: 'service_denied', at: store.now().toISOString(), accountId: what.accountId, reason: code,
    ...(what.serviceId ? { serviceId: what.serviceId } : {}), ...(what.requestId ? { requestId: what.requestId } : {}),
  }, `denied:${what.requestId ?? randomUUID()}`).catch(() => undefined);
}
