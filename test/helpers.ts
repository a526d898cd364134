// Shared test fixtures: a fresh table on the run's DynamoDB Local, and the local API.
import { expect, inject } from 'vitest';
import { randomUUID } from 'node:crypto';
import { GetCommand, TransactWriteCommand } from '@aws-sdk/lib-dynamodb';
import { createStore, ensureTable, type Db, type Store } from '../functions/store/db.js';
import { putService } from '../functions/store/services.js';
import { createAccount, requireAccount, topUp } from '../functions/store/accounts.js';
import { readLedger } from '../functions/store/ledger.js';
import { relayNotifications } from '../functions/store/notifications.js';
import { ChargingError } from '../functions/domain/errors.js';
import { startLocalRuntime, type LocalRuntime } from '../infra/local/runtime.js';
import type { Notification, Notifier } from '../functions/notify.js';

export const dynamodbEndpoint = () => inject('dynamodbEndpoint');

export const uniqueTable = (prefix = 't') => `${prefix}-${randomUUID().slice(0, 8)}`;

/** A controllable clock: tests move time, never wait for it. */
export function testClock(start = '2026-01-01T00:00:00.000Z') {
  let nowMs = Date.parse(start);
  return {
    now: () => new Date(nowMs),
    advanceSeconds: (seconds: number) => { nowMs += seconds * 1000; },
  };
}

/** `twoWriteSteps`: for tests of what the two-write path leaves half done (see functions/store/ops.ts). */
export async function testStore(options: { now?: () => Date; db?: (inner: Db) => Db; twoWriteSteps?: boolean } = {}): Promise<Store> {
  const base = createStore({ tableName: uniqueTable(), endpoint: dynamodbEndpoint(), now: options.now, serviceCacheMs: 0, twoWriteSteps: options.twoWriteSteps });
  await ensureTable(base, { timeToLive: false }); // the tests' clocks are not DynamoDB Local's
  return options.db ? { ...base, db: options.db(base.db) } : base;
}

/**
 * Two stores on one table: `twoWrites` goes the two-write way (account first, record after:
 * what a hot account's writes do) and `oneWrite` the default way. `failNextTransaction`: the
 * next TransactWrite of either fails with `error` without going out (a handler dying between
 * the two writes, a throttle past the retries).
 */
export async function twoWriteAndOneWriteStores(options: { now?: () => Date } = {}): Promise<{ twoWrites: Store; oneWrite: Store; failNextTransaction: (error: Error) => void }> {
  let failure: Error | null = null;
  const twoWrites = await testStore({ now: options.now, twoWriteSteps: true, db: (inner: Db): Db => ({
    send: (command) => {
      if (!failure || !(command instanceof TransactWriteCommand)) return inner.send(command);
      const error = failure;
      failure = null;
      return Promise.reject(error);
    },
  }) });
  return { twoWrites, oneWrite: { ...twoWrites, twoWriteSteps: undefined }, failNextTransaction: (error) => { failure = error; } };
}

/**
 * A test store that can interleave another request once: after `runBefore(run)`, `run` goes
 * (and finishes) just before the next command `matches` picks, as if it landed between a
 * handler's read and its write. `pending()` says whether it is still waiting to run.
 */
export async function interleavingStore(matches: (command: unknown) => boolean, options: { now?: () => Date; twoWriteSteps?: boolean } = {}):
  Promise<{ store: Store; runBefore: (run: () => Promise<unknown>) => void; pending: () => boolean }> {
  let waiting: (() => Promise<unknown>) | null = null;
  const store = await testStore({ now: options.now, twoWriteSteps: options.twoWriteSteps, db: (inner: Db): Db => ({
    send: async (command) => {
      if (waiting && matches(command)) { const run = waiting; waiting = null; await run(); }
      return inner.send(command);
    },
  }) });
  return { store, runBefore: (run) => { waiting = run; }, pending: () => waiting !== null };
}

/**
 * The store, but its first read of a session or a request record finds nothing: a copy of a
 * request that read just before another copy recorded it (the race a repeat's first read
 * cannot close), so it goes on to write the account. For the paths that finish what such a
 * copy leaves.
 */
export function readingBeforeTheRecord(store: Store): Store {
  let missed = false;
  return { ...store, db: { send: (command: any) => {
    if (!missed && isRecordRead(command)) { missed = true; return Promise.resolve({}) as any; }
    return store.db.send(command);
  } } };
}

