// The interim sweep, on an EventBridge schedule: expires sessions whose grant outlived its
// validUntil and hands their reservations back. Finds its work through the sparse due index.
import type { ScheduledEvent } from 'aws-lambda';
import { store } from '../config.js';
import { sweep } from '../store/sweep.js';
import { logger } from '../http/handler.js';

export async function handler(_event?: Partial<ScheduledEvent>) {
  const summary = await sweep(store(), { batchSize: Number(process.env.SWEEP_BATCH_SIZE ?? 100), maxBatches: 50 });
  logger.info('interim sweep', { ...summary });
  return summary;
}
