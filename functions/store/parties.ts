// Multi-party sessions (seed 000) on the table. Proposed → each party agrees → on the last
// agreement every party's most possible share is reserved, all or nothing, in ONE
// transaction over the party accounts, the session and the ledger: a party that cannot pay
// leaves nothing reserved from anyone. Every later step (update, final debit by outcome,
// release, expiry) is one such transaction too, so there is no partial state to recover.
// Transactions are right here: a game touches each account once per step, not a stream of
// charges, and DynamoDB retries (or we do) the rare conflict.
import { GetCommand, PutCommand, TransactWriteCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { dueShardOf, key, systemRequestId } from './table.js';
import { cancellationReasons, conditionFailedAt, withConflictRetry, type Store } from './db.js';
import { maxOpsOf, newNonce, opsFull, plainItem, ROOM_CONDITION } from './ops.js';
import { ledgerPut, stepEntry, type LedgerEntry } from './ledger.js';
import { markFinalized, REVISIT_MAX_MS } from './compaction.js';
import { getService, type Service } from './services.js';
import { coverShortfall, hasCover, MAX_COVER_TRIES, type Covered } from './cover.js';
import { lowBalanceAfter } from './serviceAccounts.js';
import { answerKey, answerPut, expiryNotice, keepAnswer, keepingSessionRefusal, expiryNoticePut, getSessionItem, replayOrConflict, requireSession, sessionIdFor, sessionView, type SessionItem } from './sessions.js';
import { giveBackPastLimitOf, logGiveBackFailure } from './allotments.js';
import { USABLE_CONDITION, usableAt, type AccountItem, type OpEntry, type StoredAnswer } from './accounts.js';
import { ChargingError, fail, reusedRequestId } from '../domain/errors.js';
import { optimisticGrant, type Requested } from '../domain/reservation.js';
import { apportion, charges, chargesWithoutOutcome, mostPossibleShares, validatePrinciple, type Outcome, type Principle } from '../domain/parties.js';
import { MAX_BALANCE_MINOR, priceOf } from '../domain/rating.js';
import { nextDueAt } from '../domain/combined.js';
import { isOpen, releaseClosed, sessionClosed, shownState } from '../domain/session.js';

export interface PartyState {
  accountId: string;
  agreedAt?: string;
  holdMinor: number;
  chargedMinor: number;
  /** What refunds gave back to this party of what it was charged. */
  refundedMinor?: number;
}

export interface ProposeCommand {
  requestId: string;
  parties: string[];
  principle: Principle;
  clientId: string;
  serviceId: string;
  requested: Requested;
}

const addSeconds = (at: string, seconds: number) => new Date(Date.parse(at) + seconds * 1000).toISOString();

// ------------------------------------------------------------------------------ propose

export async function proposePartySession(store: Store, command: ProposeCommand, bodyHash: string): Promise<StoredAnswer> {
  const sessionId = sessionIdFor(command.requestId);
  let service: Service;
  let requestedUnits = 0;
  try {
    // Inside: an unknown service is a refusal like the others (a reuse of the requestId with
    // another body is idempotency_conflict, not 404).
    service = await getService(store, command.serviceId);
    validatePrinciple(command.principle, command.parties);
    // { amount } is the units it buys at the service's price, as for a plain reserve.
    requestedUnits = optimisticGrant(command.requested, service.price)?.units ?? fail('validation_failed', 'requested must be at least one unit');
    holdsFit(priceOf(requestedUnits, service.price), command.parties.length);
    const currencies: Record<string, string> = {};
    for (const accountId of command.parties) {
      const found = await store.db.send(new GetCommand({ TableName: store.tableName, Key: key.account(accountId), ProjectionExpression: 'pk, #currency', ExpressionAttributeNames: { '#currency': 'currency' } }));
      if (!found.Item) fail('not_found', `account ${accountId} does not exist`);
      currencies[accountId] = found.Item!.currency as string;
    }
    // One charge is apportioned among the parties (and a refund back): it must be one currency.
    if (new Set(Object.values(currencies)).size > 1) {
      fail('conflict', `the parties' accounts are in different currencies (${command.parties.map((p) => `${p} ${currencies[p]}`).join(', ')}): a multi-party session needs one`, { currencies });
    }
  } catch (error) {
    // A refusal may meet a session already proposed under this requestId: a repeat is answered
    // as before (the price may have changed since), another body is idempotency_conflict. Only
    // refusals pay this read.
    if (!(error instanceof ChargingError)) throw error;
    const existing = await getSessionItem(store, sessionId);
    if (!existing) throw error;
    return replayOrConflict(existing, command.requestId, bodyHash) ?? reusedRequestId(command.requestId);
  }
  const at = store.now().toISOString();
  const validUntil = addSeconds(at, service.validitySeconds); // the parties have this long to agree
  const session: SessionItem = {
    sessionId, state: 'pending_agreement', accountId: command.parties[0]!, chargedAccountId: command.parties[0]!,
    clientId: command.clientId, serviceId: command.serviceId, unit: service.unit, price: service.price,
    multiSessionId: sessionId, validitySeconds: service.validitySeconds,
    interimIntervalSeconds: service.interimIntervalSeconds,
    ...(service.establishedInterimIntervalSeconds ? { establishedInterimIntervalSeconds: service.establishedInterimIntervalSeconds } : {}),
    seq: 0, hold: { seq: 0, holdMinor: 0, grantedUnits: 0, usedUnits: 0, chargedMinor: 0 },
    validUntil, createdAt: at, lastUpdateAt: at, refundedMinor: 0, returnedMinor: 0, answers: {},
    parties: command.parties.map((accountId) => ({ accountId, holdMinor: 0, chargedMinor: 0 })),
    principle: command.principle, requested: { units: requestedUnits },
  };
  const answer: StoredAnswer = { status: 201, body: sessionView(session) };
  session.answers[answerKey(command.requestId)] = { h: bodyHash, answer };
  try {
    await store.db.send(new PutCommand({
      TableName: store.tableName,
      Item: { ...key.session(sessionId), ...session, dueShard: dueShardOf(sessionId), dueAt: validUntil },
      ConditionExpression: 'attribute_not_exists(pk)',
    }));
  } catch (error) {
    if ((error as Error).name !== 'ConditionalCheckFailedException') throw error;
    return replayOrConflict(await requireSession(store, sessionId), command.requestId, bodyHash) ?? fail('idempotency_conflict', 'requestId reused');
  }
  return answer;
}

// -------------------------------------------------------------------------------- agree

export const agree = (store: Store, sessionId: string, command: { requestId: string; accountId: string }, bodyHash: string) =>
  keepingSessionRefusal(store, sessionId, command.requestId, bodyHash, () => agreeOnce(store, sessionId, command, bodyHash));

async function agreeOnce(store: Store, sessionId: string, command: { requestId: string; accountId: string }, bodyHash: string, attempt = 0): Promise<StoredAnswer> {
  // Each new attempt follows a change of the session (agreed, activated, lapsed): a few suffice.
  if (attempt >= 8) throw new ChargingError('temporarily_unavailable', `session ${sessionId} changed too often to agree; retry with the same requestId`);
  let session = await requireSession(store, sessionId, command.requestId);
  const previous = replayOrConflict(session, command.requestId, bodyHash);
  if (previous) return previous;
  if (!session.parties) fail('conflict', `session ${sessionId} is not a multi-party session`);
  const index = session.parties!.findIndex((p) => p.accountId === command.accountId);
  if (index < 0) fail('validation_failed', `${command.accountId} is not a party of session ${sessionId}`);
  if (session.state !== 'pending_agreement') {
    // Kept, so a repeat of this agreement is answered alike once the session has moved on.
    if (session.state === 'active') return keepAnswer(store, sessionId, command.requestId, bodyHash, { status: 200, body: sessionView(session) });
    sessionClosed(sessionId, session.state);
  }
  const at = store.now().toISOString();
  if (session.validUntil <= at) {
    // The proposal lapsed and the sweep has not closed it yet. It holds nothing, so nothing
    // is written here: the sweep closes it and publishes its session_expired (an agreement
    // that closed it would leave that notification unsent).
    sessionClosed(sessionId, 'expired');
  }
  if (!session.parties![index]!.agreedAt) {
    try {
      const result = await store.db.send(new UpdateCommand({
        TableName: store.tableName, Key: key.session(sessionId),
        UpdateExpression: `SET parties[${index}].agreedAt = :at`,
        ConditionExpression: `#state = :pending AND attribute_not_exists(parties[${index}].agreedAt)`,
        ExpressionAttributeNames: { '#state': 'state' },
        ExpressionAttributeValues: { ':at': at, ':pending': 'pending_agreement' },
        ReturnValues: 'ALL_NEW',
      }));
      session = result.Attributes as SessionItem;
    } catch (error) {
      if ((error as Error).name !== 'ConditionalCheckFailedException') throw error;
      session = await requireSession(store, sessionId, command.requestId); // agreed meanwhile (a duplicate) or activated
      if (session.state !== 'pending_agreement') return agreeOnce(store, sessionId, command, bodyHash, attempt + 1);
    }
  }
  if (!session.parties!.every((p) => p.agreedAt)) return keepAnswer(store, sessionId, command.requestId, bodyHash, { status: 200, body: sessionView(session) });
  return activate(store, session, command, bodyHash, attempt);
}

/** The last agreement: reserve every party's most possible share, all or nothing. */
async function activate(store: Store, session: SessionItem, command: { requestId: string; accountId: string }, bodyHash: string, attempt: number, covers = NO_COVERS): Promise<StoredAnswer> {
  const requestId = command.requestId;
  const parties = session.parties!;
  const grant = optimisticGrant(session.requested!, session.price)!;
  const shares = mostPossibleShares(session.principle!, parties.map((p) => p.accountId), grant.amountMinor);
  const at = store.now().toISOString();
  const validUntil = addSeconds(at, session.validitySeconds);
  const nextParties: PartyState[] = parties.map((p, i) => ({ ...p, holdMinor: shares[i]! }));
  const hold = { seq: 1, holdMinor: shares.reduce((a, b) => a + b, 0), grantedUnits: grant.units, usedUnits: 0, chargedMinor: 0 };
  const next: SessionItem = { ...session, state: 'active', seq: 1, parties: nextParties, hold, validUntil, lastUpdateAt: at };
  const answer: StoredAnswer = { status: 200, body: sessionView(next) };
  const result = await partyTransaction(store, session, {
    kind: 'activate', requestId, bodyHash, at, next, answer,
    moves: parties.map((p, i) => ({ accountId: p.accountId, chargeMinor: 0, newHoldMinor: shares[i]!, grantedUnits: grant.units })),
  });
  if (result.ok) return answer;
  // The session changed (a concurrent agreement activated it) or lapsed: answer for what it is now.
  if (result.refusedParty === undefined) return agreeOnce(store, session.sessionId, command, bodyHash, attempt + 1);
  // Nothing was reserved from anyone. The refusal is the answer to this request; the session
  // stays proposed, so the parties may top up and agree again (a new requestId) before validUntil.
  const refused = result.refusedParty;
  // A short party is covered as its charges are, then the agreement tries again.
  const covered = await coverParty(store, session, refused, covers, parties.length);
  if (covered?.retry) return activate(store, session, command, bodyHash, attempt, coveredOnce(covers, refused!.accountId, covered));
  if (covered?.taken === 'inactive') refused.reason = 'inactive';
  const problem = refused.reason === 'not_found'
    ? { status: 404, body: { code: 'not_found', detail: `account ${refused.accountId} does not exist`, accountId: refused.accountId } }
    : refused.reason === 'inactive'
      ? { status: 403, body: { code: 'account_inactive', detail: `party ${refused.accountId} is suspended or expired`, accountId: refused.accountId } }
      : refused.reason === 'full'
      ? { status: 409, body: { code: 'conflict', detail: `party ${refused.accountId} has ${maxOpsOf(store)} operations open or awaiting cleanup`, accountId: refused.accountId } }
      : { status: 402, body: { code: 'insufficient_credit', detail: `party ${refused.accountId} cannot pay its most possible share of ${refused.needMinor}`, accountId: refused.accountId, finalUnitAction: 'terminate' } };
  return keepAnswer(store, session.sessionId, requestId, bodyHash, problem);
}

// ---------------------------------------------------------------- the one transaction

interface Move { accountId: string; chargeMinor: number; newHoldMinor: number; grantedUnits: number }

interface PartyStep {
  kind: 'activate' | 'update' | 'debit' | 'release' | 'expire';
  requestId: string;
  bodyHash: string;
  at: string;
  next: SessionItem;
  answer: StoredAnswer | null;
  moves: Move[];
  /** An expiry's session_expired to each party, written in the same transaction (see partyExpiryNotices). */
  notices?: Array<ReturnType<typeof expiryNotice>>;
}

type RefusedParty = { accountId: string; reason: 'not_found' | 'inactive' | 'full' | 'insufficient'; needMinor: number; account?: AccountItem };
type StepResult = { ok: true } | { ok: false; refusedParty?: RefusedParty };

/**
 * How often a request's step asked cover in all (at most MAX_COVER_TRIES, as a charge's),
 * and how many sponsor transfers it has seen for each party (its cover key).
 */
type Covers = { asked: number; byParty: Readonly<Record<string, number>> };
const NO_COVERS: Covers = { asked: 0, byParty: {} };
const coveredOnce = (covers: Covers, accountId: string, covered: Covered): Covers =>
  ({ asked: covers.asked + 1, byParty: covered.retry && covered.gave ? { ...covers.byParty, [`a:${accountId}`]: (covers.byParty[`a:${accountId}`] ?? 0) + 1 } : covers.byParty });

/**
 * A party refused for money is covered as its charges are (its family, its sponsors:
 * coverShortfall), at the last agreement and on an update alike; each party may be the short
 * one in turn (a first look each, of `partyCount`), and asked again when concurrent charges
 * took what came. Null: nobody was asked.
 */
async function coverParty(store: Store, session: SessionItem, refused: RefusedParty | undefined, covers: Covers, partyCount: number): Promise<Covered | null> {
  if (refused?.reason !== 'insufficient' || !refused.account || covers.asked >= MAX_COVER_TRIES || !hasCover(refused.account)) return null;
  // What asks: this step of the session (its seq; 0 for the agreement), for the party's n-th
  // sponsor transfer in this request. Copies of one request find the parties short in another
  // order, so the key counts this party's transfers, not all of them: each copy's first ask
  // for a party is the same key, and the sponsor pays it once (fails before: copies of the last
  // agreement made a sponsor pay a party's shortfall twice; review 4). Transfers, not asks:
  // a copy whose ask brought the family's idle money back asks the sponsor under the same key
  // as one that asked it at once (cover.ts).
  const nth = covers.byParty[`a:${refused.accountId}`] ?? 0;
  return coverShortfall(store, refused.account, refused.needMinor - refused.account.available, `${session.sessionId}:${session.seq}:${refused.accountId}:#${nth}`, covers.asked < partyCount, covers.asked);
}

async function partyTransaction(store: Store, session: SessionItem, step: PartyStep): Promise<StepResult> {
  const parties = session.parties!;
  const done = step.kind === 'debit' ? 'closed' : step.kind === 'release' ? 'released' : step.kind === 'expire' ? 'expired' : undefined;
  const ledger: LedgerEntry[] = [];
  const nonce = newNonce(); // one per step: each account's entry of it is that account's own
  const accountUpdates = step.moves.map((move, i) => {
    const old = parties[i]!;
    const reservedDelta = move.newHoldMinor - old.holdMinor;
    const availableDelta = -move.chargeMinor - reservedDelta;
    const entry: OpEntry = {
      seq: step.next.seq, amt: move.newHoldMinor, gu: move.grantedUnits, u: step.next.hold.usedUnits, chg: old.chargedMinor + move.chargeMinor,
      rid: step.requestId, h: step.bodyHash, n: nonce, at: step.at, vu: step.next.validUntil, ...(done ? { done } : {}),
    } as OpEntry;
    ledger.push(...stepEntry(
      { accountId: move.accountId, sessionId: session.sessionId, requestId: step.requestId, at: step.at, seq: step.next.seq },
      { chargeMinor: move.chargeMinor, reservedDelta, expiry: step.kind === 'expire' },
    ));
    const need = -availableDelta;
    const conditions = ['attribute_exists(pk)'];
    const values: Record<string, unknown> = { ':db': -move.chargeMinor, ':dr': reservedDelta, ':da': availableDelta, ':entry': entry };
    const names: Record<string, string> = { '#op': session.sessionId };
    if (need > 0) { conditions.push('available >= :need'); values[':need'] = need; }
    const sets = ['balance = balance + :db', 'reserved = reserved + :dr', 'available = available + :da', 'ops.#op = :entry'];
    if (step.kind === 'activate') {
      conditions.push('attribute_not_exists(ops.#op)', USABLE_CONDITION, ROOM_CONDITION);
      values[':maxOps'] = maxOpsOf(store);
      names['#status'] = 'status';
      values[':active'] = 'active';
      values[':now'] = step.at;
      // The account's due mark, as for any open operation (ops.ts): the sweep's visits remove
      // the party entries once the session is over, whoever finished it.
      sets.push('dueShard = if_not_exists(dueShard, :shard)', 'dueAt = if_not_exists(dueAt, :look)');
      values[':shard'] = dueShardOf(move.accountId);
      values[':look'] = new Date(Date.parse(step.at) + REVISIT_MAX_MS).toISOString();
    } else {
      conditions.push('ops.#op.seq = :seq');
      values[':seq'] = session.seq;
      // An update that answers a grant (its hold grows, or units of the cumulative grant are
      // left, which it grants again with a new validUntil) needs every party able to spend, as
      // a plain session's grant (fails before: an expired party's hold grew with every update,
      // review 4; its grant grew, review 23 of stop 28; what was left was granted again, 200
      // with 900 units, review 26). Not the step that records a refused update's usage: its
      // answer is the refusal.
      if (step.kind === 'update' && step.answer?.status === 200 && (reservedDelta > 0 || step.next.hold.grantedUnits > step.next.hold.usedUnits)) {
        conditions.push(USABLE_CONDITION);
        names['#status'] = 'status';
        values[':active'] = 'active';
        values[':now'] = step.at;
      }
    }
    return { Update: {
      TableName: store.tableName, Key: key.account(move.accountId),
      UpdateExpression: `SET ${sets.join(', ')}`,
      ConditionExpression: conditions.join(' AND '), ExpressionAttributeNames: names, ExpressionAttributeValues: values,
      ReturnValuesOnConditionCheckFailure: 'ALL_OLD' as const,
    }, need };
  });
  const closing = !!done;
  const sessionUpdate = { Update: {
    TableName: store.tableName, Key: key.session(session.sessionId),
    UpdateExpression: `SET #state = :state, seq = :next, parties = :parties, #hold = :hold, validUntil = :vu, lastUpdateAt = :at, returnedMinor = :returned${closing ? ' REMOVE dueShard, dueAt' : ', dueShard = :shard, dueAt = :due'}`,
    // A proposal is agreed to only within its validUntil (the sweep expires it after).
    ConditionExpression: `#state = :was AND seq = :seq${step.kind === 'activate' ? ' AND validUntil > :at' : ''}`,
    ExpressionAttributeNames: { '#state': 'state', '#hold': 'hold' },
    ExpressionAttributeValues: {
      ':state': step.next.state, ':next': step.next.seq, ':parties': step.next.parties, ':hold': step.next.hold, ':vu': step.next.validUntil,
      ':at': step.at, ':returned': step.next.returnedMinor, ':was': session.state, ':seq': session.seq,
      // An active game is due at its next interim report (the sweep asks the game server for
      // it, as for any session), a proposal only at its expiry.
      ...(closing ? {} : { ':shard': dueShardOf(session.sessionId), ':due': step.next.state === 'active' ? nextDueAt(step.at, session.interimIntervalSeconds, step.next.validUntil) : step.next.validUntil }),
    },
  } };
  try {
    await withConflictRetry(() => store.db.send(new TransactWriteCommand({
      TransactItems: [
        ...accountUpdates.map(({ Update }) => ({ Update })), sessionUpdate, ...ledger.map((e) => ledgerPut(store, e)),
        // The session's seq condition makes the step once; its answer only if none is kept yet:
        // a concurrent duplicate of this request may have kept a refusal (keepAnswer) while
        // this copy was covered, and a request has one answer (fails before: one copy answered
        // 402 while the others activated the game; review). The step is then not taken, and
        // the caller replays what was kept.
        ...(step.answer ? [answerPut(store, session.sessionId, step.requestId, step.bodyHash, step.answer, true)] : []),
        ...(step.notices ?? []).map((notice) => expiryNoticePut(store, notice)),
      ],
    })));
  } catch (error) {
    const reasons = cancellationReasons(error);
    if (!reasons) throw error;
    const refusedAt = reasons.findIndex((r, i) => i < accountUpdates.length && r.Code === 'ConditionalCheckFailed');
    if (reasons[accountUpdates.length]?.Code === 'ConditionalCheckFailed' || refusedAt < 0) return { ok: false };
    const account = plainItem(reasons[refusedAt]!.Item) as AccountItem | undefined;
    const accountId = step.moves[refusedAt]!.accountId;
    const reason = !account ? 'not_found' : !usableAt(account, step.at) ? 'inactive' : step.kind === 'activate' && opsFull(store, account, session.sessionId) ? 'full' : 'insufficient';
    if (step.kind !== 'activate' && account?.ops?.[session.sessionId]?.seq !== session.seq) return { ok: false }; // moved on
    return { ok: false, refusedParty: { accountId, reason, needMinor: accountUpdates[refusedAt]!.need, account } };
  }
  if (closing) step.moves.forEach((m) => markFinalized(store, m.accountId, session.sessionId, { n: nonce }));
  // A party whose hold came back past a lowered consumption limit gives the excess back to its
  // main account (one read per such party, at the game's end only; fails before: spent at
  // once past the limit, review 26 of stop 28).
  if (closing) {
    await Promise.all(step.moves.map((m, i) => (m.chargeMinor < parties[i]!.holdMinor
      ? giveBackPastLimitOf(store, m.accountId).catch(logGiveBackFailure(m.accountId)) : undefined)));
  }
  // Each party whose available money went down: its threshold, as a plain charge's (fails
  // before: a game never told a party it crossed; review 8). One read each, only then.
  await Promise.all(accountUpdates.map(({ need }, i) => (need > 0 ? lowBalanceAfter(store, step.moves[i]!.accountId, need, 'a game\'s step') : undefined)));
  return { ok: true };
}

// ------------------------------------------------------------- steps of an active session

export async function partyStep(store: Store, session: SessionItem, kind: 'update' | 'debit' | 'release',
  command: { requestId: string; usedUnits: number; requested?: Requested; outcome?: Outcome }, bodyHash: string, covers = NO_COVERS): Promise<StoredAnswer> {
  const previous = replayOrConflict(session, command.requestId, bodyHash);
  if (previous) return previous;
  if (session.state === 'pending_agreement') {
    // Kept (keepingSessionRefusal): its repeat once the game started is refused alike.
    if (kind !== 'release') fail('conflict', `session ${session.sessionId} waits for every party to agree`);
    const released = await closePending(store, session, 'released', command.requestId, bodyHash);
    // The last agreement came first: the release releases the game it started (fails before:
    // 409 conflict, kept nowhere, so its repeat released the game; review 4).
    return released === 'started' ? partyStep(store, await requireSession(store, session.sessionId, command.requestId), kind, command, bodyHash, covers) : released;
  }
  if (session.state !== 'active') (kind === 'release' ? releaseClosed : sessionClosed)(session.sessionId, session.state);
  const parties = session.parties!;
  const ids = parties.map((p) => p.accountId);
  const usedUnits = session.hold.usedUnits + (kind === 'release' ? 0 : command.usedUnits);
  if (!Number.isSafeInteger(usedUnits)) fail('validation_failed', `used.units brings the session's usage past 2^53-1 units`);
  const at = store.now().toISOString();
  // Usage beyond what was granted is never charged beyond what was reserved.
  const cost = recordedCost(session, usedUnits);
  let moves: Move[];
  let next: SessionItem;
  let answer: StoredAnswer;
  if (kind === 'update') {
    // { amount } is the units it buys, as on a plain session, where one that buys no block is
    // refused before anything is written (fails before: 200 granting nothing; review 21 of stop 28).
    const wanted = !command.requested ? 0 : 'units' in command.requested ? command.requested.units
      : optimisticGrant(command.requested, session.price)?.units ?? fail('validation_failed', `requested: ${command.requested.amount} does not buy one block of ${session.serviceId}`);
    const grantedUnits = Math.max(session.hold.grantedUnits, usedUnits + wanted);
    if (!Number.isSafeInteger(grantedUnits)) fail('validation_failed', `requested.units brings the session's grant past 2^53-1 units`);
    holdsFit(priceOf(grantedUnits, session.price), ids.length);
    const shares = mostPossibleShares(session.principle!, ids, priceOf(grantedUnits, session.price));
    // Money moves only at the end (who pays depends on the outcome): an update grows the
    // holds, never shrinks them, and the grant is all the holds cover: the usage so far plus
    // at least what was asked (see the README: a game's grant is cumulative).
    moves = parties.map((p, i) => ({ accountId: p.accountId, chargeMinor: 0, newHoldMinor: Math.max(p.holdMinor, shares[i]!), grantedUnits }));
    next = { ...session, seq: session.seq + 1, lastUpdateAt: at, validUntil: addSeconds(at, session.validitySeconds),
      parties: parties.map((p, i) => ({ ...p, holdMinor: moves[i]!.newHoldMinor })),
      hold: { ...session.hold, seq: session.seq + 1, grantedUnits, usedUnits, holdMinor: moves.reduce((a, m) => a + m.newHoldMinor, 0) } };
    answer = { status: 200, body: { granted: { units: grantedUnits - usedUnits, amount: priceOf(grantedUnits, session.price) - cost }, validUntil: next.validUntil, interimIntervalSeconds: session.interimIntervalSeconds, charged: { units: usedUnits, amount: 0 }, parties: sessionView(next).parties } };
  } else {
    // A release has no outcome: the usage the updates recorded is charged all the same (on a
    // plain session each update charged it already), by the principle; loser-pays as split.
    const split = kind === 'release' ? chargesWithoutOutcome(session.principle!, ids, cost) : charges(session.principle!, ids, cost, command.outcome);
    const state = kind === 'release' ? 'released' : 'closed';
    ({ moves, next } = closingStep(session, split, state, at, usedUnits));
    answer = { status: 200, body: { ...shownState(state), charged: { units: usedUnits, amount: next.hold.chargedMinor }, returned: { amount: next.returnedMinor }, ...(kind === 'release' ? { refunded: { amount: 0 } } : {}), parties: sessionView(next).parties } };
  }
  const result = await partyTransaction(store, session, { kind, requestId: command.requestId, bodyHash, at, next, answer, moves });
  if (result.ok) return answer;
  const refused = result.refusedParty;
  // A party short of a larger share is covered as its charges are; then the step is decided
  // again on the session as it is.
  const covered = await coverParty(store, session, refused, covers, parties.length);
  if (covered?.retry) {
    return partyStep(store, await requireSession(store, session.sessionId, command.requestId), kind, command, bodyHash, coveredOnce(covers, refused!.accountId, covered));
  }
  if (refused && kind === 'update') {
    // No hold can grow, but the reported usage is recorded all the same, as on a plain
    // session (else a client that then terminates with nothing more used would not pay for
    // it): the same step with the holds as they are, which needs no money. The refusal is
    // the step's answer, so a repeat is refused alike even after a top-up.
    const refusal: StoredAnswer = refused.reason === 'inactive'
      ? { status: 403, body: { code: 'account_inactive', detail: `party ${refused.accountId} may not spend (suspended, or past its validity): no new grant; the reported usage was recorded`, accountId: refused.accountId, charged: { units: usedUnits, amount: 0 } } }
      : { status: 402, body: { code: 'insufficient_credit', detail: `party ${refused.accountId} cannot pay a larger share; the reported usage was recorded`, accountId: refused.accountId, finalUnitAction: 'terminate', charged: { units: usedUnits, amount: 0 } } };
    // It is a report like any other: the game lives validitySeconds from it, as after a grant.
    const usageOnly: SessionItem = { ...session, seq: session.seq + 1, lastUpdateAt: at, validUntil: addSeconds(at, session.validitySeconds), hold: { ...session.hold, seq: session.seq + 1, usedUnits } };
    const held = parties.map((p) => ({ accountId: p.accountId, chargeMinor: 0, newHoldMinor: p.holdMinor, grantedUnits: session.hold.grantedUnits }));
    if ((await partyTransaction(store, session, { kind, requestId: command.requestId, bodyHash, at, next: usageOnly, answer: refusal, moves: held })).ok) return refusal;
  }
  // The session moved (a duplicate, the sweep): decide again on what it is now.
  return partyStep(store, await requireSession(store, session.sessionId, command.requestId), kind, command, bodyHash, covers);
}

/**
 * The parties' holds for a grant worth `amountMinor` must sum to a safe integer: under
 * loser-pays each party holds the whole of it, and rounding adds up to a cent each (fails
 * before: a 500 from the SDK's marshaller at the last agreement; review 21 of stop 28).
 */
function holdsFit(amountMinor: number, partyCount: number): void {
  if (!Number.isSafeInteger(amountMinor * partyCount + partyCount)) {
    fail('validation_failed', `requested: ${partyCount} parties would together hold more than 2^53-1 minor units`);
  }
}

/**
 * The last step of an active party session: each party pays `split[i]` out of its hold and
 * gets the rest of it back.
 */
function closingStep(session: SessionItem, split: number[], state: 'closed' | 'released' | 'expired', at: string, usedUnits: number): { moves: Move[]; next: SessionItem } {
  const parties = session.parties!;
  const moves = parties.map((p, i) => ({ accountId: p.accountId, chargeMinor: split[i]!, newHoldMinor: 0, grantedUnits: 0 }));
  const returned = parties.reduce((sum, p, i) => sum + p.holdMinor - split[i]!, 0);
  const next: SessionItem = { ...session, state, seq: session.seq + 1, lastUpdateAt: at, returnedMinor: returned,
    parties: parties.map((p, i) => ({ ...p, holdMinor: 0, chargedMinor: p.chargedMinor + split[i]! })),
    hold: { ...session.hold, seq: session.seq + 1, usedUnits, holdMinor: 0, grantedUnits: 0, chargedMinor: session.hold.chargedMinor + split.reduce((a, b) => a + b, 0) } };
  return { moves, next };
}

/** What the usage recorded so far costs: never more than what was granted (and so reserved). */
const recordedCost = (session: SessionItem, usedUnits: number) =>
  Math.min(priceOf(usedUnits, session.price), priceOf(session.hold.grantedUnits, session.price));

/**
 * A refund of a multi-party session that is over (see refundSession): `amount` of what it charged goes back to
 * the parties in proportion to what each paid and has not had back (the largest-remainder
 * method: the parts add up to `amount` exactly, and none passes what its party paid). One
 * transaction: the session (its refundedMinor as read, so concurrent refunds never give back
 * more than was charged), each paying party's account and ledger entry, the answer.
 */
export async function refundPartySession(store: Store, session: SessionItem, command: { requestId: string; amount: number; reason?: string }, bodyHash: string): Promise<StoredAnswer | 'moved'> {
  const parties = session.parties!;
  const owed = parties.map((p) => p.chargedMinor - (p.refundedMinor ?? 0));
  const left = owed.reduce((a, b) => a + b, 0);
  if (command.amount <= 0 || command.amount > left) {
    fail('conflict', `at most ${left} of what session ${session.sessionId} charged can still be refunded`, { refundable: left });
  }
  const parts = apportion(command.amount, owed);
  const at = store.now().toISOString();
  const refundedMinor = session.refundedMinor + command.amount;
  const nextParties = parties.map((p, i) => ({ ...p, refundedMinor: (p.refundedMinor ?? 0) + parts[i]! }));
  const answer: StoredAnswer = { status: 200, body: {
    refunded: { amount: command.amount }, refundedTotal: { amount: refundedMinor }, ...shownState(session.state),
    parties: parties.map((p, i) => ({ accountId: p.accountId, refunded: { amount: parts[i]! } })),
  } };
  const paying = parties.map((p, i) => ({ accountId: p.accountId, part: parts[i]! })).filter((x) => x.part > 0);
  const items = [
    { Update: {
      TableName: store.tableName, Key: key.session(session.sessionId),
      UpdateExpression: 'SET refundedMinor = :total, parties = :parties',
      ConditionExpression: 'refundedMinor = :before',
      ExpressionAttributeValues: { ':total': refundedMinor, ':parties': nextParties, ':before': session.refundedMinor },
    } },
    ...paying.map(({ accountId, part }) => ({ Update: {
      TableName: store.tableName, Key: key.account(accountId),
      UpdateExpression: 'SET balance = balance + :a, available = available + :a',
      ConditionExpression: 'attribute_exists(pk) AND balance <= :most', // no balance past MAX_BALANCE_MINOR, as for a top-up
      ExpressionAttributeValues: { ':a': part, ':most': MAX_BALANCE_MINOR - part },
    } })),
    ...paying.map(({ accountId, part }) => ledgerPut(store, {
      accountId, entryId: `${session.sessionId}:refund:${command.requestId}`, at, type: 'refund', amount: part, reservedDelta: 0,
      sessionId: session.sessionId, requestId: command.requestId, ...(command.reason ? { reason: command.reason } : {}),
    })),
    answerPut(store, session.sessionId, command.requestId, bodyHash, answer, true),
  ];
  const answerIndex = items.length - 1;
  try {
    await withConflictRetry(() => store.db.send(new TransactWriteCommand({ TransactItems: items as any })));
  } catch (error) {
    // The session moved (another refund), or this requestId got its answer meanwhile: the caller decides again.
    if (conditionFailedAt(error, 0) || conditionFailedAt(error, answerIndex)) return 'moved';
    if (paying.some((_, i) => conditionFailedAt(error, 1 + i))) fail('validation_failed', `amount: a party's balance would pass ${MAX_BALANCE_MINOR}`, { maxBalance: MAX_BALANCE_MINOR });
    throw error;
  }
  return answer;
}

/**
 * The sweep: expire an active party session (the recorded usage charged, the rest of every
 * hold back), or a proposal never agreed,
 * with its session_expired in the same transaction. False when the session moved on first.
 */
export async function expirePartySession(store: Store, session: SessionItem): Promise<boolean> {
  const at = store.now().toISOString();
  if (session.state === 'pending_agreement') {
    // The last party may agree between the sweep's read and this write: the session is then
    // active, not expired, and the next sweep sees it as it is. Not a failure of the run.
    const notices = partyExpiryNotices(session, at, session.parties!.map(() => 0));
    return closePending(store, session, 'expired', systemRequestId(`expire:${session.seq}`), 'sweep', notices).then(
      (answer) => answer !== 'started' && answer.status === 200,
      (error) => { if (error instanceof ChargingError && error.code === 'conflict') return false; throw error; });
  }
  // The usage the updates recorded is charged, as a release charges it (loser-pays, with no
  // outcome, as split); every hold's rest goes back.
  const usedUnits = session.hold.usedUnits;
  const split = chargesWithoutOutcome(session.principle!, session.parties!.map((p) => p.accountId), recordedCost(session, usedUnits));
  const { moves, next } = closingStep(session, split, 'expired', at, usedUnits);
  const notices = partyExpiryNotices(session, at, session.parties!.map((p, i) => p.holdMinor - split[i]!));
  return (await partyTransaction(store, session, { kind: 'expire', requestId: systemRequestId(`expire:${session.seq}`), bodyHash: 'sweep', at, next, answer: null, moves, notices })).ok;
}

/**
 * Every party is told its game expired, with what came back to it (its hold's rest), each
 * notice under an id of its own: a consumer that drops repeated ids must get every party's
 * (fails before: all carried `expired:<sessionId>`; review 8 of stop 25).
 */
function partyExpiryNotices(session: SessionItem, at: string, returnedEach: number[]) {
  return session.parties!.map((p, i) => {
    const notice = expiryNotice({ ...session, chargedAccountId: p.accountId }, at, returnedEach[i]!);
    return { ...notice, id: `${notice.id}:${p.accountId}` };
  });
}

/**
 * A proposal that never started holds nothing: closing it is one conditional write.
 * `started`: a release found the game started by the last agreement meanwhile (the caller
 * releases it as an active game).
 */
async function closePending(store: Store, session: SessionItem, state: 'expired' | 'released', requestId: string, bodyHash: string, notices: Array<ReturnType<typeof expiryNotice>> = []): Promise<StoredAnswer | 'started'> {
  const answer: StoredAnswer = { status: 200, body: { ...shownState(state), refunded: { amount: 0 }, returned: { amount: 0 } } };
  try {
    await store.db.send(new TransactWriteCommand({
      TransactItems: [
        { Update: {
          TableName: store.tableName, Key: key.session(session.sessionId),
          UpdateExpression: 'SET #state = :state, lastUpdateAt = :at REMOVE dueShard, dueAt',
          ConditionExpression: '#state = :pending',
          ExpressionAttributeNames: { '#state': 'state' },
          ExpressionAttributeValues: { ':state': state, ':at': store.now().toISOString(), ':pending': 'pending_agreement' },
        } },
        answerPut(store, session.sessionId, requestId, bodyHash, answer),
        ...notices.map((notice) => expiryNoticePut(store, notice)),
      ],
    }));
  } catch (error) {
    if (!conditionFailedAt(error, 0)) throw error;
    const now = await requireSession(store, session.sessionId, requestId);
    const replay = replayOrConflict(now, requestId, bodyHash);
    if (replay) return replay;
    // A release that the last agreement beat goes on to release the game (the caller); one the
    // sweep or another release beat is refused as any release of a closed session.
    if (state === 'released' && now.state === 'active') return 'started';
    if (state === 'released' && !isOpen(now.state)) releaseClosed(session.sessionId, now.state);
    return fail('conflict', `session ${session.sessionId} is ${now.state}`);
  }
  return answer;
}

export { ChargingError };
