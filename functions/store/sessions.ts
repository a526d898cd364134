// Charging sessions (RFC 8506 CCR-Initial / Update / Termination) on the table.
//
// A step is one read of the session item (with the request's answer item), then the account
// write that moves the money and records the step in `ops.<sessionId>`, with the step's
// record (session item, ledger entries, answer item): in one transaction while the account
// is quiet (one write), or, on a hot account, as a single-item conditional UpdateItem
// followed by a transaction over cold items only (two writes; see ops.ts). On the two-write
// path the account write is the commit point: a step whose account write landed is finished
// by any retry from what the account recorded, so a handler dying between the two writes
// loses nothing and a retry never charges twice.
import { createHash } from 'node:crypto';
import { GetCommand, PutCommand, QueryCommand, TransactGetCommand, TransactWriteCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { DUE_INDEX, DUE_SHARDS, dueShardOf, key, systemRequestId } from './table.js';
import { conditionFailedAt, isConditionFailure, lazyRead, withConflictRetry, type Store } from './db.js';
import { giveBackPastLimitOf, logGiveBackFailure } from './allotments.js';
import { applyOp, applyOpWithRecord, knownMainAccount, newNonce, oneWriteAllowed, plainItem, refusalOf, tooManyOps, type OpCondition } from './ops.js';
import { ledgerPut, stepEntry } from './ledger.js';
import { markFinalized, ORPHAN_GRACE_MS, REVISIT_MAX_MS } from './compaction.js';
import { getService, serviceFor, type Service } from './services.js';
import { isServiceAccountId, mainAccountRoute, otherUnitDetail, publicAccountId, type ServiceAccountItem, type ServiceAccountRef } from './serviceAccounts.js';
import { finalUnitActionOf } from '../domain/serviceAccount.js';
import { expirePartySession, partyStep, refundPartySession, type PartyState } from './parties.js';
import { adoptFounder, founderToAdopt, settleMultiSession } from './multisession.js';
import { coverableMinor } from './cover.js';
import { getAccountItem, keptRatingRefusal, usableAt, type OpEntry, type StoredAnswer } from './accounts.js';
import { ChargingError, fail, keptSessionRefusalStatus, keptRefundRefusalStatus, keptRefusal, reusedRequestId } from '../domain/errors.js';
import { computeGrant, inServiceUnits, optimisticGrant, type Requested } from '../domain/reservation.js';
import { isOpen, movementFor, releaseClosed, sessionClosed, shownState, rateUsage, chargeNothing, regrant, refundable, type Hold, type SessionState, type Movement, type Usage } from '../domain/session.js';
import type { Outcome, Principle } from '../domain/parties.js';
import { MAX_BALANCE_MINOR, MONEY_PRICE, priceOrNull, type Price, type Unit } from '../domain/rating.js';
import { interimIntervalFor, nextDueAt } from '../domain/combined.js';
import { notificationItem, type AccountNotification } from './notifications.js';

export interface ReserveCommand {
  requestId: string;
  accountId: string;
  clientId: string;
  serviceId: string;
  requested: Requested;
  multiSessionId?: string;
  notifyUri?: string;
}

export interface StepCommand {
  requestId: string;
  usedUnits: number;
  requested?: Requested;
  /** Multi-party sessions: what decides who pays (e.g. the loser). */
  outcome?: Outcome;
}

export interface SessionItem {
  sessionId: string;
  state: SessionState;
  accountId: string;
  /** The account item the session's money moves on (a service account's, for a routed session). */
  chargedAccountId: string;
  /** An attached account's session: its main account, which answers name as charged (API.md). */
  payerAccountId?: string;
  clientId: string;
  serviceId: string;
  unit: Unit;
  price: Price;
  /** Sessions on a service account: what the client is told when its units run out (its onEmpty). */
  finalUnit?: FinalUnit;
  multiSessionId: string;
  validitySeconds: number;
  /** The interval dictated now (per phase: see interimIntervalFor). */
  interimIntervalSeconds: number;
  establishedInterimIntervalSeconds?: number;
  /** The seq for which the sweep already asked the client for an interim report. */
  reportRequestedSeq?: number;
  notifyUri?: string;
  seq: number;
  hold: Hold;
  validUntil: string;
  createdAt: string;
  lastUpdateAt: string;
  refundedMinor: number;
  /** Of refundedMinor, what a multi-session's settlement gave back (its combined rating). */
  settledMinor?: number;
  returnedMinor: number;
  /**
   * Answers for replays: body hash and answer, keyed by answerKey(requestId), never by the
   * bare requestId (a requestId may be `__proto__` or `constructor`, which must not meet
   * Object.prototype). The item keeps only the answer of the request that opened the session;
   * every later request's answer is an item of its own in the session's partition
   * (key.sessionAnswer), so the session item does not grow with every update (a session
   * reporting every minute for days would pass DynamoDB's 400 KB item limit, and every step
   * writes the whole item). A read for a request (getSessionItem with its requestId) fetches
   * that request's answer item with the session, in one transactional read, and shows it here.
   */
  answers: Record<string, { h: string; answer: StoredAnswer }>;
  /** The nonce of the hold that opened the session (reserve): a hold under its id with another nonce is not its own. */
  nonce?: string;
  /** Multi-party sessions only (seed 000): the parties, the principle, what was asked for. */
  parties?: PartyState[];
  /** A session opened without a multiSessionId that others joined since (multisession.ts, adoptFounder). */
  membersJoined?: boolean;
  principle?: Principle;
  requested?: Requested;
}

/** The key of a request's answer in a session's `answers` map. */
export const answerKey = (requestId: string) => `r:${requestId}`;

/** The answer a session recorded for `requestId`, if any (own properties only). */
export function answerIn(session: SessionItem, requestId: string): { h: string; answer: StoredAnswer } | undefined {
  const answers = session.answers ?? {};
  const k = answerKey(requestId);
  return Object.hasOwn(answers, k) ? answers[k] : undefined;
}

/** Session ids come from the reserve's requestId, so a retried reserve finds its own session. */
export function sessionIdFor(requestId: string): string {
  return `ses_${createHash('sha256').update(requestId).digest('base64url').slice(0, 24)}`;
}

const MAX_ATTEMPTS = 8;

type FinalUnit = ReturnType<typeof finalUnitActionOf>;
/** The RFC 8506 Final-Unit-Action fields of a 402 problem. */
const finalUnitExtras = (finalUnit: FinalUnit = { action: 'terminate' }) =>
  ({ finalUnitAction: finalUnit.action, ...(finalUnit.redirectUrl ? { redirectUrl: finalUnit.redirectUrl } : {}) });
const addSeconds = (at: Date, seconds: number) => new Date(at.getTime() + seconds * 1000).toISOString();

function holdOf(entry: OpEntry): Hold {
  return { seq: entry.seq, holdMinor: entry.amt, grantedUnits: entry.gu, usedUnits: entry.u, chargedMinor: entry.chg };
}

export function sessionView(session: SessionItem) {
  return {
    sessionId: session.sessionId,
    multiSessionId: session.multiSessionId,
    ...shownState(session.state),
    accountId: session.accountId,
    chargedAccountId: session.payerAccountId ?? publicAccountId(session.chargedAccountId),
    ...(isServiceAccountId(session.chargedAccountId) ? { serviceAccount: session.serviceId } : {}),
    clientId: session.clientId,
    serviceId: session.serviceId,
    unit: session.unit,
    // A game's holds add up to more than its grant is worth (loser-pays holds the whole price
    // from every party): its grant shows its price, the holds each party's `reserved` (fails
    // before: the sum of the holds, 200 for 100 units at 1; review 6 of stop 26).
    granted: { units: session.hold.grantedUnits, amount: session.parties ? (priceOrNull(session.hold.grantedUnits, session.price) ?? session.hold.holdMinor) : session.hold.holdMinor },
    charged: { units: session.hold.usedUnits, amount: session.hold.chargedMinor },
    refunded: { amount: session.refundedMinor },
    validUntil: session.validUntil,
    interimIntervalSeconds: session.interimIntervalSeconds,
    createdAt: session.createdAt,
    lastUpdateAt: session.lastUpdateAt,
    ...(session.parties ? {
      principle: session.principle,
      parties: session.parties.map((p) => ({
        accountId: p.accountId, agreed: !!p.agreedAt, ...(p.agreedAt ? { agreedAt: p.agreedAt } : {}),
        reserved: { amount: p.holdMinor }, charged: { amount: p.chargedMinor },
        ...(p.refundedMinor ? { refunded: { amount: p.refundedMinor } } : {}),
      })),
    } : {}),
  };
}

/**
 * The session, strongly consistent. With `requestId`: also that request's answer, if one was
 * kept, in one TransactGetItems. Not a BatchGetItem: a batch reads each item on its own, so it
 * may see the session after a step's transaction and the step's answer item before it, and
 * take a concurrent duplicate of that step for a new request (the simulator found exactly
 * that: seed 7, 20,000 operations). A transactional read sees both or neither.
 */
export async function getSessionItem(store: Store, sessionId: string, requestId?: string): Promise<SessionItem | null> {
  if (requestId === undefined) {
    const result = await store.db.send(new GetCommand({ TableName: store.tableName, Key: key.session(sessionId), ConsistentRead: true }));
    return (result.Item as SessionItem | undefined) ?? null;
  }
  const result = await withConflictRetry(() => store.db.send(new TransactGetCommand({
    TransactItems: [
      { Get: { TableName: store.tableName, Key: key.session(sessionId) } },
      { Get: { TableName: store.tableName, Key: key.sessionAnswer(sessionId, requestId) } },
    ],
  })));
  const session = result.Responses?.[0]?.Item as SessionItem | undefined;
  if (!session) return null;
  const kept = result.Responses?.[1]?.Item;
  if (kept) session.answers = { ...session.answers, [answerKey(requestId)]: { h: kept.h, answer: kept.answer } };
  return session;
}

export async function requireSession(store: Store, sessionId: string, requestId?: string): Promise<SessionItem> {
  return (await getSessionItem(store, sessionId, requestId)) ?? fail('not_found', `session ${sessionId} does not exist`);
}

/**
 * `session`, read without its answers, with the answer kept for `requestId` added: read after
 * the session, so it is as good as one transactional read of both. Answers are never deleted:
 * one absent now was absent when the session was read (the other order would not do: a step
 * landing between the two reads would look new).
 */
async function withKeptAnswer(store: Store, session: SessionItem, requestId: string): Promise<SessionItem> {
  const result = await store.db.send(new GetCommand({ TableName: store.tableName, Key: key.sessionAnswer(session.sessionId, requestId), ConsistentRead: true }));
  const kept = result.Item;
  return kept ? { ...session, answers: { ...session.answers, [answerKey(requestId)]: { h: kept.h, answer: kept.answer } } } : session;
}

/** The item keeping a request's answer (see SessionItem.answers): Put in the transaction that records the request. */
export function answerPut(store: Store, sessionId: string, requestId: string, bodyHash: string, answer: StoredAnswer, onlyIfNew = false) {
  return { Put: {
    TableName: store.tableName,
    Item: { ...key.sessionAnswer(sessionId, requestId), h: bodyHash, answer },
    ...(onlyIfNew ? { ConditionExpression: 'attribute_not_exists(pk)' } : {}),
  } };
}

export function replayOrConflict(session: SessionItem, requestId: string, bodyHash: string): StoredAnswer | null {
  const previous = answerIn(session, requestId);
  if (!previous) return null;
  if (previous.h !== bodyHash) reusedRequestId(requestId);
  return previous.answer;
}

// ---------------------------------------------------------------- reserve (CCR-Initial)

export async function reserve(store: Store, command: ReserveCommand, bodyHash: string): Promise<StoredAnswer> {
  const service = await serviceFor(store, command.serviceId, async () => {
    const session = await getSessionItem(store, sessionIdFor(command.requestId));
    if (session) replayOrConflict(session, command.requestId, bodyHash);
  });
  try {
    // A game refuses members; a repeat of this request, or a reuse of its id, is answered as such first.
    const founder = command.multiSessionId ? await founderToAdopt(store, command.multiSessionId, sessionIdFor(command.requestId)).catch(async (error) => {
      const earlier = await getSessionItem(store, sessionIdFor(command.requestId));
      if (earlier) return replayOrConflict(earlier, command.requestId, bodyHash) ? null : reusedRequestId(command.requestId);
      throw error;
    }) : null;
    const answer = await reserveOnce(store, command, bodyHash, service);
    if (founder && answer.status === 201) await adoptFounder(store, founder);
    return answer;
  } catch (error) {
    if (!keptRefusal(error)) throw error;
    // The refusal names the session it is kept as, which GET /sessions/{id} shows (state `refused`).
    const refusal = error as ChargingError;
    const named = new ChargingError(refusal.code, refusal.message, { ...refusal.extra, sessionId: sessionIdFor(command.requestId) });
    return keepRefusal(store, command, bodyHash, service, keptRefusal(named)!, named);
  }
}

/**
 * A reserve refused by an account that exists is kept, so a repeat is refused alike even
 * after a top-up: a session item in state `refused`, holding nothing, with the refusal as its
 * opening answer, written only if no session exists under the id. If one does (a concurrent
 * duplicate opened it first), that one's answer is the answer. The one write of a repeat
 * then fails on the session item and replays it, so keeping refusals costs the charging path
 * nothing.
 */
async function keepRefusal(store: Store, command: ReserveCommand, bodyHash: string, service: Service, answer: StoredAnswer, refusal: unknown): Promise<StoredAnswer> {
  const sessionId = sessionIdFor(command.requestId);
  const at = store.now().toISOString();
  const session: SessionItem = {
    sessionId, state: 'refused', accountId: command.accountId, chargedAccountId: command.accountId, clientId: command.clientId,
    serviceId: command.serviceId, unit: service.unit, price: service.price, multiSessionId: command.multiSessionId ?? sessionId, validitySeconds: service.validitySeconds,
    interimIntervalSeconds: service.interimIntervalSeconds, seq: 0, hold: { seq: 0, holdMinor: 0, grantedUnits: 0, usedUnits: 0, chargedMinor: 0 },
    validUntil: at, createdAt: at, lastUpdateAt: at, refundedMinor: 0, returnedMinor: 0,
    answers: { [answerKey(command.requestId)]: { h: bodyHash, answer } },
  };
  try {
    await store.db.send(new PutCommand({ TableName: store.tableName, Item: { ...key.session(sessionId), ...session }, ConditionExpression: 'attribute_not_exists(pk)' }));
  } catch (error) {
    if (!isConditionFailure(error)) throw error;
    const existing = await requireSession(store, sessionId);
    return replayOrConflict(existing, command.requestId, bodyHash) ?? reusedRequestId(command.requestId);
  }
  throw refusal;
}

async function reserveOnce(store: Store, command: ReserveCommand, bodyHash: string, service: Service): Promise<StoredAnswer> {
  const sessionId = sessionIdFor(command.requestId);
  let chargedAccountId = command.accountId;
  /** An attached account's main account, which pays (known to this process, or learnt from the write). */
  let payer = knownMainAccount(store, command.accountId) ?? undefined;
  /** Set once the session is routed to a service account (seed 004), which holds units. */
  let serviceAccount: { classification: string; owner: string; finalUnit: FinalUnit } | undefined;
  let price = service.price;
  /**
   * A refusal against today's rating or routing (a PUT may have changed either since) first
   * looks for a session under this requestId: a repeat is answered as before, another body is
   * idempotency_conflict. Only refusals pay the read. Then it is kept (keptRatingRefusal).
   */
  const refuse = async (code: 'validation_failed' | 'conflict', detail: string): Promise<StoredAnswer> => {
    const existing = await getSessionItem(store, sessionId);
    const replay = existing && replayOrConflict(existing, command.requestId, bodyHash);
    if (replay) return replay;
    const refusal = new ChargingError(code, detail, { sessionId });
    return keepRefusal(store, command, bodyHash, service, await keptRatingRefusal(store, command.accountId, refusal), refusal);
  };
  const firstGrant = optimisticGrant(command.requested, price);
  if (!firstGrant) return refuse('validation_failed', 'requested must be at least one unit');
  let grant = firstGrant;
  /** What is asked, in the charged account's terms: in units once routed to a service account. */
  let requested: Requested = command.requested;
  /**
   * The session draws on `owner`'s service account `id` from now on, in its units (one unit
   * pays for one unit); false when it holds another unit than the service is rated in.
   */
  const routeTo = (id: string, owner: string, ref: ServiceAccountRef): boolean => {
    if (ref.unit !== service.unit) return false;
    chargedAccountId = id;
    serviceAccount = { classification: command.serviceId, owner, finalUnit: { action: 'terminate' } };
    requested = inServiceUnits(command.requested, service.price);
    price = MONEY_PRICE;
    grant = optimisticGrant(requested, price)!;
    return true;
  };
  const otherUnit = (owner: string, ref: ServiceAccountRef) => refuse('conflict', otherUnitDetail(command.serviceId, service.unit, owner, ref));
  let lookedViaMain: string | undefined;
  /**
   * An attached account's session may draw on its main account's service account for the
   * service (mainAccountRoute): looked at once its main account is known to this process, and
   * before any of the member's money moves (OpCondition `mainAccountId` refuses a member's
   * write that did not name its main account). The refusal when that one holds another unit,
   * else null.
   */
  const routeViaMain = async (): Promise<StoredAnswer | null> => {
    if (serviceAccount) return null; // routed already (its own: it names no main account)
    payer ??= knownMainAccount(store, command.accountId) ?? undefined;
    if (!payer || lookedViaMain === payer) return null;
    lookedViaMain = payer;
    const route = await mainAccountRoute(store, command.accountId, payer, command.serviceId);
    return route && !routeTo(route.id, route.owner, route.ref) ? otherUnit(route.owner, route.ref) : null;
  };
  const refusedViaMain = await routeViaMain();
  if (refusedViaMain) return refusedViaMain;
  const holdEntry = (now: Date): OpEntry => ({
    seq: 1, amt: grant.amountMinor, gu: grant.units, u: 0, chg: 0,
    rid: command.requestId, h: bodyHash, n: newNonce(), at: now.toISOString(), vu: addSeconds(now, service.validitySeconds),
  });
  const holdMovement = (): Movement => ({ balanceDelta: 0, reservedDelta: grant.amountMinor, availableDelta: -grant.amountMinor });
  // Should a handler die before the session write and no retry come, the sweep finds the hold
  // through the account's due mark, once its validity (and a grace) is over.
  // The mark is the account's, shared by its open operations and written only when absent
  // (the hot path pays no index write): so it is never set further than a revisit away, or a
  // long grant (validity up to 30 days) would keep the sweep from a short one's orphan as long.
  const orphanDueAt = (hold: OpEntry) => new Date(Math.min(Date.parse(hold.vu!) + ORPHAN_GRACE_MS, Date.parse(hold.at) + REVISIT_MAX_MS)).toISOString();
  const record = (entry: OpEntry, recordedAt: string) => reserveRecord(store, command, bodyHash, service, { sessionId, chargedAccountId, payer, price, requested, serviceAccount, entry, recordedAt });
  /** Whether the one write looked for the session under this requestId (and found none of its own). */
  let recordChecked = false;
  if (oneWriteAllowed(store, chargedAccountId)) {
    // The hold and its session in one transaction (see ops.ts, one-write operations).
    const candidate = holdEntry(store.now());
    const { answer, items } = record(candidate, candidate.at);
    const written = await applyOpWithRecord(store, chargedAccountId, sessionId, { kind: 'new', dueAt: orphanDueAt(candidate), serviceId: command.serviceId, mainAccountId: payer ?? null }, holdMovement(), candidate, items);
    if (written.outcome === 'applied') return answer;
    if (written.outcome === 'record_refused') {
      // The session exists: this requestId opened it (a repeat, answered as before), or
      // another body did. Nothing of this attempt was written.
      const existing = await getSessionItem(store, sessionId);
      if (existing) return replayOrConflict(existing, command.requestId, bodyHash) ?? reusedRequestId(command.requestId);
    }
    // Anything else: the two-write way below decides (a refusal, routing, a shortfall, a
    // conflict, or a timeout after which the transaction may have landed).
    recordChecked = written.outcome === 'fallback' && written.recordChecked;
  }
  let entry!: OpEntry;
  /** A hold of this request that the sweep released (its reserve died before the session write): record it expired. */
  let released: OpEntry | undefined;
  let committed = false;
  // The session under this requestId, read only on a refusal: afresh before anyone is asked
  // to cover it, and the replay below answers from the latest read.
  const earlierSession = lazyRead(() => getSessionItem(store, sessionId));
  const answeredBefore = async () => !!(await earlierSession(true));
  // A repeat of a reserve whose session is over (its hold gone from the account) is answered
  // before anything is written: the two writes would hold its money again until the session
  // write failed, refusing others meanwhile and telling a low balance that never was (fails
  // before; review 1). One read, only where the one write did not look (a hot account, a
  // threshold to watch, service accounts).
  if (!recordChecked) {
    const existing = await earlierSession();
    if (existing) {
      await settleStrayHold(store, existing, command); // also under another body: such a hold is never recorded
      return replayOrConflict(existing, command.requestId, bodyHash) ?? reusedRequestId(command.requestId);
    }
  }
  for (let attempt = 0; attempt < MAX_ATTEMPTS && !committed; attempt++) {
    // A refusal (of the one write, or of the last attempt: `otherMain`) may have told this
    // process the account's main account.
    const refused = await routeViaMain();
    if (refused) return refused;
    const now = store.now();
    const candidate = holdEntry(now);
    const movement = holdMovement();
    const condition: OpCondition = serviceAccount
      ? { kind: 'new', dueAt: orphanDueAt(candidate), answeredBefore }
      : { kind: 'new', dueAt: orphanDueAt(candidate), answeredBefore, serviceId: command.serviceId, mainAccountId: payer ?? null };
    const result = await applyOp(store, chargedAccountId, sessionId, condition, movement, candidate);
    if (serviceAccount && result.account) serviceAccount.finalUnit = finalUnitActionOf(result.account as ServiceAccountItem);
    if (result.ok) { entry = candidate; committed = true; break; }
    if (result.otherMain) {
      // An attached account this process had not seen: the next attempt knows its main
      // account (not a failed attempt).
      payer = result.account!.mainAccountId;
      attempt--;
      continue;
    }
    if (result.route) {
      // The account's own service account for the service; it names that account as charged.
      const ref = result.account!.serviceAccounts![command.serviceId]!;
      if (!routeTo(result.route, command.accountId, ref)) return otherUnit(command.accountId, ref);
      payer = undefined;
      attempt--; // routing is not a failed attempt
      continue;
    }
    const refusal = refusalOf(result.account, sessionId, now);
    if (refusal === 'exists') {
      const recorded = result.account!.ops[sessionId]!;
      // The hold this very request took (an earlier attempt that died, or a concurrent
      // duplicate): finish it. Whether it is the session's own is decided at the session write.
      const own = !recorded.done && recorded.seq === 1 ? recorded : recorded.done === 'expired' ? heldBefore(recorded) : null;
      if (own && own.rid === command.requestId && own.h === bodyHash) {
        entry = own;
        if (own !== recorded) released = recorded;
        committed = true;
        break;
      }
      // A session that moved on (replay), or another body under this requestId (conflict).
      const existing = await getSessionItem(store, sessionId);
      return (existing && replayOrConflict(existing, command.requestId, bodyHash))
        ?? reusedRequestId(command.requestId);
    }
    // Refused. A session under this requestId may exist already (its hold long gone from the
    // account): then this is a retransmission, answered as before whatever the account says
    // now, or another body. Read afresh if it was read before the write (a concurrent
    // duplicate may have opened the session since).
    const existing = await earlierSession(!recordChecked);
    if (existing) return replayOrConflict(existing, command.requestId, bodyHash) ?? reusedRequestId(command.requestId);
    const shown = serviceAccount ? `the ${serviceAccount.classification} account of ${serviceAccount.owner}` : `account ${chargedAccountId}`;
    if (refusal === 'not_found') fail('not_found', `${shown} does not exist`);
    if (refusal === 'account_inactive') fail('account_inactive', `${shown} is suspended or expired`);
    if (result.main === 'inactive') fail('account_inactive', `the main account of ${chargedAccountId} fails authorization`);
    if (result.full) tooManyOps(store, shown);
    // What cover can bring counts as the account's own (coverableMinor: one read each of its
    // payers, only on a refusal, and none for an account no one pays for).
    const account = result.account!;
    const shorter = computeGrant(requested, price, account.available + await coverableMinor(store, account));
    if (!shorter) {
      const why = result.main === 'limit' ? ': its consumption limit is reached' : result.account!.mainAccountId ? ' (nor can its main account)' : '';
      fail('insufficient_credit', `${shown} cannot pay one block of ${command.serviceId}${why}`, finalUnitExtras(serviceAccount?.finalUnit));
    }
    grant = shorter!;
  }
  if (!committed) throw new ChargingError('temporarily_unavailable', `the account ${chargedAccountId} changed too often to reserve; retry with the same requestId`);
  // The ledger is read newest first, by time: entries recorded long after their hold (a hold
  // the sweep released meanwhile) go in at the time they are written, not behind readers.
  const recordedAt = released ? store.now().toISOString() : entry.at;
  const { answer, items } = record(entry, recordedAt);
  let result = answer;
  try {
    await withConflictRetry(() => store.db.send(new TransactWriteCommand({ TransactItems: items as any })));
  } catch (error) {
    // Anything but "the session item exists" (a transient conflict is temporarily_unavailable
    // by now) leaves the hold recorded on the account: a retry finishes it, or the sweep.
    if (!conditionFailedAt(error, 0)) throw error;
    const existing = await requireSession(store, sessionId);
    // The hold is the session's own only if the session was opened by it (same nonce): else it
    // is a second hold, taken by a retransmission after the session's entry left the account
    // (by this attempt or by an earlier one that died), or under another body: it goes back.
    if (existing.nonce !== entry.n) await voidHold(store, chargedAccountId, sessionId, entry);
    const previous = answerIn(existing, command.requestId);
    if (previous?.h !== bodyHash) reusedRequestId(command.requestId);
    result = previous!.answer;
    if (existing.nonce !== entry.n) return result;
  }
  // The sweep gave this hold back before the session existed: record that as its expiry.
  if (released) await rollForwardExpiry(store, await requireSession(store, sessionId), { ...released, at: recordedAt });
  return result;
}

/**
 * What a reserve records once its hold is taken: the answer, and the transaction items of
 * the session (only if new), its ledger entry and its multi-session membership.
 */
function reserveRecord(store: Store, command: ReserveCommand, bodyHash: string, service: Service,
  hold: { sessionId: string; chargedAccountId: string; payer?: string; price: Price; requested: Requested; serviceAccount?: { classification: string; finalUnit: FinalUnit }; entry: OpEntry; recordedAt: string }) {
  const { sessionId, chargedAccountId, payer, price, requested, serviceAccount, entry, recordedAt } = hold;
  const wantedUnits = optimisticGrant(requested, price)!.units;
  const answer: StoredAnswer = {
    status: 201,
    body: {
      sessionId,
      multiSessionId: command.multiSessionId ?? sessionId,
      state: 'active',
      chargedAccountId: payer ?? command.accountId,
      ...(serviceAccount ? { serviceAccount: serviceAccount.classification, unit: service.unit } : {}),
      granted: { units: entry.gu, amount: entry.amt },
      validUntil: entry.vu,
      interimIntervalSeconds: service.interimIntervalSeconds,
      ...(entry.gu < wantedUnits ? { finalUnit: serviceAccount?.finalUnit ?? { action: 'terminate' } } : {}),
    },
  };
  const session: SessionItem = {
    sessionId,
    state: 'active',
    accountId: command.accountId,
    chargedAccountId,
    ...(payer ? { payerAccountId: payer } : {}),
    clientId: command.clientId,
    serviceId: command.serviceId,
    unit: service.unit,
    price,
    ...(serviceAccount ? { finalUnit: serviceAccount.finalUnit } : {}),
    multiSessionId: command.multiSessionId ?? sessionId,
    validitySeconds: service.validitySeconds,
    interimIntervalSeconds: service.interimIntervalSeconds,
    ...(service.establishedInterimIntervalSeconds ? { establishedInterimIntervalSeconds: service.establishedInterimIntervalSeconds } : {}),
    ...(command.notifyUri ? { notifyUri: command.notifyUri } : {}),
    seq: 1,
    hold: holdOf(entry),
    validUntil: entry.vu!,
    createdAt: entry.at,
    lastUpdateAt: entry.at,
    refundedMinor: 0,
    returnedMinor: 0,
    answers: { [answerKey(command.requestId)]: { h: bodyHash, answer } },
    nonce: entry.n,
  };
  const entries = stepEntry(
    { accountId: chargedAccountId, sessionId, requestId: command.requestId, at: recordedAt, seq: 1 },
    { chargeMinor: 0, reservedDelta: entry.amt, units: entry.gu },
  );
  const items = [
    { Put: {
      TableName: store.tableName,
      Item: { ...key.session(sessionId), ...session, dueShard: dueShardOf(sessionId), dueAt: nextDueAt(entry.at, session.interimIntervalSeconds, session.validUntil) },
      ConditionExpression: 'attribute_not_exists(pk)',
    } },
    ...entries.map((e) => ledgerPut(store, e)),
    ...(command.multiSessionId ? [{ Put: {
      TableName: store.tableName,
      Item: { ...key.multiSessionMember(command.multiSessionId, sessionId), sessionId, at: entry.at },
    } }] : []),
  ];
  return { answer, items };
}

/** The hold a released orphan carried (see releaseOrphanHold), as its reserve took it. */
function heldBefore(released: OpEntry): OpEntry | null {
  const o = released.o;
  if (!o) return null;
  return { seq: 1, amt: o.amt, gu: o.gu, u: 0, chg: 0, rid: o.rid, h: o.h, n: o.n, at: o.at, vu: released.vu };
}

/**
 * A repeat answered from its session before writing first gives back a hold that a copy of
 * it took and left on the account: a copy that read before the session was recorded and died
 * before it learnt so (the retry finishes what its first attempt left, as it did when it
 * wrote first). One read of the account, only on such repeats. Under a game's id (a reserve
 * reusing a proposal's requestId) the hold is on the account the reserve names, where the
 * game's own entry would be its party's, under another request (fails before: left for good,
 * and the game could not start; review 9).
 */
async function settleStrayHold(store: Store, session: SessionItem, command: { requestId: string; accountId: string }): Promise<void> {
  const accountId = session.parties ? command.accountId : session.chargedAccountId;
  const stray = (await getAccountItem(store, accountId))?.ops?.[session.sessionId];
  if (stray && stray.seq === 1 && !stray.done && stray.rid === command.requestId && stray.n !== session.nonce) await voidHold(store, accountId, session.sessionId, stray);
}

/**
 * Gives back a hold its session never knew: taken under a requestId whose session was opened
 * by another hold (a retransmission after the session's entry left the account, or another
 * body). Only that very hold (nonce), only while it is still a live seq-1 hold.
 */
export async function voidHold(store: Store, accountId: string, sessionId: string, entry: OpEntry): Promise<boolean> {
  try {
    await store.db.send(new UpdateCommand({
      TableName: store.tableName, Key: key.account(accountId),
      UpdateExpression: 'SET reserved = reserved - :a, available = available + :a REMOVE ops.#op',
      ConditionExpression: 'ops.#op.n = :n AND ops.#op.seq = :one AND attribute_not_exists(ops.#op.done)',
      ExpressionAttributeNames: { '#op': sessionId },
      ExpressionAttributeValues: { ':a': entry.amt, ':n': entry.n, ':one': 1 },
    }));
    return true;
  } catch (error) {
    if (!isConditionFailure(error)) throw error;
    return false;
  }
}

/**
 * The sweep: a hold whose reserve died before writing its session, and was not retried
 * while its grant was valid, goes back. The entry stays a while as a finished expiry (seq 2,
 * as the sweep would expire the session) that keeps the hold (`o`): a reserve still writing
 * the session then has it expired by roll-forward, and a late retry of that reserve records
 * the session as opened and expired, answering what it would have answered.
 */
export async function releaseOrphanHold(store: Store, accountId: string, sessionId: string, hold: OpEntry): Promise<boolean> {
  const at = store.now().toISOString();
  const release: OpEntry = {
    seq: 2, amt: 0, gu: 0, u: 0, chg: 0, rid: systemRequestId('expire:1'), h: 'sweep', n: newNonce(), at, vu: hold.vu, done: 'expired',
    o: { amt: hold.amt, gu: hold.gu, at: hold.at, n: hold.n, rid: hold.rid, h: hold.h },
  };
  try {
    await store.db.send(new UpdateCommand({
      TableName: store.tableName, Key: key.account(accountId),
      UpdateExpression: 'SET reserved = reserved - :a, available = available + :a, ops.#op = :release',
      ConditionExpression: 'ops.#op.n = :n AND ops.#op.seq = :one AND attribute_not_exists(ops.#op.done)',
      ExpressionAttributeNames: { '#op': sessionId },
      ExpressionAttributeValues: { ':a': hold.amt, ':n': hold.n, ':one': 1, ':release': release },
    }));
    return true;
  } catch (error) {
    if (!isConditionFailure(error)) throw error;
    return false; // finished meanwhile by a retry, or already released
  }
}

// ---------------------------------------------------------- update and terminate (CCR-U/T)

type StepKind = 'update' | 'debit' | 'release';

/**
 * One step of a live session. Reads the session, moves the money on the account (commit
 * point), then records the step on the session item and the ledger.
 */
/** `readJustNow`: the session as the caller has just read it, used for the first attempt (saves a read). */
async function step(store: Store, sessionId: string, kind: StepKind, command: StepCommand, bodyHash: string, readJustNow?: SessionItem): Promise<StoredAnswer> {
  for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
    // The first attempt reads the session alone (a GetItem: 1 RRU, where the transactional
    // read of session and answer is 4). If the step goes the one-write way, its answer item
    // is Put only if new, so a request answered before cannot be applied again: the
    // transaction is refused, and the next attempt reads both. Any other way first reads
    // the answer too (withKeptAnswer).
    const light = attempt === 0 && !readJustNow;
    let session = attempt === 0 && readJustNow ? readJustNow : await requireSession(store, sessionId, light ? undefined : command.requestId);
    const oneWrite = attempt === 0 && !session.parties && session.state === 'active' && oneWriteAllowed(store, session.chargedAccountId);
    if (light && !oneWrite) session = await withKeptAnswer(store, session, command.requestId);
    if (session.parties) return partyStep(store, session, kind, command, bodyHash);
    const replay = replayOrConflict(session, command.requestId, bodyHash);
    if (replay) return replay;
    if (session.state !== 'active') (kind === 'release' ? releaseClosed : sessionClosed)(sessionId, session.state);

    const now = store.now();
    let usage: Usage;
    try {
      usage = kind === 'release' ? chargeNothing(session.hold) : rateUsage(session.hold, command.usedUnits, session.price);
    } catch (error) {
      // Usage too large to rate on top of what the session recorded: a repeat of a request
      // answered before (which recorded that very usage) is answered as before, not refused.
      // The light read has not looked for its answer yet.
      const kept = light && oneWrite ? replayOrConflict(await withKeptAnswer(store, session, command.requestId), command.requestId, bodyHash) : null;
      if (kept) return kept;
      throw error;
    }
    const closing = kind !== 'update';
    const onServiceAccount = isServiceAccountId(session.chargedAccountId);
    const requested = command.requested && onServiceAccount ? await inUnitsOfService(store, session, command.requested) : command.requested;
    // An { amount } that buys no block is refused as on a reserve or an event, before anything
    // is written (fails before: 402 and a terminate while the account had credit; review), and
    // so is one that does not even pay the block a report over its grant left unpaid (fails
    // before: 402 and a terminate; review 9). A repeat of a request answered before is
    // answered as before (the rating may have changed).
    const soFar = { usedUnits: usage.usedUnitsTotal, chargedMinor: usage.chargedMinorTotal };
    if (!closing && requested && ('units' in requested ? requested.units === 0 : !optimisticGrant(requested, session.price, soFar))) {
      const kept = light && oneWrite ? replayOrConflict(await withKeptAnswer(store, session, command.requestId), command.requestId, bodyHash) : null;
      if (kept) return kept;
      const unpaid = optimisticGrant(requested, session.price) ? ` after the ${soFar.usedUnits} units reported, which it must pay first` : '';
      fail('validation_failed', `requested: ${command.requested && 'amount' in command.requested ? command.requested.amount : 0} does not buy one block of ${session.serviceId}${unpaid}`);
    }
    /** What the request asks, in units: a grant of fewer is the last (finalUnit), whichever way it was asked. */
    const wantedUnits = requested ? ('units' in requested ? requested.units : optimisticGrant(requested, session.price, soFar)?.units ?? 0) : 0;
    let grant = closing ? { units: 0, amountMinor: 0 } : regrant(requested, session.price, usage);
    let entry: OpEntry | null = null;
    let denied = false;
    let inactive = false;
    // A service account's onEmpty as its refused write read it (see finishStep).
    let finalUnitNow: FinalUnit | undefined;
    // A service account's item holds no validity of its own: it spends only while the
    // accounts it spends for may (fails before: their updates were granted after expiry).
    const refusal = grant && grant.units > 0 && onServiceAccount ? await serviceAccountRefusal(store, session, now.toISOString()) : null;
    if (refusal) { grant = null; inactive = refusal === 'inactive'; }
    for (let tries = 0; tries < MAX_ATTEMPTS; tries++) {
      const newHold = grant?.amountMinor ?? 0;
      const candidate: OpEntry = {
        seq: session.seq + 1, amt: newHold, gu: grant?.units ?? 0, u: usage.usedUnitsTotal, chg: usage.chargedMinorTotal,
        rid: command.requestId, h: bodyHash, n: newNonce(), at: now.toISOString(),
        vu: closing ? session.validUntil : addSeconds(now, session.validitySeconds),
        ...(closing ? { done: kind === 'release' ? 'released' : 'closed' } as const : {}),
        ...(grant ? {} : { denied: true, ...(inactive ? { ia: true } : {}) }),
        ...(grant && requested && grant.units < wantedUnits ? { fu: true } : {}),
      };
      const movement = movementFor(session.hold, usage, newHold);
      if (oneWrite && tries === 0) {
        // The money and the record in one transaction (see ops.ts, one-write operations).
        const { answer, items } = stepRecord(store, session, kind, command, bodyHash, candidate, !grant, light);
        const written = await applyOpWithRecord(store, session.chargedAccountId, sessionId, { kind: 'step', seq: session.seq }, movement, candidate, items);
        if (written.outcome === 'applied') {
          if (closing) await afterClose(store, session, candidate);
          return answer;
        }
        // Refused, or not known to be written: the two-write way decides from what is there,
        // once the session is read with this request's answer.
        if (light) break;
      }
      const result = await applyOp(store, session.chargedAccountId, sessionId, { kind: 'step', seq: session.seq }, movement, candidate);
      if (result.ok) { entry = candidate; denied = !grant; break; }
      const recorded = result.account?.ops?.[sessionId];
      if (recorded && recorded.rid === command.requestId && recorded.seq === session.seq + 1) {
        if (recorded.h !== bodyHash) reusedRequestId(command.requestId);
        entry = recorded; // applied by an earlier try of this very request
        denied = !!recorded.denied;
        break;
      }
      if (recorded && recorded.seq === session.seq + 1) {
        // Another request's step landed on the account but not on the session (its handler
        // died between the two writes): finish that step first, then try ours again.
        await rollForward(store, session, recorded);
        break;
      }
      if (!recorded || recorded.seq !== session.seq || recorded.done) break; // moved on: read the session again
      // The account may not charge any more (expired, suspended, its main account's validity
      // passed): the usage is charged, nothing is granted.
      if (!usableAt(result.account!, now.toISOString())) { grant = null; inactive = true; continue; }
      // Only the money was short: grant what fits, counting what cover can bring, or nothing.
      const account = result.account!;
      // What is told on running dry is the service account's onEmpty now, not at the reserve
      // (fails before: a PUT's new onEmpty went unheard by open sessions; review 18 of stop 28).
      if (onServiceAccount) finalUnitNow = finalUnitActionOf(account as ServiceAccountItem);
      grant = regrant(requested, session.price, usage, account.available + await coverableMinor(store, account));
    }
    if (!entry) continue;
    return finishStep(store, session, kind, command, bodyHash, entry, denied, finalUnitNow);
  }
  // Nothing of this request was applied (each try that found its step applied returned).
  throw new ChargingError('temporarily_unavailable', `session ${sessionId} changed too often to apply this request; retry it with the same requestId`);
}

