// The recharge trigger, on an EventBridge schedule: scheduled and threshold recharges of
// service accounts. Service accounts are not built yet (see the README): it reports no work.
import type { ScheduledEvent } from 'aws-lambda';
import { logger } from '../http/handler.js';

export async function handler(_event?: Partial<ScheduledEvent>) {
  const summary = { recharged: 0, failed: 0, examined: 0 };
  logger.info('recharge trigger', summary);
  return summary;
}
