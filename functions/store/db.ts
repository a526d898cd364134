// The DynamoDB boundary: a document client, the clock, and the few helpers every store
// module shares. Everything that touches DynamoDB goes through `Store.db.send`, so the
// simulator can inject faults and the benchmark can count calls at one place.
import { DynamoDBClient, CreateTableCommand, DescribeTableCommand, UpdateTimeToLiveCommand, ResourceNotFoundException } from '@aws-sdk/client-dynamodb';
import { BatchGetCommand, DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { unmarshall } from '@aws-sdk/util-dynamodb';
import { tableDefinition, TTL_ATTRIBUTE } from './table.js';
import { ChargingError } from '../domain/errors.js';
import { isTransientConflict } from './errors.js';
import { userAgentOf } from '../sdk-clients.js';

export interface Db {
  // The document client's send, narrowed to what the store uses.
  send(command: any): Promise<any>;
}

export interface Store {
  db: Db;
  tableName: string;
  now: () => Date;
  /** How long a service's rating may be served from memory. */
  serviceCacheMs: number;
  /**
   * Always write the account first and the record after (see ops.ts, one-write operations).
   * For tests of the two-write path's recovery, and for tables whose accounts are all hot.
   */
  twoWriteSteps?: boolean;
  /** Operations an account records at once (compaction.ts MAX_RECORDED_OPS unless told: tests reach it sooner). */
  maxRecordedOps?: number;
}

export interface StoreOptions {
  tableName: string;
  endpoint?: string;
  region?: string;
  now?: () => Date;
  serviceCacheMs?: number;
  twoWriteSteps?: boolean;
  db?: Db;
}

export function documentClient(options: { endpoint?: string; region?: string } = {}): DynamoDBDocumentClient {
  const client = new DynamoDBClient({
    ...(options.endpoint ? { endpoint: options.endpoint, credentials: { accessKeyId: 'local', secretAccessKey: 'local' } } : {}),
    region: options.region ?? process.env.AWS_REGION ?? 'us-east-1',
    maxAttempts: 3,
    defaultUserAgentProvider: userAgentOf('DynamoDB'),
  });
  // convertClassInstanceToMap: a map whose keys are ids may hold the key `constructor` (a
  // `shares` map naming an account so), which the marshaller otherwise takes for a class
  // instance and refuses (review 7 of stop 26). No item holds an instance of a class.
  return DynamoDBDocumentClient.from(client, { marshallOptions: { removeUndefinedValues: true, convertClassInstanceToMap: true } });
}

export function createStore(options: StoreOptions): Store {
  return {
    db: options.db ?? documentClient(options),
    tableName: options.tableName,
    now: options.now ?? (() => new Date()),
    serviceCacheMs: options.serviceCacheMs ?? 5_000,
    ...(options.twoWriteSteps ? { twoWriteSteps: true } : {}),
  };
}

/** Counts DynamoDB calls by command name: the benchmark's "calls per operation". */
export function countingDb(inner: Db): Db & { counts: Map<string, number>; total(): number; reset(): void } {
  const counts = new Map<string, number>();
  return {
    counts,
    total: () => [...counts.values()].reduce((a, b) => a + b, 0),
    reset: () => counts.clear(),
    send: (command) => {
      const name = command.constructor.name.replace(/Command$/, '');
      counts.set(name, (counts.get(name) ?? 0) + 1);
      return inner.send(command);
    },
  };
}

/**
 * Creates the table if it is missing. `timeToLive: false` is for tests: DynamoDB Local deletes
 * expired items by the real clock, and a test's own clock (often in the past) would see its
 * notifications vanish at random.
 */
export async function ensureTable(store: Store, options: { timeToLive?: boolean } = {}): Promise<'created' | 'exists'> {
  try {
    await store.db.send(new DescribeTableCommand({ TableName: store.tableName }));
    return 'exists';
  } catch (error) {
    if (!(error instanceof ResourceNotFoundException) && (error as Error).name !== 'ResourceNotFoundException') throw error;
  }
  await store.db.send(new CreateTableCommand(tableDefinition(store.tableName)));
  if (options.timeToLive === false) return 'created';
  await store.db.send(
    new UpdateTimeToLiveCommand({ TableName: store.tableName, TimeToLiveSpecification: { AttributeName: TTL_ATTRIBUTE, Enabled: true } }),
  );
  return 'created';
}

// The error classifiers live in a module of their own, free of the SDK, so the HTTP edge
// (functions/http/problem.ts, in every function's bundle) can use them too.
export { cancellationReasons, conditionFailedAt, isConditionFailure, isTransientConflict } from './errors.js';

/**
 * Retries a write that met another transaction in flight on the same item. The write is
 * conditional, so running it again can never apply it twice. When the conflicts outlast the
 * attempts the write did not happen, and nothing about the items can be concluded from it:
 * it ends as `temporarily_unavailable` (a 503 the client retries), never as the cancelled
 * transaction a caller would read as "a condition failed, so the item exists".
 */
export async function withConflictRetry<T>(attempt: () => Promise<T>, attempts = 6): Promise<T> {
  for (let i = 1; ; i++) {
    try {
      return await attempt();
    } catch (error) {
      if (!isTransientConflict(error)) throw error;
      if (i >= attempts) throw new ChargingError('temporarily_unavailable', 'the write met concurrent transactions too often; retry the request with the same requestId');
      await new Promise((r) => setTimeout(r, Math.random() * 10 * 2 ** i));
    }
  }
}

/**
 * Every item of `keys`, however many: BatchGetItem takes at most 100 keys a call, and may hand
 * some back unprocessed (throttling) instead of failing; those are asked for again, with a
 * backoff. When they keep coming back the run ends as `temporarily_unavailable`.
 */
export async function batchGetAll(store: Store, keys: Array<Record<string, unknown>>, consistentRead: boolean, attempts = 6, projection?: readonly string[]): Promise<Array<Record<string, any>>> {
  const projected = projection
    ? { ProjectionExpression: projection.map((_, i) => `#p${i}`).join(', '), ExpressionAttributeNames: Object.fromEntries(projection.map((name, i) => [`#p${i}`, name])) }
    : {};
  const items: Array<Record<string, any>> = [];
  for (let i = 0; i < keys.length; i += 100) {
    let pending = keys.slice(i, i + 100);
    for (let attempt = 1; pending.length > 0; attempt++) {
      if (attempt > attempts) throw new ChargingError('temporarily_unavailable', 'reads came back unprocessed too often; retry later');
      if (attempt > 1) await new Promise((r) => setTimeout(r, Math.random() * 10 * 2 ** attempt));
      const got = await store.db.send(new BatchGetCommand({ RequestItems: { [store.tableName]: { Keys: pending, ConsistentRead: consistentRead, ...projected } } }));
      items.push(...(got.Responses?.[store.tableName] ?? []));
      pending = got.UnprocessedKeys?.[store.tableName]?.Keys ?? [];
    }
  }
  return items;
}

/**
 * A read made only when first asked for (a refusal's look for a request's record), and again
 * only when asked `fresh`; every ask gets the latest read.
 */
export function lazyRead<T>(read: () => Promise<T>): (fresh?: boolean) => Promise<T> {
  let result: Promise<T> | undefined;
  return (fresh = false) => (fresh || !result ? (result = read()) : result);
}

/** DynamoDB returns the old item of a failed condition as raw attribute values. */
export function plainItem(item: Record<string, any> | undefined): Record<string, any> | undefined {
  if (!item) return undefined;
  const looksRaw = Object.values(item).every((v) => v && typeof v === 'object' && Object.keys(v).length === 1 && /^(S|N|M|L|BOOL|NULL|SS|NS|B|BS)$/.test(Object.keys(v)[0]!));
  return looksRaw ? unmarshall(item as any) : item;
}