/** An update's request on a service-account session in its units (the session is rated 1 per 1): an { amount } at the service's price. */
async function inUnitsOfService(store: Store, session: SessionItem, requested: Requested): Promise<Requested> {
  if ('units' in requested) return requested;
  // Still an amount, in the session's units (1 per 1): it holds no more than it is worth, as a
  // money session's (fails before: after a report over its grant it held that report's whole
  // overrun on top; review 9).
  return { amount: inServiceUnits(requested, (await getService(store, session.serviceId)).price).units };
}

/**
 * Why a service account may not grant a session more, or null: it grants while its owner, and
 * the account that asked (a member drawing on its main account's), are active and valid
 * (usableAt: a member's item carries its main account's validity too), and while such a
 * member has no consumptionLimit. One read each, only on an update of a service-account
 * session that asks for more.
 */
async function serviceAccountRefusal(store: Store, session: SessionItem, at: string): Promise<'inactive' | 'limit' | null> {
  const owner = publicAccountId(session.chargedAccountId);
  const ids = [...new Set([owner, session.accountId])];
  const items = await Promise.all(ids.map((id) => getAccountItem(store, id)));
  if (!items.every((item) => !!item && usableAt(item, at))) return 'inactive';
  // A member given a consumptionLimit since its session opened no longer draws on its main
  // account's service account, whose units would slip past the limit (mainAccountRoute): its
  // session is granted no more, as a money session past its limit (fails before: it was
  // granted from the bundle without end; review 3).
  const member = items.find((item) => item!.accountId !== owner);
  return member?.consumptionLimit !== undefined ? 'limit' : null;
}

