// The interim sweep, on an EventBridge schedule: expires sessions whose grant outlived its
// validUntil (their reservations go back) and asks clients whose interval is up for an
// interim report. Finds its work through the sparse due index.
import type { Context, ScheduledEvent } from 'aws-lambda';
import { Metrics, MetricUnit } from '@aws-lambda-powertools/metrics';
import { store } from '../config.js';
import { sweep, type SweepSummary } from '../store/sweep.js';
import { logger } from '../http/logger.js';

const metrics = new Metrics({ namespace: process.env.POWERTOOLS_METRICS_NAMESPACE ?? 'Charging', serviceName: 'interim-sweep' });

export async function handler(_event?: Partial<ScheduledEvent>, context?: Pick<Context, 'getRemainingTimeInMillis'>) {
  let summary: SweepSummary;
  try {
    summary = await sweep(store(), {
      batchSize: Number(process.env.SWEEP_BATCH_SIZE ?? 100),
      maxBatches: Number(process.env.SWEEP_MAX_BATCHES ?? 50),
      ...(context ? { timeLeft: () => context.getRemainingTimeInMillis() } : {}),
    });
  } catch (error) {
    // A run that failed on some items still did the others and knows what is left: the
    // backlog metric goes out all the same (the alarm must not go quiet when runs fail).
    const partial = (error as { summary?: SweepSummary }).summary;
    if (partial) publish(partial);
    throw error;
  }
  logger.info('interim sweep', { ...summary });
  publish(summary);
  return summary;
}

function publish(summary: SweepSummary): void {
  // Metrics go out as CloudWatch embedded metric format in Lambda; locally they would only be noise.
  if (!process.env.AWS_LAMBDA_FUNCTION_NAME) return;
  metrics.addMetric('SweepExpired', MetricUnit.Count, summary.expired);
  metrics.addMetric('SweepBacklog', MetricUnit.Count, summary.backlog);
  metrics.publishStoredMetrics();
}
