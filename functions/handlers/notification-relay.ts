// The notification relay: the one function that publishes to the event bus. What the system
// has to tell (an interim-update request, an expiry, a low balance, a recharge) is written to
// the table's outbox by the transaction that decides it (store/notifications.ts); this sends it on.
//   - From the table's stream (AWS): invoked with the new outbox entries, about a second after
//     the writes that made them (the event source's filter passes nothing else).
//   - On a schedule, every minute: the outbox itself, a backstop for stream deliveries that
//     failed. Entries younger than RELAY_BACKSTOP_AFTER_SECONDS are left to the stream, so the
//     two seldom send one twice (publishing is at least once either way).
// Locally there is no stream: the local runtime runs the backstop after every scheduled run
// and every second (infra/local/runtime.ts).
import type { DynamoDBStreamEvent, ScheduledEvent } from 'aws-lambda';
import { notifier, store } from '../config.js';
import { relayNotifications, relayStreamRecords } from '../store/notifications.js';
import { logger } from '../http/logger.js';

export async function handler(event?: Partial<DynamoDBStreamEvent> & Partial<ScheduledEvent>) {
  const from = event?.Records ? 'stream' : 'outbox';
  const notificationsRelayed = event?.Records
    ? await relayStreamRecords(store(), notifier(), event.Records)
    : await relayNotifications(store(), notifier(), { graceSeconds: Number(process.env.RELAY_BACKSTOP_AFTER_SECONDS ?? 0) });
  if (notificationsRelayed > 0 || from === 'outbox') logger.info('notification relay', { from, notificationsRelayed });
  return { notificationsRelayed };
}