/**
 * What a step records once the account applied it: the answer, and the transaction items of
 * the session's move from its seq to the step's, the step's ledger entries and its answer item.
 */
function stepRecord(store: Store, session: SessionItem, kind: StepKind, command: StepCommand, bodyHash: string, entry: OpEntry, denied: boolean, answerOnlyIfNew = false, finalUnit = session.finalUnit) {
  const previous = session.hold;
  const chargeMinor = entry.chg - previous.chargedMinor;
  const remainder = previous.holdMinor - chargeMinor;
  const closing = kind !== 'update';
  const state: SessionState = kind === 'update' ? 'active' : kind === 'release' ? 'released' : 'closed';
  const charged = { units: entry.u, amount: entry.chg };
  const intervalSeconds = interimIntervalFor(session, true);
  let answer: StoredAnswer;
  if (kind === 'update') {
    answer = denied && entry.ia
      ? { status: 403, body: { code: 'account_inactive', detail: `account ${publicAccountId(session.chargedAccountId)} is suspended or expired: no new grant; the reported usage was charged`, charged } }
      : denied
      ? { status: 402, body: { code: 'insufficient_credit', detail: 'no credit left for another grant; the reported usage was charged', charged, ...finalUnitExtras(finalUnit) } }
      : { status: 200, body: {
        granted: { units: entry.gu, amount: entry.amt }, validUntil: entry.vu, interimIntervalSeconds: intervalSeconds, charged,
        ...(entry.fu ? { finalUnit: finalUnit ?? { action: 'terminate' } } : {}),
      } };
  } else if (kind === 'debit') {
    answer = { status: 200, body: { state, charged, returned: { amount: remainder } } };
  } else {
    answer = { status: 200, body: { ...shownState(state), refunded: { amount: 0 }, returned: { amount: remainder }, charged } };
  }
  const hold: Hold = { seq: entry.seq, holdMinor: entry.amt, grantedUnits: entry.gu, usedUnits: entry.u, chargedMinor: entry.chg };
  const base = { accountId: session.chargedAccountId, sessionId: session.sessionId, requestId: command.requestId, at: entry.at, seq: entry.seq };
  const entries = stepEntry(base, { chargeMinor, reservedDelta: entry.amt - previous.holdMinor, units: entry.u - previous.usedUnits });
  const names: Record<string, string> = { '#state': 'state', '#hold': 'hold' };
  const values: Record<string, unknown> = {
    ':seq': session.seq, ':next': entry.seq, ':state': state, ':hold': hold, ':at': entry.at, ':vu': entry.vu,
    ':returned': closing ? remainder : 0,
    // A step that granted nothing (refused 402/403, or asked for nothing) leaves no usage to
    // report: the session is next due at its expiry, not asked for an interim report.
    ...(closing ? {} : { ':iv': intervalSeconds, ':due': entry.gu > 0 ? nextDueAt(entry.at, intervalSeconds, entry.vu!) : entry.vu! }),
  };
  const sets = ['seq = :next', '#state = :state', '#hold = :hold', 'lastUpdateAt = :at', 'validUntil = :vu', 'returnedMinor = returnedMinor + :returned'];
  const update = closing ? `SET ${sets.join(', ')} REMOVE dueShard, dueAt` : `SET ${sets.join(', ')}, interimIntervalSeconds = :iv, dueAt = :due`;
  const items = [
    { Update: {
      TableName: store.tableName, Key: key.session(session.sessionId),
      UpdateExpression: update, ConditionExpression: 'seq = :seq',
      ExpressionAttributeNames: names, ExpressionAttributeValues: values,
    } },
    ...entries.map((e) => ledgerPut(store, e)),
    // The session's seq condition makes the step, and so its answer, once. Only if new when
    // the session was read without its answers (see step).
    answerPut(store, session.sessionId, command.requestId, bodyHash, answer, answerOnlyIfNew),
  ];
  return { answer, items, closing };
}

