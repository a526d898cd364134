// Combined rating of a multi-session (seed 001): the final rating of a call can depend on
// which services took part together. Applied once every member's charges are final, as
// adjustments given back to the sessions that earned them.

export interface CombinedRule {
  /** Discounts this service earns when another service is in the same multi-session. */
  discounts?: Array<{ withServiceId: string; percent: number }>;
  /** This service reports the same traffic as that one (PS and IMS domains): charge it once. */
  duplicates?: string;
}

export interface Member {
  sessionId: string;
  serviceId: string;
  /** What the member charged, net of what was already given back. */
  netChargedMinor: number;
}

export interface Adjustment {
  sessionId: string;
  amountMinor: number;
  reason: 'duplicate' | 'discount';
  percent?: number;
}

/**
 * Adjustments for a finished multi-session. A duplicate is given back whole (the service it
 * duplicates is the one charged); otherwise the best applicable discount, rounded down so
 * the adjustment never gives back a minor unit that was not earned.
 */
export function combinedAdjustments(members: Member[], rules: ReadonlyMap<string, CombinedRule>): Adjustment[] {
  const present = new Set(members.map((m) => m.serviceId));
  const adjustments: Adjustment[] = [];
  for (const member of members) {
    const rule = rules.get(member.serviceId);
    if (!rule || member.netChargedMinor <= 0) continue;
    if (rule.duplicates && rule.duplicates !== member.serviceId && present.has(rule.duplicates)) {
      adjustments.push({ sessionId: member.sessionId, amountMinor: member.netChargedMinor, reason: 'duplicate' });
      continue;
    }
    const percent = Math.max(0, ...(rule.discounts ?? []).filter((d) => present.has(d.withServiceId) && d.withServiceId !== member.serviceId).map((d) => d.percent));
    const amountMinor = Math.floor((member.netChargedMinor * percent) / 100);
    if (amountMinor > 0) adjustments.push({ sessionId: member.sessionId, amountMinor, reason: 'discount', percent });
  }
  return adjustments;
}

/** The interim interval the server dictates: shorter while a session is new, longer once it reports. */
export function interimIntervalFor(service: { interimIntervalSeconds: number; establishedInterimIntervalSeconds?: number }, hasReported: boolean): number {
  return hasReported && service.establishedInterimIntervalSeconds ? service.establishedInterimIntervalSeconds : service.interimIntervalSeconds;
}

/** When the sweep next needs to look at a session: its next report, or its expiry if sooner. */
export function nextDueAt(lastUpdateAt: string, intervalSeconds: number, validUntil: string): string {
  const report = new Date(Date.parse(lastUpdateAt) + intervalSeconds * 1000).toISOString();
  return report < validUntil ? report : validUntil;
}
