// Multi-sessions (seed 001): every accounting client of one call opens its own session (or
// sends an event) under one multi-session id. Members are listed under `MS#<id>`; the
// multi-session is collated on read and, once no member is open any more, settled once
// under the combined rating of the services that took part together.
import { QueryCommand, TransactWriteCommand } from '@aws-sdk/lib-dynamodb';
import { withConflictRetry, type Store } from './db.js';
import { key, systemRequestId } from './table.js';
import { getAccountItem } from './accounts.js';
import { getService } from './services.js';
import { isServiceAccountId, publicAccountId } from './serviceAccounts.js';
import { getSessionItem, giveBackAdjustment, settlementBasis, sessionView, type SessionItem } from './sessions.js';
import { fail, ChargingError } from '../domain/errors.js';
import { combinedAdjustments, type CombinedRule } from '../domain/combined.js';

/** `accountId`: the account charged; `askedBy`: the account that asked, when another's service account paid. */
interface EventMember { requestId: string; serviceId: string; accountId: string; askedBy?: string; clientId: string; charged: { units: number; amount: number }; at: string }

async function members(store: Store, multiSessionId: string) {
  // Every page: a query stops at 1 MB, and events sort before sessions, so a call with a
  // few thousand events lost its sessions from the first page (fails before: the collation
  // showed none and `final` while one was open, and its close settled without its discount;
  // review 17 of stop 28).
  const items: Array<Record<string, any>> = [];
  let startKey: Record<string, unknown> | undefined;
  do {
    const page = await store.db.send(new QueryCommand({
      TableName: store.tableName,
      KeyConditionExpression: 'pk = :pk',
      ExpressionAttributeValues: { ':pk': `MS#${multiSessionId}` },
      ConsistentRead: true,
      ExclusiveStartKey: startKey,
    }));
    items.push(...(page.Items ?? []));
    startKey = page.LastEvaluatedKey;
  } while (startKey);
  const sessionIds = items.filter((m) => String(m.sk).startsWith('SES#')).map((m) => m.sessionId as string);
  const events = items.filter((m) => String(m.sk).startsWith('EVT#')).map(({ pk: _p, sk: _s, ...e }) => e as EventMember);
  const sessions = (await Promise.all(sessionIds.map((id) => getSessionItem(store, id)))).filter((s): s is SessionItem => !!s);
  return { sessions, events };
}

/**
 * A session opened without a multiSessionId is a multi-session of one, under its own id
 * (the answer's `multiSessionId`), listed nowhere: the charging path writes no member item
 * for it. Another client may join it by that id (seed 001: the id is handed to every network
 * entity of the call); the first to join lists the founding session as a member and marks it
 * (`membersJoined`), so GET collates it and its close settles the combined rating as any
 * member's does. Before stop 23 a joiner took its place: the founder's charges left the
 * collation and its discount was never given. One read before a join (founderToAdopt), only
 * for a multiSessionId shaped like a session id, and one write once the first join is
 * answered (adoptFounder): a join refused writes nothing. A multi-party game takes no members.
 */
export async function founderToAdopt(store: Store, multiSessionId: string, joinerSessionId?: string): Promise<SessionItem | null> {
  if (multiSessionId === joinerSessionId || !multiSessionId.startsWith('ses_')) return null;
  const founder = await getSessionItem(store, multiSessionId);
  // A refused founder is listed too (it holds nothing): a join does not change what the id names.
  if (!founder || founder.multiSessionId !== founder.sessionId || founder.membersJoined) return null;
  if (founder.parties) fail('conflict', `session ${multiSessionId} is a multi-party session, which cannot be part of a multi-session`);
  return founder;
}