/**
 * `finalUnit`: a service account's onEmpty as the step's refused write read it. A step of a
 * service-account session that ran dry (a 402, a last grant) tells what the account says
 * now, not what it said at the reserve (fails before: a PUT's new onEmpty went unheard by open
 * sessions; review 18 of stop 28): read here when the step was applied unseen (a retry, a
 * roll-forward), whose answer nobody has had yet. Not kept in the ops entry: a redirectUrl
 * of 2 KB there would take the account's item past 400 KB (review 25 of stop 28).
 */
async function finishStep(store: Store, session: SessionItem, kind: StepKind, command: StepCommand, bodyHash: string, entry: OpEntry, denied: boolean, finalUnit?: FinalUnit): Promise<StoredAnswer> {
  const dry = kind === 'update' && (entry.fu || (denied && !entry.ia)) && isServiceAccountId(session.chargedAccountId);
  const told = !dry ? session.finalUnit : finalUnit ?? finalUnitActionOf((await getAccountItem(store, session.chargedAccountId)) as ServiceAccountItem | undefined);
  const { answer, items, closing } = stepRecord(store, session, kind, command, bodyHash, entry, denied, false, told);
  try {
    await withConflictRetry(() => store.db.send(new TransactWriteCommand({ TransactItems: items as any })));
  } catch (error) {
    // Anything but "the session moved" (a transient conflict is temporarily_unavailable by
    // now) leaves the step recorded on the account only: the retry, or any other request on
    // the session, or the sweep, rolls it forward.
    if (!conditionFailedAt(error, 0)) throw error;
    // Someone (a concurrent duplicate of this request, a roll-forward) recorded the step first.
    const now = await requireSession(store, session.sessionId, command.requestId);
    // Not a refusal to keep (conflict): the step is this request's, recorded without its answer.
    return replayOrConflict(now, command.requestId, bodyHash) ?? fail('temporarily_unavailable', 'the session moved on; retry with the same requestId');
  }
  if (closing) await afterClose(store, session, entry);
  return answer;
}

