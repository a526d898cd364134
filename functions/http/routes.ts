// Every HTTP route, once: the local server and the CDK stack both read this table, so the
// API served locally is the API deployed.
export type HandlerName =
  | 'health' | 'services' | 'accounts' | 'reserve' | 'update' | 'debit' | 'refund'
  | 'sessions-read' | 'direct-debit' | 'agree' | 'service-accounts';

export type ScheduledHandlerName = 'interim-sweep' | 'recharge-trigger' | 'notification-relay';

export interface Route {
  method: 'GET' | 'POST' | 'PUT' | 'PATCH';
  /** API Gateway route path, parameters in braces. */
  path: string;
  handler: HandlerName;
  /** Public routes need no credentials. */
  public?: boolean;
}

export const routes: Route[] = [
  { method: 'GET', path: '/health', handler: 'health', public: true },
  { method: 'PUT', path: '/services/{serviceId}', handler: 'services' },
  { method: 'GET', path: '/services/{serviceId}', handler: 'services' },
  { method: 'POST', path: '/accounts', handler: 'accounts' },
  { method: 'GET', path: '/accounts/{accountId}', handler: 'accounts' },
  { method: 'PATCH', path: '/accounts/{accountId}', handler: 'accounts' },
  { method: 'POST', path: '/accounts/{accountId}/topup', handler: 'accounts' },
  { method: 'GET', path: '/accounts/{accountId}/ledger', handler: 'accounts' },
  { method: 'GET', path: '/accounts/{accountId}/notifications', handler: 'accounts' },
  { method: 'PUT', path: '/accounts/{accountId}/service-accounts/{classification}', handler: 'service-accounts' },
  { method: 'GET', path: '/accounts/{accountId}/service-accounts/{classification}', handler: 'service-accounts' },
  { method: 'GET', path: '/accounts/{accountId}/service-accounts/{classification}/ledger', handler: 'service-accounts' },
  { method: 'POST', path: '/accounts/{accountId}/service-accounts/{classification}/recharge', handler: 'service-accounts' },
  { method: 'POST', path: '/sessions', handler: 'reserve' },
  { method: 'POST', path: '/sessions/{sessionId}/update', handler: 'update' },
  { method: 'POST', path: '/sessions/{sessionId}/debit', handler: 'debit' },
  { method: 'POST', path: '/sessions/{sessionId}/refund', handler: 'refund' },
  { method: 'POST', path: '/sessions/{sessionId}/agree', handler: 'agree' },
  { method: 'GET', path: '/sessions/{sessionId}', handler: 'sessions-read' },
  { method: 'GET', path: '/multi-sessions/{multiSessionId}', handler: 'sessions-read' },
  { method: 'POST', path: '/debits', handler: 'direct-debit' },
];

export const schedules: Array<{ name: ScheduledHandlerName; everyMinutes: number }> = [
  { name: 'interim-sweep', everyMinutes: 1 },
  // Every minute: threshold recharges wait at most this long.
  { name: 'recharge-trigger', everyMinutes: 1 },
  // The backstop of the outbox: in AWS the table's stream relays each notification within
  // about a second (infra/stack.ts); this run sends what a failed stream delivery left.
  { name: 'notification-relay', everyMinutes: 1 },
];

/** Source file of a handler, relative to the repository root. */
export const handlerEntry = (name: HandlerName | ScheduledHandlerName) => `functions/handlers/${name}.ts`;
