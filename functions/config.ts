// Reads the environment once, at the edge. Nothing below functions/handlers reads it.
import { createStore, type Store } from './store/db.js';
import { eventBridgeNotifier, localNotifier, type Notifier } from './notify.js';

let current: Store | undefined;

/** The store the handlers use: the table named by TABLE_NAME, at AWS_ENDPOINT_URL_DYNAMODB if set. */
export function store(): Store {
  current ??= createStore({
    tableName: process.env.TABLE_NAME ?? 'charging',
    serviceCacheMs: Number(process.env.SERVICE_CACHE_SECONDS ?? 5) * 1000,
  });
  return current;
}

/** Lets the local server, tests and the simulator hand the handlers their own store. */
export function useStore(store: Store): void {
  current = store;
}

/** Set only where the local server guards the API; in AWS, IAM guards it before the handler runs. */
export const apiToken = () => process.env.CHARGING_API_TOKEN;

let currentNotifier: Notifier | undefined;

/** EventBridge when EVENT_BUS_NAME is set (AWS), the local event log otherwise. */
export function notifier(): Notifier {
  currentNotifier ??= process.env.EVENT_BUS_NAME ? eventBridgeNotifier(process.env.EVENT_BUS_NAME) : localNotifier();
  return currentNotifier;
}