/**
 * A session closed and recorded: when it was the last of a multi-session, the combined rating
 * is settled; then its entry on the account may go (with this process's next write there).
 * In that order because the entry is what says a settlement may still be owed: if settling
 * fails here, or never runs (a retry that finds the close done replays its answer), the
 * entry stays and the sweep's visit of the account settles before it removes it
 * (compaction.ts, ensureRecorded).
 */
async function afterClose(store: Store, session: SessionItem, closing: OpEntry): Promise<void> {
  if ((session.multiSessionId !== session.sessionId || session.membersJoined) && !(await settleMultiSession(store, session.multiSessionId)).settled) return;
  markFinalized(store, session.chargedAccountId, session.sessionId, closing);
}

/** Records on the session item a step the account already applied (see `step`). */
export async function rollForward(store: Store, session: SessionItem, recorded: OpEntry): Promise<void> {
  if (recorded.done === 'expired') return rollForwardExpiry(store, session, recorded);
  // Only the step right after the session's: one recorded already must not be recorded twice.
  if (session.seq !== recorded.seq - 1) return;
  const kind: StepKind = recorded.done === 'closed' ? 'debit' : recorded.done === 'released' ? 'release' : 'update';
  // A refusal (the session moved: someone else recorded it) is fine; contention is not: the
  // step would stay unrecorded while its caller went on as if it were.
  await finishStep(store, session, kind, { requestId: recorded.rid, usedUnits: recorded.u - session.hold.usedUnits }, recorded.h, recorded, !!recorded.denied)
    .catch((error) => { if (!(error instanceof ChargingError) || error.code === 'temporarily_unavailable') throw error; });
}

