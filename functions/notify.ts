// Where the system tells the outside world something: interim-update requests to clients,
// session expiries, and later account notifications. In AWS an EventBridge bus (rules can
// attach SMS, e-mail, webhooks); locally an in-memory event log the local server shows at
// GET /local/events, plus a POST to the session's notifyUri when it gave one.
import { EventBridgeClient, PutEventsCommand } from '@aws-sdk/client-eventbridge';
import { userAgentOf } from './sdk-clients.js';

export interface Notification {
  type: 'interim_update_requested' | 'session_expired' | 'multi_session_settled'
    // Account notifications (seed 004), relayed from the table's outbox.
    | 'low_balance' | 'recharge_done' | 'recharge_failed' | 'service_denied' | 'sponsor_transfer';
  at: string;
  sessionId?: string;
  multiSessionId?: string;
  accountId?: string;
  clientId?: string;
  notifyUri?: string;
  [detail: string]: unknown;
}

export interface Notifier {
  publish(notifications: Notification[]): Promise<void>;
}

export function eventBridgeNotifier(busName: string, client = new EventBridgeClient({ defaultUserAgentProvider: userAgentOf('EventBridge') })): Notifier {
  return {
    publish: async (notifications) => {
      // PutEvents takes at most 10 entries per call.
      for (let i = 0; i < notifications.length; i += 10) {
        const batch = notifications.slice(i, i + 10);
        const result = await client.send(new PutEventsCommand({
          Entries: batch.map((n) => ({ EventBusName: busName, Source: 'charging', DetailType: n.type, Detail: JSON.stringify(n), Time: new Date(n.at) })),
        }));
        if (result.FailedEntryCount) throw new Error(`EventBridge refused ${result.FailedEntryCount} of ${batch.length} events`);
      }
    },
  };
}

const LOG_LIMIT = 1000;
export const localEventLog: Notification[] = [];

export function localNotifier(post: typeof fetch = fetch): Notifier {
  return {
    publish: async (notifications) => {
      localEventLog.push(...notifications);
      localEventLog.splice(0, Math.max(0, localEventLog.length - LOG_LIMIT));
      await Promise.all(notifications.filter((n) => n.notifyUri).map((n) =>
        post(n.notifyUri!, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(n), signal: AbortSignal.timeout(2000) })
          .catch(() => undefined))); // a client that does not answer still has its interval and validity
    },
  };
}