/** A read of a session item or of a request record (what readingBeforeTheRecord misses). */
export const isRecordRead = (command: unknown) => command instanceof GetCommand && /^(SES|REQ)#/.test(String(command.input.Key?.pk));

/** The two ways an operation writes an account (functions/store/ops.ts): for `it.each`, label and `twoWriteSteps`. */
export const writePaths = [['one write', false], ['two writes', true]] as const;

export const voice = { serviceId: 'voice', unit: 'seconds' as const, price: { amountMinor: 2, perUnits: 60 }, validitySeconds: 300, interimIntervalSeconds: 30 };

/** A service and a prepaid account holding `balance`. */
export async function fundedAccount(store: Store, accountId: string, balance: number) {
  await putService(store, voice);
  await createAccount(store, { accountId, currency: 'EUR', kind: 'prepaid' });
  if (balance > 0) await topUp(store, accountId, `topup-${accountId}-${randomUUID()}`, balance, randomUUID());
}

/** A reserve command for the 'voice' service from the S-CSCF. */
export const reserveCommand = (requestId: string, accountId = 'alice', units = 600) =>
  ({ requestId, accountId, clientId: 'scscf', serviceId: 'voice', requested: { units } });

/**
 * The ChargingError code a promise rejects with, or the code of a refusal it answers (a kept
 * one: status 400 and up), or 'no error'; any other error is rethrown.
 */
export async function codeOf(promise: Promise<unknown>): Promise<string> {
  let answer: unknown;
  try { answer = await promise; } catch (error) { if (error instanceof ChargingError) return error.code; throw error; }
  const kept = answer as { status?: number; body?: { code?: unknown } } | undefined;
  return (kept?.status ?? 0) >= 400 && typeof kept?.body?.code === 'string' ? kept.body.code : 'no error';
}

/**
 * The ledger reconciles: its entries sum to the balance and to the reservation, and
 * available = balance - reserved + creditLimit. Answers the account.
 */
export async function reconciled(store: Store, accountId: string) {
  const account = await requireAccount(store, accountId);
  const { entries } = await readLedger(store, accountId, { limit: 1000 });
  expect(entries.reduce((s: number, e: any) => s + e.amount, 0), `${accountId} ledger amounts`).toBe(account.balance);
  expect(entries.reduce((s: number, e: any) => s + e.reservedDelta, 0), `${accountId} ledger reservedDelta`).toBe(account.reserved);
  expect(account.available, `${accountId} available`).toBe(account.balance - account.reserved + account.creditLimit);
  return account;
}

export async function testApi(options: { now?: () => Date } = {}): Promise<LocalRuntime & { call: (method: string, path: string, body?: unknown, headers?: Record<string, string>) => Promise<{ status: number; body: any; contentType: string; text: string }> }> {
  const runtime = await startLocalRuntime({ endpoint: dynamodbEndpoint(), tableName: uniqueTable('api'), token: 'test-token', now: options.now });
  const call = async (method: string, path: string, body?: unknown, headers: Record<string, string> = {}) => {
    const response = await fetch(`${runtime.url}${path}`, {
      method,
      headers: { authorization: 'Bearer test-token', 'content-type': 'application/json', ...headers },
      body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    });
    const text = await response.text();
    let parsed: unknown = text;
    try { parsed = JSON.parse(text); } catch { /* not JSON */ }
    return { status: response.status, body: parsed as any, contentType: response.headers.get('content-type') ?? '', text };
  };
  return { ...runtime, call };
}

/** A notifier that keeps what it is given to publish, in order. */
export function captureNotifications(): { published: Notification[]; notifier: Notifier } {
  const published: Notification[] = [];
  return { published, notifier: { publish: async (n: Notification[]) => { published.push(...n); } } };
}

/**
 * The notification relay's backstop until `published` holds `count` notifications: it finds
 * its work through the due index, which (as in DynamoDB) may trail the writes a little, so a
 * later run gets what an earlier one did not see. Then one more run, which must find nothing.
 */
export async function relayUntil(store: Store, capture: { published: Notification[]; notifier: Notifier }, count: number): Promise<Notification[]> {
  for (let run = 0; run < 20 && capture.published.length < count; run++) await relayNotifications(store, capture.notifier);
  expect(await relayNotifications(store, capture.notifier)).toBe(0);
  return capture.published;
}