/**
 * rollForward of an expiry: apart, so that a reserve (which rolls forward only the expiry of
 * its own released hold) does not carry the step records of updates and debits.
 */
async function rollForwardExpiry(store: Store, session: SessionItem, recorded: OpEntry): Promise<void> {
  // Only the step right after the session's: one recorded already (a retransmission of a
  // reserve finds its released hold again long after) must not be recorded twice.
  if (session.seq === recorded.seq - 1 && await recordExpiry(store, session, recorded)) await afterClose(store, session, recorded);
}

export const updateSession = (store: Store, sessionId: string, command: StepCommand, bodyHash: string) =>
  keepingSessionRefusal(store, sessionId, command.requestId, bodyHash, () => step(store, sessionId, 'update', command, bodyHash));

export const debitSession = (store: Store, sessionId: string, command: StepCommand, bodyHash: string) =>
  keepingSessionRefusal(store, sessionId, command.requestId, bodyHash, () => step(store, sessionId, 'debit', command, bodyHash));

/**
 * `run`'s answer; its refusal for the session's state (`session_closed`, `conflict`) kept as the request's answer
 * (keptSessionRefusalStatus), and thrown as any refusal (a concurrent duplicate that kept it
 * first answers it).
 */
export async function keepingSessionRefusal(store: Store, sessionId: string, requestId: string, bodyHash: string, run: () => Promise<StoredAnswer>): Promise<StoredAnswer> {
  try {
    return await run();
  } catch (error) {
    const refusal = keptRefusal(error, keptSessionRefusalStatus);
    if (!refusal) throw error;
    const kept = await keepAnswer(store, sessionId, requestId, bodyHash, refusal);
    if (kept === refusal) throw error;
    return kept;
  }
}

// ------------------------------------------------------------------------------ refund

/**
 * Keeps `answer` as the answer to `requestId` on the session, for repeats, where no step
 * records it (agreements, refusals). The first kept wins: a concurrent duplicate is answered
 * what was kept.
 */
