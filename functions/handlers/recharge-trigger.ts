// The recharge trigger, on an EventBridge schedule (every minute): runs the threshold
// recharges that charges asked for and the scheduled ones that are due, in priority order
// per main account, then relays pending account notifications to the event bus.
import type { ScheduledEvent } from 'aws-lambda';
import { notifier, store } from '../config.js';
import { runDueRecharges } from '../store/serviceAccounts.js';
import { relayNotifications } from '../store/notifications.js';
import { logger } from '../http/logger.js';

export async function handler(_event?: Partial<ScheduledEvent>) {
  const s = store();
  const recharges = await runDueRecharges(s);
  const notificationsRelayed = await relayNotifications(s, notifier());
  const summary = { ...recharges, notificationsRelayed };
  logger.info('recharge trigger', summary);
  return summary;
}
