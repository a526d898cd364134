// The whole system on one machine: DynamoDB Local, the table, the API emulation and the
// schedules on timers. Used by `npm start`, by the HTTP tests and by the simulator.
import type { Server } from 'node:http';
import { randomBytes } from 'node:crypto';
import { startDynamoDbLocal, freePort, type DynamoDbLocal } from './dynamodb.js';
import { loadHandler, startLocalApi } from './api-gateway.js';
import { createStore, ensureTable, type Store } from '../../functions/store/db.js';
import { useStore } from '../../functions/config.js';
import { localEventLog } from '../../functions/notify.js';
import { schedules, type ScheduledHandlerName } from '../../functions/http/routes.js';

/** How often the local runtime relays notifications (in AWS the table's stream does, within about a second). */
const RELAY_EVERY_MS = 1_000;

export interface LocalRuntime {
  url: string;
  token: string;
  store: Store;
  dynamodb?: DynamoDbLocal;
  runSchedule(name: ScheduledHandlerName): Promise<unknown>;
  stop(): Promise<void>;
}

export interface RuntimeOptions {
  port?: number;
  dataDir?: string;
  /** Use this DynamoDB endpoint instead of starting one. */
  endpoint?: string;
  tableName?: string;
  token?: string;
  /** Run the schedules on timers (npm start) or only on request (tests). */
  timers?: boolean;
  now?: () => Date;
}

export async function startLocalRuntime(options: RuntimeOptions = {}): Promise<LocalRuntime> {
  const dynamodb = options.endpoint ? undefined : await startDynamoDbLocal({ dataDir: options.dataDir });
  const endpoint = options.endpoint ?? dynamodb!.endpoint;
  const tableName = options.tableName ?? process.env.TABLE_NAME ?? 'charging';
  // The handlers read their table and endpoint from the environment, as in AWS.
  process.env.TABLE_NAME = tableName;
  process.env.AWS_ENDPOINT_URL_DYNAMODB = endpoint;
  process.env.AWS_REGION ??= 'us-east-1';
  process.env.AWS_ACCESS_KEY_ID ??= 'local';
  process.env.AWS_SECRET_ACCESS_KEY ??= 'local';
  // An empty CHARGING_API_TOKEN is no token: it would switch the check off.
  const token = options.token || process.env.CHARGING_API_TOKEN || randomBytes(16).toString('hex');
  process.env.CHARGING_API_TOKEN = token;
  const store = createStore({ tableName, endpoint, now: options.now, serviceCacheMs: 0 });
  useStore(store);
  await ensureTable(store);

  const invoke = async (name: ScheduledHandlerName) => {
    const handler = await loadHandler<(event: unknown) => Promise<unknown>>(name);
    return handler({ 'detail-type': 'Scheduled Event', source: 'aws.events', time: store.now().toISOString() });
  };
  // There is no table stream here: the relay's backstop stands in for it, after every other
  // scheduled run and every second with the timers, one run at a time (so nothing goes out
  // twice locally).
  let relaying: Promise<unknown> = Promise.resolve();
  const relay = () => (relaying = relaying.catch(() => undefined).then(() => invoke('notification-relay')));
  const runSchedule = async (name: ScheduledHandlerName) => {
    if (name === 'notification-relay') return relay();
    const summary = await invoke(name);
    await relay();
    return summary;
  };
  const port = options.port ?? (await freePort());
  const server: Server = await startLocalApi({
    port,
    extra: (method, path) => {
      if (method === 'GET' && path === '/local/events') return async () => ({ status: 200, body: { events: [...localEventLog].reverse() } });
      const m = /^\/local\/schedules\/([a-z-]+)\/run$/.exec(path);
      if (method !== 'POST' || !m) return undefined;
      const name = m[1] as ScheduledHandlerName;
      if (!schedules.some((s) => s.name === name)) return async () => ({ status: 404, body: { code: 'not_found', detail: `no schedule ${name}` } });
      return async () => ({ status: 200, body: { schedule: name, summary: await runSchedule(name) } });
    },
  });
  const timers = (options.timers ? schedules : []).map((s) => setInterval(() => {
    runSchedule(s.name).catch((error) => console.error(`schedule ${s.name} failed`, error));
  }, s.name === 'notification-relay' ? RELAY_EVERY_MS : s.everyMinutes * 60_000));

  return {
    url: `http://127.0.0.1:${port}`,
    token,
    store,
    dynamodb,
    runSchedule,
    stop: async () => {
      timers.forEach(clearInterval);
      await new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections?.();
      await dynamodb?.stop();
    },
  };
}