export async function keepAnswer(store: Store, sessionId: string, requestId: string, bodyHash: string, answer: StoredAnswer): Promise<StoredAnswer> {
  try {
    await store.db.send(new PutCommand(answerPut(store, sessionId, requestId, bodyHash, answer, true).Put));
    return answer;
  } catch (error) {
    if (!isConditionFailure(error)) throw error;
    return replayOrConflict(await requireSession(store, sessionId, requestId), requestId, bodyHash) ?? answer;
  }
}

export const refundSession = (store: Store, sessionId: string, command: { requestId: string; amount?: number; reason?: string }, bodyHash: string) =>
  keepingSessionRefusal(store, sessionId, command.requestId, bodyHash, () => refundOnce(store, sessionId, command, bodyHash));

async function refundOnce(store: Store, sessionId: string, command: { requestId: string; amount?: number; reason?: string }, bodyHash: string): Promise<StoredAnswer> {
  const session = await requireSession(store, sessionId, command.requestId);
  const replay = replayOrConflict(session, command.requestId, bodyHash);
  if (replay) return replay;
  if (command.amount === undefined) {
    // Without an amount a refund is a release. A session no longer open has nothing to
    // release, and its charges go back only by an amount: a release that meets a session
    // closed meanwhile (expired by the sweep, say) never turns into a refund of what was used.
    if (session.state !== 'active' && !(session.parties && session.state === 'pending_agreement')) {
      releaseClosed(sessionId, session.state);
    }
    return step(store, sessionId, 'release', { requestId: command.requestId, usedUnits: 0 }, bodyHash, session);
  }
  let refunded: StoredAnswer | 'moved';
  try {
    if (session.state === 'active') fail('conflict', 'an amount is refunded only once the session is closed; refund without amount releases its reservation');
    if (session.state === 'pending_agreement') fail('conflict', 'the session has not started');
    refunded = session.parties
      ? await refundPartySession(store, session, { ...command, amount: command.amount }, bodyHash)
      : await refundCharged(store, session, { ...command, amount: command.amount }, bodyHash, 'refund');
  } catch (error) {
    // A refusal is this request's answer for good (API.md: a repeat gets the original answer),
    // not a success once the session closes, nor another `refundable` after other refunds.
    const refusal = keptRefusal(error, keptRefundRefusalStatus);
    if (!refusal) throw error;
    return keepAnswer(store, sessionId, command.requestId, bodyHash, refusal);
  }
  // The session moved (another refund), or this requestId got its answer meanwhile (a
  // duplicate): decide again on what it is now (a repeat replays, whatever the balance).
  return refunded === 'moved' ? refundOnce(store, sessionId, command, bodyHash) : refunded;
}

/** What a multi-session's settlement computes a member's adjustment on: its charges, net of the refunds that were not the settlement's own. */
export const settlementBasis = (session: SessionItem) => session.hold.chargedMinor - session.refundedMinor + (session.settledMinor ?? 0);

/**
 * A multi-session's settlement gives an adjustment back on a closed member session as a
 * refund of its charges, once per requestId (the answer is kept like a refund's). Members are
 * never multi-party sessions (a proposal cannot join a multi-session).
 */
export async function giveBackAdjustment(store: Store, sessionId: string, command: { requestId: string; amount: number; reason: string; basisMinor: number }, bodyHash: string): Promise<StoredAnswer> {
  const session = await requireSession(store, sessionId, command.requestId);
  const replay = replayOrConflict(session, command.requestId, bodyHash);
  if (replay) return replay;
  if (isOpen(session.state) || session.parties) fail('conflict', `session ${sessionId} is not a closed session of one account`);
  // Computed on what the session charged net of other refunds: a refund since then moves that
  // basis, and the adjustment must be computed again on the new one (the caller's next run).
  if (settlementBasis(session) !== command.basisMinor) fail('conflict', `session ${sessionId} was refunded since the settlement read it`);
  const given = await refundCharged(store, session, command, bodyHash, 'adjustment');
  return given === 'moved' ? giveBackAdjustment(store, sessionId, command, bodyHash) : given;
}

/**
 * Gives back `amount` of what a closed session of one account charged, in one transaction
 * (refunds are rare): the session (its refundedMinor as read, so concurrent refunds never
 * give back more than it charged), the account, the ledger entry, the answer. 'moved': the
 * session or the answer changed first, the caller decides again.
 */
async function refundCharged(store: Store, session: SessionItem, command: { requestId: string; amount: number; reason?: string }, bodyHash: string, ledgerType: 'refund' | 'adjustment'): Promise<StoredAnswer | 'moved'> {
  const sessionId = session.sessionId;
  const left = refundable(session.hold.chargedMinor, session.refundedMinor);
  const amount = command.amount;
  if (amount <= 0 || amount > left) {
    fail('conflict', `at most ${left} of what session ${sessionId} charged can still be refunded`, { refundable: left });
  }
  const at = store.now().toISOString();
  const refundedMinor = session.refundedMinor + amount;
  const answer: StoredAnswer = { status: 200, body: { refunded: { amount }, refundedTotal: { amount: refundedMinor }, ...shownState(session.state) } };
  const items = [
    { Update: {
      TableName: store.tableName, Key: key.session(sessionId),
      // A settlement's give-back is also counted apart: the settlement is computed on what the
      // session charged less the refunds that were not its own, so running it again (the
      // sweep does, see afterClose) computes the very same adjustments.
      UpdateExpression: ledgerType === 'adjustment' ? 'SET refundedMinor = :total, settledMinor = :settled' : 'SET refundedMinor = :total',
      ConditionExpression: 'refundedMinor = :before',
      ExpressionAttributeValues: { ':total': refundedMinor, ':before': session.refundedMinor, ...(ledgerType === 'adjustment' ? { ':settled': (session.settledMinor ?? 0) + amount } : {}) },
    } },
    { Update: {
      TableName: store.tableName, Key: key.account(session.chargedAccountId),
      UpdateExpression: 'SET balance = balance + :a, available = available + :a',
      // No balance past MAX_BALANCE_MINOR, as for a top-up (a top-up since the charge may have filled it).
      ConditionExpression: 'attribute_exists(pk) AND balance <= :most',
      ExpressionAttributeValues: { ':a': amount, ':most': MAX_BALANCE_MINOR - amount },
    } },
    ledgerPut(store, { accountId: session.chargedAccountId, entryId: `${sessionId}:refund:${command.requestId}`, at, type: ledgerType, amount, reservedDelta: 0, sessionId, requestId: command.requestId, ...(command.reason ? { reason: command.reason } : {}) }),
    answerPut(store, sessionId, command.requestId, bodyHash, answer, true),
  ];
  const answerIndex = items.length - 1;
  try {
    await withConflictRetry(() => store.db.send(new TransactWriteCommand({ TransactItems: items as any })));
  } catch (error) {
    if (conditionFailedAt(error, 0) || conditionFailedAt(error, answerIndex)) return 'moved';
    if (conditionFailedAt(error, 1)) fail('validation_failed', `amount: the balance would pass ${MAX_BALANCE_MINOR}`, { maxBalance: MAX_BALANCE_MINOR });
    throw error;
  }
  // A member's refund past a lowered consumption limit goes back to its main account (one read,
  // only for a member's session; fails before: spent past the limit, review 26 of stop 28).
  if (session.payerAccountId) await giveBackPastLimitOf(store, session.chargedAccountId).catch(logGiveBackFailure(session.chargedAccountId));
  return answer;
}

// ------------------------------------------------------------------------- expiry (sweep)

export type SweepOutcome = 'expired' | 'report_requested' | 'not_due' | 'gone';

/**
 * One due session, as the sweep sees it: expired when its grant outlived validUntil (its hold
 * goes back; safe against an update racing it, the account's seq decides, and against a
 * second sweep), else asked for an interim report when its interval is up (once per step).
 */