export async function adoptFounder(store: Store, founder: SessionItem): Promise<void> {
  await withConflictRetry(() => store.db.send(new TransactWriteCommand({
    TransactItems: [
      { Put: { TableName: store.tableName, Item: { ...key.multiSessionMember(founder.sessionId, founder.sessionId), sessionId: founder.sessionId, at: founder.createdAt } } },
      { Update: {
        TableName: store.tableName, Key: key.session(founder.sessionId),
        UpdateExpression: 'SET membersJoined = :joined', ConditionExpression: 'attribute_exists(pk)',
        ExpressionAttributeValues: { ':joined': true },
      } },
    ],
  })));
}

export async function multiSessionView(store: Store, multiSessionId: string) {
  const { sessions, events } = await members(store, multiSessionId);
  if (sessions.length === 0 && events.length === 0) {
    // A session opened without a multiSessionId is a multi-session of one; a session that
    // is a member of another multi-session is not one.
    const solo = await getSessionItem(store, multiSessionId);
    if (!solo || solo.multiSessionId !== multiSessionId) fail('not_found', `multi-session ${multiSessionId} does not exist`);
    sessions.push(solo!);
  }
  // Money and the units of service accounts (seed 004) are collated apart: never summed
  // together; nor is money of accounts in different currencies (members may charge several
  // accounts). The charged accounts' currencies are read here, on the read path only.
  const moneyAccounts = [...new Set([...sessions.map((s) => s.chargedAccountId), ...events.map((e) => e.accountId)])].filter((id) => !isServiceAccountId(id));
  // One GetItem per account (usually one): the function's role may read items, not batch them.
  const currencyOf = new Map(await Promise.all(moneyAccounts.map(async (id) => [id, (await getAccountItem(store, id))?.currency ?? 'unknown'] as const)));
  // No prototype: a classification may be named like one of Object's methods (toString).
  const money: Record<string, number> = Object.create(null);
  const units: Record<string, number> = Object.create(null);
  const add = (chargedAccountId: string, amount: number) => {
    if (!isServiceAccountId(chargedAccountId)) {
      const currency = currencyOf.get(chargedAccountId)!;
      money[currency] = (money[currency] ?? 0) + amount;
      return;
    }
    const classification = chargedAccountId.slice(chargedAccountId.indexOf('~') + 1);
    units[classification] = (units[classification] ?? 0) + amount;
  };
  // In the order they came (the first decides the currency of `amount`), not in key order.
  const charges = [
    ...sessions.map((s) => ({ at: s.createdAt, accountId: s.chargedAccountId, amount: s.hold.chargedMinor - s.refundedMinor })),
    ...events.map((e) => ({ at: e.at, accountId: e.accountId, amount: e.charged.amount })),
  ].sort((a, b) => (a.at < b.at ? -1 : a.at > b.at ? 1 : 0));
  for (const c of charges) add(c.accountId, c.amount);
  // `amount` is in the currency of the first member charging money; any other currency is
  // listed apart (a multi-session normally charges one subscriber, so this is the rare case).
  const [first, ...others] = Object.keys(money);
  return {
    multiSessionId,
    state: sessions.some((s) => s.state === 'active' || s.state === 'pending_agreement') ? 'open' : 'final',
    sessions: sessions.map(sessionView),
    // `accountId` is the account that asked, as a session's (a member's event paid by its main account's service account names the member).
    events: events.map(({ askedBy, ...e }) => ({ ...e, accountId: askedBy ?? publicAccountId(e.accountId), ...(isServiceAccountId(e.accountId) ? { serviceAccount: e.serviceId } : {}) })),
    charged: {
      amount: first === undefined ? 0 : money[first]!,
      ...(first === undefined ? {} : { currency: first }),
      ...(others.length ? { otherCurrencies: Object.fromEntries(others.map((c) => [c, money[c]!])) } : {}),
      ...(Object.keys(units).length ? { serviceAccountUnits: units } : {}),
    },
  };
}

