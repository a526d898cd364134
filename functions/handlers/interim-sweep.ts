// The interim sweep, on an EventBridge schedule: expires sessions whose grant outlived its
// validUntil (their reservations go back) and asks clients whose interval is up for an
// interim report. Finds its work through the sparse due index.
import type { ScheduledEvent } from 'aws-lambda';
import { Metrics, MetricUnit } from '@aws-lambda-powertools/metrics';
import { notifier, store } from '../config.js';
import { sweep } from '../store/sweep.js';
import { logger } from '../http/logger.js';

const metrics = new Metrics({ namespace: process.env.POWERTOOLS_METRICS_NAMESPACE ?? 'Charging', serviceName: 'interim-sweep' });

export async function handler(_event?: Partial<ScheduledEvent>) {
  const summary = await sweep(store(), {
    batchSize: Number(process.env.SWEEP_BATCH_SIZE ?? 100),
    maxBatches: Number(process.env.SWEEP_MAX_BATCHES ?? 50),
    notifier: notifier(),
  });
  logger.info('interim sweep', { ...summary });
  if (process.env.EVENT_BUS_NAME) {
    // Metrics go out as CloudWatch embedded metric format in AWS; locally they would only be noise.
    metrics.addMetric('SweepExpired', MetricUnit.Count, summary.expired);
    metrics.addMetric('SweepBacklog', MetricUnit.Count, summary.backlog);
    metrics.publishStoredMetrics();
  }
  return summary;
}