export async function sweepSession(store: Store, sessionId: string): Promise<SweepOutcome> {
  for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
    const session = await getSessionItem(store, sessionId);
    if (!session || (session.state !== 'active' && session.state !== 'pending_agreement')) return 'gone';
    const now = store.now().toISOString();
    if (session.parties) {
      // Every step of a party session is one transaction: expiring it is one too.
      if (session.validUntil > now) return session.state === 'active' ? askForReport(store, session, now) : 'not_due';
      if (!(await expirePartySession(store, session))) continue;
      return 'expired';
    }
    if (session.validUntil > now) return askForReport(store, session, now);
    const usage = chargeNothing(session.hold);
    const entry: OpEntry = {
      seq: session.seq + 1, amt: 0, gu: 0, u: session.hold.usedUnits, chg: session.hold.chargedMinor,
      rid: systemRequestId(`expire:${session.seq}`), h: 'sweep', n: newNonce(), at: now, vu: session.validUntil, done: 'expired',
    };
    const movement = movementFor(session.hold, usage, 0);
    let applied = entry;
    // The hold back and the expiry recorded in one transaction (see ops.ts, one-write
    // operations); if refused (an update won the race, another sweep) or not known to be
    // written, the two writes below decide.
    const written = attempt === 0 && oneWriteAllowed(store, session.chargedAccountId)
      ? await applyOpWithRecord(store, session.chargedAccountId, sessionId, { kind: 'step', seq: session.seq }, movement, entry, expiryRecord(store, session, entry))
      : null;
    if (written?.outcome !== 'applied') {
      const result = await applyOp(store, session.chargedAccountId, sessionId, { kind: 'step', seq: session.seq }, movement, entry);
      if (!result.ok) {
        const recorded = result.account?.ops?.[sessionId];
        if (recorded && recorded.seq === session.seq + 1 && recorded.rid !== entry.rid) {
          await rollForward(store, session, recorded); // an unfinished step: finish it, then look again
          continue;
        }
        if (recorded?.rid !== entry.rid || recorded.seq !== entry.seq) continue; // an update won the race
        // A concurrent sweep moved the money (or released the hold before the session was
        // written, see releaseOrphanHold): finish its record.
        applied = recorded;
      }
      if (!(await recordExpiry(store, session, applied))) return 'gone';
    }
    await afterClose(store, session, applied);
    return 'expired';
  }
  return 'not_due';
}

/** Kept for callers that only expire. */
export const expireSession = (store: Store, sessionId: string) => sweepSession(store, sessionId);

function sessionRefs(session: SessionItem) {
  return {
    sessionId: session.sessionId, multiSessionId: session.multiSessionId, accountId: publicAccountId(session.chargedAccountId), clientId: session.clientId,
    // A session on a service account moves units, not money: its notices say so, as its
    // reserve's answer does (fails before: a bare amount in units; review 8).
    ...(isServiceAccountId(session.chargedAccountId) ? { serviceAccount: session.serviceId, unit: session.unit } : {}),
    ...(session.notifyUri ? { notifyUri: session.notifyUri } : {}),
  };
}

/**
 * A session's `session_expired`, with the id its item is written under. The item is Put by
 * the transaction that records the expiry (whoever records it: the sweep, or a request that
 * finishes an expiry the sweep left half done), so the notification is never lost: the
 * notification relay publishes it (store/notifications.ts). It is also the owner's to read,
 * at GET /accounts/{id}/notifications.
 */
export function expiryNotice(session: SessionItem, at: string, returnedMinor: number): { notification: AccountNotification; id: string } {
  return { notification: { type: 'session_expired', at, ...sessionRefs(session), returned: { amount: returnedMinor } }, id: `expired:${session.sessionId}` };
}

/** The transaction item of a session's `session_expired` (see expiryNotice). */
export function expiryNoticePut(store: Store, notice: { notification: AccountNotification; id: string }) {
  return { Put: { TableName: store.tableName, Item: notificationItem(store, notice.notification, notice.id) } };
}

async function askForReport(store: Store, session: SessionItem, now: string): Promise<SweepOutcome> {
  // A session granted nothing by its last step (an update refused 402 or 403: its client was
  // told to terminate) has no usage to report: it is left to expire (fails before: the sweep
  // asked it for a report all the same).
  const granted = session.parties !== undefined || session.hold.grantedUnits > 0;
  const reportDue = granted && nextDueAt(session.lastUpdateAt, session.interimIntervalSeconds, '9999-12-31T23:59:59.999Z') <= now;
  const ask = reportDue && session.reportRequestedSeq !== session.seq;
  // After asking, the next thing due is the expiry; otherwise put it back where it belongs.
  const dueAt = ask || !granted || session.reportRequestedSeq === session.seq ? session.validUntil : nextDueAt(session.lastUpdateAt, session.interimIntervalSeconds, session.validUntil);
  const sessionUpdate = {
    TableName: store.tableName, Key: key.session(session.sessionId),
    UpdateExpression: ask ? 'SET dueAt = :due, reportRequestedSeq = :seq' : 'SET dueAt = :due',
    ConditionExpression: ask ? 'seq = :seq AND (attribute_not_exists(reportRequestedSeq) OR reportRequestedSeq <> :seq)' : 'seq = :seq',
    ExpressionAttributeValues: { ':due': dueAt, ':seq': session.seq },
  };
  if (!ask) {
    try {
      await store.db.send(new UpdateCommand(sessionUpdate));
    } catch (error) {
      if (!isConditionFailure(error)) throw error;
      return 'gone'; // updated meanwhile
    }
    return 'not_due';
  }
  // The request goes to the outbox with the mark that it was made, in one write: the sweep
  // asks once per step and never again for it, so it must not be lost once the mark is made;
  // the notification relay sends it.
  const request: AccountNotification = { type: 'interim_update_requested', at: now, ...sessionRefs(session), interimIntervalSeconds: session.interimIntervalSeconds, validUntil: session.validUntil };
  const id = `report:${session.sessionId}:${session.seq}`;
  try {
    await withConflictRetry(() => store.db.send(new TransactWriteCommand({ TransactItems: [
      { Update: sessionUpdate },
      { Put: { TableName: store.tableName, Item: notificationItem(store, request, id) } },
    ] })));
  } catch (error) {
    if (!conditionFailedAt(error, 0)) throw error;
    return 'gone'; // updated or asked meanwhile
  }
  return 'report_requested';
}

/** The transaction items that record an expiry: the session's move to `expired` (only from its seq) and the ledger entry. */
function expiryRecord(store: Store, session: SessionItem, applied: OpEntry) {
  const returned = session.hold.holdMinor;
  const entries = stepEntry(
    { accountId: session.chargedAccountId, sessionId: session.sessionId, requestId: applied.rid, at: applied.at, seq: applied.seq },
    { chargeMinor: 0, reservedDelta: -returned, expiry: true },
  );
  return [
    { Update: {
      TableName: store.tableName, Key: key.session(session.sessionId),
      UpdateExpression: 'SET seq = :next, #state = :expired, #hold = :hold, lastUpdateAt = :at, returnedMinor = returnedMinor + :r REMOVE dueShard, dueAt',
      ConditionExpression: 'seq = :seq',
      ExpressionAttributeNames: { '#state': 'state', '#hold': 'hold' },
      ExpressionAttributeValues: {
        ':next': applied.seq, ':seq': session.seq, ':expired': 'expired', ':at': applied.at, ':r': returned,
        ':hold': { ...session.hold, seq: applied.seq, holdMinor: 0, grantedUnits: 0 },
      },
    } },
    ...entries.map((e) => ledgerPut(store, e)),
    expiryNoticePut(store, expiryNotice(session, applied.at, returned)),
  ];
}

/** Records an expiry the account already applied; false when another sweep recorded it. The caller marks the entry finalized. */
async function recordExpiry(store: Store, session: SessionItem, applied: OpEntry): Promise<boolean> {
  try {
    await withConflictRetry(() => store.db.send(new TransactWriteCommand({ TransactItems: expiryRecord(store, session, applied) as any })));
  } catch (error) {
    if (!conditionFailedAt(error, 0)) throw error;
    return false;
  }
  return true;
}

/** Sessions whose validUntil is at or before `until`, found through the sparse due index. */
export async function findDueSessions(store: Store, until: string, limitPerShard: number): Promise<string[]> {
  return (await findDuePage(store, until, limitPerShard)).ids;
}

/**
 * Where each shard's reading goes on: `undefined` from its start, a key after it, `null`
 * read to its end (within the run's `until`).
 */
export type DueCursors = Array<Record<string, unknown> | null | undefined>;

/**
 * Up to `limitPerShard` due items of each shard, after `after` (see DueCursors), and where
 * each shard goes on from. Sessions come back as their ids; accounts keep their ACC# key.
 */
export async function findDuePage(store: Store, until: string, limitPerShard: number, after: DueCursors = []): Promise<{ ids: string[]; next: DueCursors }> {
  const pages = await Promise.all(Array.from({ length: DUE_SHARDS }, (_, shard) => after[shard] === null ? null : store.db.send(new QueryCommand({
    TableName: store.tableName,
    IndexName: DUE_INDEX,
    KeyConditionExpression: 'dueShard = :shard AND dueAt <= :until',
    ExpressionAttributeValues: { ':shard': `due#${shard}`, ':until': until },
    Limit: limitPerShard,
    ...(after[shard] ? { ExclusiveStartKey: after[shard]! } : {}),
  }))));
  const ids = pages.flatMap((page) => (page?.Items ?? []).map((item: Record<string, any>) => {
    const pk = String(item.pk);
    return pk.startsWith('SES#') ? pk.slice('SES#'.length) : pk;
  }));
  return { ids, next: pages.map((page) => page?.LastEvaluatedKey ?? null) };
}

export { plainItem };