/**
 * Gives back what the combined rating takes off, once all members are final. Each
 * adjustment is a refund under a requestId derived from the multi-session, so two
 * settlements racing (two members closing together) give it back once. It is computed on
 * what each member charged less the refunds that were not the settlement's own
 * (`settledMinor`), so running it again computes the same adjustments: each is then a repeat,
 * and a member that got nothing is not given what another already got. `settled` is false
 * when an adjustment could not be given now: a refund of the member landed since this run
 * read it, so less is left than the adjustment; the closed session's entry on its account
 * then stays, and the sweep's visit runs the settlement again on what is charged by then.
 * Members charged in a service account's units take no part: units and money are never
 * compared (a voice call with data from a bundle earns no discount).
 */
export async function settleMultiSession(store: Store, multiSessionId: string): Promise<{ settled: boolean }> {
  const { sessions, events } = await members(store, multiSessionId);
  const open = sessions.filter((s) => s.state === 'active' || s.state === 'pending_agreement');
  // The last member to close settles. But a founder (a session joined by its own id) may have
  // read itself before the first join and close without knowing it has members: then nobody
  // would settle. While a founder is open, a closing member's entry stays owed (`settled`
  // false), so the sweep's visit settles again once the founder closed (review, stop 23).
  if (open.length) return { settled: !open.some((s) => s.sessionId === multiSessionId) };
  const inMoney = sessions.filter((s) => !isServiceAccountId(s.chargedAccountId));
  const eventsInMoney = events.filter((e) => !isServiceAccountId(e.accountId));
  const serviceIds = new Set([...inMoney.map((s) => s.serviceId), ...eventsInMoney.map((e) => e.serviceId)]);
  const rules = new Map<string, CombinedRule>();
  for (const serviceId of serviceIds) {
    // A service nobody can read any more has no combined rule; a read that failed is not
    // "no rule" (the settlement would be skipped for good).
    const service = await getService(store, serviceId).catch((error) => { if (error instanceof ChargingError && error.code === 'not_found') return null; throw error; });
    if (service?.combined) rules.set(serviceId, service.combined);
  }
  if (rules.size === 0) return { settled: true };
  const basisOf = new Map(inMoney.map((s) => [s.sessionId, settlementBasis(s)]));
  // The rating combines what one account was charged: anyone may name a multi-session id,
  // and a discount or a duplicate's give-back earned on another account's charges would be
  // money for knowing an id (review, stop 23).
  const chargedAccounts = new Set([...inMoney.map((s) => s.chargedAccountId), ...eventsInMoney.map((e) => e.accountId)]);
  const adjustments = [...chargedAccounts].flatMap((accountId) => combinedAdjustments([
    ...inMoney.filter((s) => s.chargedAccountId === accountId).map((s) => ({ sessionId: s.sessionId, serviceId: s.serviceId, netChargedMinor: basisOf.get(s.sessionId)!, givenBackMinor: s.settledMinor ?? 0 })),
    // An event takes part by what it charged, but has no session to give anything back on.
    ...eventsInMoney.filter((e) => e.accountId === accountId).map((e) => ({ sessionId: `event:${e.requestId}`, serviceId: e.serviceId, netChargedMinor: e.charged.amount, refundable: false })),
  ], rules));
  let settled = true;
  const requestId = systemRequestId(`settle:${multiSessionId}`);
  for (const adjustment of adjustments) {
    try {
      await giveBackAdjustment(store, adjustment.sessionId, { requestId, amount: adjustment.amountMinor, basisMinor: basisOf.get(adjustment.sessionId)!, reason: adjustment.reason === 'duplicate' ? 'charged by the service it duplicates' : `combined rating: ${adjustment.percent} % off` },
        `settle:${adjustment.amountMinor}`);
    } catch (error) {
      if (!(error instanceof ChargingError) || error.code === 'temporarily_unavailable') throw error;
      // Given before under another amount: a refund of the member landed after that
      // settlement, which it does not undo. Anything else (less left than the adjustment):
      // owed, the next run decides on what the member charges by then.
      if (error.code !== 'idempotency_conflict') settled = false;
    }
  }
  return { settled };
}
