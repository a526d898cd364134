// The DynamoDB boundary: a document client, the clock, and the few helpers every store
// module shares. Everything that touches DynamoDB goes through `Store.db.send`, so the
// simulator can inject faults and the benchmark can count calls at one place.
import { DynamoDBClient, CreateTableCommand, DescribeTableCommand, UpdateTimeToLiveCommand, ResourceNotFoundException } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { tableDefinition, TTL_ATTRIBUTE } from './table.js';

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
}

export interface StoreOptions {
  tableName: string;
  endpoint?: string;
  region?: string;
  now?: () => Date;
  serviceCacheMs?: number;
  db?: Db;
}

export function documentClient(options: { endpoint?: string; region?: string } = {}): DynamoDBDocumentClient {
  const client = new DynamoDBClient({
    ...(options.endpoint ? { endpoint: options.endpoint, credentials: { accessKeyId: 'local', secretAccessKey: 'local' } } : {}),
    region: options.region ?? process.env.AWS_REGION ?? 'us-east-1',
    maxAttempts: 3,
  });
  return DynamoDBDocumentClient.from(client, { marshallOptions: { removeUndefinedValues: true } });
}

export function createStore(options: StoreOptions): Store {
  return {
    db: options.db ?? documentClient(options),
    tableName: options.tableName,
    now: options.now ?? (() => new Date()),
    serviceCacheMs: options.serviceCacheMs ?? 5_000,
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

export async function ensureTable(store: Store): Promise<'created' | 'exists'> {
  try {
    await store.db.send(new DescribeTableCommand({ TableName: store.tableName }));
    return 'exists';
  } catch (error) {
    if (!(error instanceof ResourceNotFoundException) && (error as Error).name !== 'ResourceNotFoundException') throw error;
  }
  await store.db.send(new CreateTableCommand(tableDefinition(store.tableName)));
  await store.db.send(
    new UpdateTimeToLiveCommand({ TableName: store.tableName, TimeToLiveSpecification: { AttributeName: TTL_ATTRIBUTE, Enabled: true } }),
  );
  return 'created';
}

export function isConditionFailure(error: unknown): error is Error & { Item?: Record<string, any> } {
  return (error as Error)?.name === 'ConditionalCheckFailedException';
}

/** Reasons of a cancelled transaction, one per action, with the item where ALL_OLD was asked. */
export function cancellationReasons(error: unknown): Array<{ Code?: string; Item?: Record<string, any> }> | null {
  if ((error as Error)?.name !== 'TransactionCanceledException') return null;
  return ((error as any).CancellationReasons ?? []) as Array<{ Code?: string; Item?: Record<string, any> }>;
}

function isTransientConflict(error: unknown): boolean {
  const name = (error as Error)?.name;
  if (name === 'TransactionConflictException') return true;
  const reasons = cancellationReasons(error);
  return !!reasons && reasons.some((r) => r.Code === 'TransactionConflict') && !reasons.some((r) => r.Code === 'ConditionalCheckFailed');
}

/**
 * Retries a write that met another transaction in flight on the same item. The write is
 * conditional, so running it again can never apply it twice.
 */
export async function withConflictRetry<T>(attempt: () => Promise<T>, attempts = 6): Promise<T> {
  for (let i = 1; ; i++) {
    try {
      return await attempt();
    } catch (error) {
      if (i >= attempts || !isTransientConflict(error)) throw error;
      await new Promise((r) => setTimeout(r, Math.random() * 10 * 2 ** i));
    }
  }
}
