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
  /**
   * False for an event charge: it takes part (its service is present, a duplicate of it is
   * measured against what it charged) but nothing is given back on it.
   */
  refundable?: boolean;
  /** What an earlier run of the settlement gave back on it (a member joined since). */
  givenBackMinor?: number;
}

export interface Adjustment {
  sessionId: string;
  amountMinor: number;
  reason: 'duplicate' | 'discount';
  percent?: number;
}

/**
 * Adjustments for a finished multi-session. Only members that charged something take part:
 * a session opened and released unused neither earns a discount for another service nor
 * stands in for the traffic a duplicate reported. A duplicate is given back what the service
 * it duplicates charged (that one is charged), never more: the duplicates of a service
 * together get back at most what that service charged and kept, so the traffic is charged
 * once, never zero times. Otherwise the best applicable discount, rounded down so the
 * adjustment never gives back a minor unit that was not earned.
 */
export function combinedAdjustments(members: Member[], rules: ReadonlyMap<string, CombinedRule>): Adjustment[] {
  // Members an earlier run gave back on come first, in their order then, and are given what
  // they were given (a repeat: a give-back under the settlement's requestId never changes), so
  // a member that joined a finished multi-session gets what they left, no more (fails before:
  // a late duplicate whose id sorted first took the whole allowance again, and the traffic was
  // charged zero times; review 11 of stop 27) and no less (fails before the repeat counted as
  // given: an earlier duplicate was counted by what it would get now, not what it got, and a
  // late one got 5 where 10 were left; review 15 of stop 27). Sorting is stable.
  const settledFirst = (m: Member) => ((m.givenBackMinor ?? 0) > 0 ? 0 : 1);
  const charging = members.filter((m) => m.netChargedMinor > 0).sort((a, b) => settledFirst(a) - settledFirst(b));
  const present = new Set(charging.map((m) => m.serviceId));
  /** What each service still charges: what its members charged, less what was given back on them. */
  const kept = new Map<string, number>();
  for (const m of charging) kept.set(m.serviceId, (kept.get(m.serviceId) ?? 0) + m.netChargedMinor);
  /** What duplicates already got back against each duplicated service. */
  const covered = new Map<string, number>();
  const adjustments: Adjustment[] = [];
  for (const member of charging) {
    const rule = rules.get(member.serviceId);
    if (!rule || member.refundable === false) continue;
    const givenMinor = member.givenBackMinor ?? 0;
    if (rule.duplicates && rule.duplicates !== member.serviceId && present.has(rule.duplicates)) {
      const target = rule.duplicates;
      const amountMinor = givenMinor > 0 ? givenMinor : Math.min(member.netChargedMinor, (kept.get(target) ?? 0) - (covered.get(target) ?? 0));
      if (amountMinor > 0) {
        adjustments.push({ sessionId: member.sessionId, amountMinor, reason: 'duplicate' });
        covered.set(target, (covered.get(target) ?? 0) + amountMinor);
        kept.set(member.serviceId, kept.get(member.serviceId)! - amountMinor);
      }
      continue;
    }
    const percent = Math.max(0, ...(rule.discounts ?? []).filter((d) => present.has(d.withServiceId) && d.withServiceId !== member.serviceId).map((d) => d.percent));
    const amountMinor = givenMinor > 0 ? givenMinor : Math.floor((member.netChargedMinor * percent) / 100);
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
