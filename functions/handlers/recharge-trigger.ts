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
  // The relay runs after the recharges (it sends their notifications in the same run) and
  // also when they fail: a recharge that keeps failing must not hold up the notifications (a
  // session_expired whose first publish failed waits for this relay).
  const recharges = await runDueRecharges(s).then((value) => ({ value }), (error: unknown) => ({ error }));
  const notificationsRelayed = await relayNotifications(s, notifier());
  if ('error' in recharges) throw recharges.error;
  const summary = { ...recharges.value, notificationsRelayed };
  logger.info('recharge trigger', summary);
  return summary;
}
