// The recharge trigger, on an EventBridge schedule (every minute): runs the threshold
// recharges that charges asked for and the scheduled ones that are due, in priority order
// per main account. Their notifications go out through the outbox (notification-relay).
import type { ScheduledEvent } from 'aws-lambda';
import { store } from '../config.js';
import { runDueRecharges } from '../store/serviceAccounts.js';
import { logger } from '../http/logger.js';

export async function handler(_event?: Partial<ScheduledEvent>) {
  const summary = await runDueRecharges(store());
  logger.info('recharge trigger', { ...summary });
  return summary;
}
