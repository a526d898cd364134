// Small statistics over the samples of one operation type.

export interface Sample {
  /** Latency of the operation, in milliseconds. */
  ms: number;
  /** DynamoDB calls the operation made (retries included). */
  calls: number;
  /** The same calls by command name (Get, Update, TransactWrite, …). */
  byCommand: Record<string, number>;
}

/** Nearest-rank percentile of an ascending array. */
export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1]!;
}

export function summarize(samples: Sample[]) {
  const latencies = samples.map((s) => s.ms).sort((a, b) => a - b);
  const calls = samples.map((s) => s.calls).sort((a, b) => a - b);
  return {
    count: samples.length,
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
    callsMedian: percentile(calls, 50),
    callsMean: calls.length ? calls.reduce((a, b) => a + b, 0) / calls.length : NaN,
  };
}
