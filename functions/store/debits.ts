// One-shot event charges (CCR-Event): debit directly, no reservation. Same commit point as
// a session step: the account write records `ops.evt:<requestId>`, so a retry that finds
// it finishes the request record instead of charging again. A debit whose handler died
// between the two writes and that nobody retries is recorded by the sweep (compaction.ts).
import { GetCommand, PutCommand, TransactWriteCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { key } from './table.js';
import { conditionFailedAt, isConditionFailure, lazyRead, withConflictRetry, type Store } from './db.js';
import { adoptFounder, founderToAdopt } from './multisession.js';
import { applyOp, applyOpWithRecord, knownMainAccount, newNonce, oneWriteAllowed, refusalOf, tooManyOps } from './ops.js';
import { ledgerPut } from './ledger.js';
import { FINISHED_AGE_MS, markFinalized } from './compaction.js';
import { serviceFor } from './services.js';
import { getAccountItem, keptRatingRefusal, type AccountItem, type OpEntry, type StoredAnswer } from './accounts.js';
import { ChargingError, fail, keptRefusal, reusedRequestId } from '../domain/errors.js';
import { priceOrNull, unitsAffordable } from '../domain/rating.js';
import { finalUnitActionOf } from '../domain/serviceAccount.js';
import { isServiceAccountId, mainAccountRoute, otherUnitDetail, publicAccountId, serviceAccountId, type ServiceAccountItem, type ServiceAccountRef } from './serviceAccounts.js';

export interface DirectDebitCommand {
  requestId: string;
  accountId: string;
  clientId: string;
  serviceId: string;
  units?: number;
  amount?: number;
  /** The AS of seed 001: an event that belongs to a call's multi-session. */
  multiSessionId?: string;
}

async function requestRecord(store: Store, requestId: string): Promise<Record<string, any> | null> {
  const result = await store.db.send(new GetCommand({ TableName: store.tableName, Key: key.request(requestId), ConsistentRead: true }));
  return result.Item ?? null;
}

/**
 * The answer of a request answered before. `settleStray`: first give back a debit of it that
 * an earlier attempt left on the account the record names, under another nonce: one whose
 * record write failed unseen (a timeout) because the request was answered already. It can
 * never be recorded, and a repeat that replays without writing (a process that did not know
 * where the request routes) would otherwise leave it to the sweep's next visit.
 */
async function storedAnswer(store: Store, requestId: string, bodyHash: string, settleStray = false): Promise<StoredAnswer | null> {
  const record = await requestRecord(store, requestId);
  if (!record) return null;
  if (record.h !== bodyHash) reusedRequestId(requestId);
  if (settleStray && record.kind === 'debit' && typeof record.accountId === 'string') await settleStrays(store, record, `evt:${requestId}`, [record.accountId]);
  return record.answer as StoredAnswer;
}

export async function directDebit(store: Store, command: DirectDebitCommand, bodyHash: string): Promise<StoredAnswer> {
  try {
    // A game refuses members; a repeat of this request, or a reuse of its id, is answered as such first.
    const founder = command.multiSessionId ? await founderToAdopt(store, command.multiSessionId).catch(async (error) => {
      if (await storedAnswer(store, command.requestId, bodyHash)) return null;
      throw error;
    }) : null;
    const answer = await debitOnce(store, command, bodyHash);
    if (founder && answer.status === 201) await adoptFounder(store, founder);
    return answer;
  } catch (error) {
    const answer = keptRefusal(error);
    if (!answer) throw error;
    return keepRefusal(store, command, bodyHash, answer, error);
  }
}

/**
 * An event charge refused by an account that exists is kept as its request record, so a
 * repeat is refused alike even after a top-up (the one write of a repeat fails on the record
 * and replays it). If a record exists already (a concurrent duplicate charged first), its
 * answer is the answer. A charge some attempt left on the account with no record of its own
 * is given back by the sweep (ensureDirectDebitRecorded: the record is not its).
 */
async function keepRefusal(store: Store, command: DirectDebitCommand, bodyHash: string, answer: StoredAnswer, refusal: unknown): Promise<StoredAnswer> {
  try {
    await store.db.send(new PutCommand({
      TableName: store.tableName,
      Item: { ...key.request(command.requestId), requestId: command.requestId, h: bodyHash, kind: 'refusal', accountId: command.accountId, at: store.now().toISOString(), answer },
      ConditionExpression: 'attribute_not_exists(pk)',
    }));
  } catch (error) {
    if (!isConditionFailure(error)) throw error;
    return (await storedAnswer(store, command.requestId, bodyHash))!;
  }
  throw refusal;
}

async function debitOnce(store: Store, command: DirectDebitCommand, bodyHash: string): Promise<StoredAnswer> {
  const service = await serviceFor(store, command.serviceId, () => storedAnswer(store, command.requestId, bodyHash));
  /**
   * A refusal against today's rating or routing (a PUT may have changed either since) first
   * looks for the request record: a repeat is answered as before, another body is
   * idempotency_conflict. Only refusals pay the read.
   */
  const refuse = async (code: 'validation_failed' | 'insufficient_credit' | 'conflict', detail: string, extra?: Record<string, unknown>) => {
    const replay = await storedAnswer(store, command.requestId, bodyHash);
    if (replay) return replay;
    // Kept (keptRatingRefusal).
    const refusal = new ChargingError(code, detail, extra);
    return keepRefusal(store, command, bodyHash, await keptRatingRefusal(store, command.accountId, refusal), refusal);
  };
  // { amount } is the units it buys at the service's price, as on a reserve (whole blocks;
  // what is charged is their price, never more than the amount).
  const units = command.units ?? (service.unit === 'money' ? command.amount! : unitsAffordable(command.amount!, service.price));
  if (units === 0) return refuse('validation_failed', `${command.amount} does not buy one block of ${command.serviceId} (${service.price.amountMinor} per ${service.price.perUnits} ${service.unit})`);
  // A price past 2^53-1 minor units is more than any account can hold (MAX_BALANCE_MINOR).
  const amountMinor = priceOrNull(units, service.price);
  if (amountMinor === null) return refuse('insufficient_credit', `${units} ${service.unit} of ${command.serviceId} cost more than any account can pay`, { finalUnitAction: 'terminate' });
  const opId = `evt:${command.requestId}`;
  const now = store.now();
  const dueAt = new Date(now.getTime() + FINISHED_AGE_MS).toISOString();
  let accountId = command.accountId;
  let entry: OpEntry = {
    seq: 1, amt: 0, gu: 0, u: units, chg: amountMinor, rid: command.requestId, h: bodyHash, n: newNonce(), at: now.toISOString(), done: 'charged',
    ...(command.multiSessionId ? { ms: command.multiSessionId, svc: command.serviceId, cl: command.clientId } : {}),
  };
  const movement = { balanceDelta: -amountMinor, reservedDelta: 0, availableDelta: -amountMinor };
  /** An attached account's main account, which pays (known to this process, or learnt from the write). */
  let payer = knownMainAccount(store, accountId) ?? undefined;
  /** Whose service account the event draws on, once routed (the message of a refusal names it). */
  let owner = command.accountId;
  /**
   * Charges `owner`'s service account `id` instead (seed 004), in its units: it holds the
   * service's own units and pays one for one, so an { amount } is the units it buys at the
   * service's price (`units`), as on a routed reserve (until stop 23, that many units: an
   * amount of 12 at 5 per SMS took 12 SMS). The refusal when it holds another unit, else null.
   */
  const routeTo = (id: string, routeOwner: string, ref: ServiceAccountRef): Promise<StoredAnswer> | null => {
    if (ref.unit !== service.unit) return refuse('conflict', otherUnitDetail(command.serviceId, service.unit, routeOwner, ref));
    accountId = id;
    owner = routeOwner;
    entry = { ...entry, u: units, chg: units, ...(entry.ms && routeOwner !== command.accountId ? { ac: command.accountId } : {}) };
    return null;
  };
  /** An attached account's event may draw on its main account's service account (see reserve's routeViaMain). */
  const routeViaMain = async (): Promise<StoredAnswer | null> => {
    if (isServiceAccountId(accountId)) return null; // routed already
    payer ??= knownMainAccount(store, command.accountId) ?? undefined;
    const route = payer ? await mainAccountRoute(store, command.accountId, payer, command.serviceId) : null;
    return route ? routeTo(route.id, route.owner, route.ref) : null;
  };
  const refusedViaMain = await routeViaMain();
  if (refusedViaMain) return refusedViaMain;
  /** Whether the one write looked for the request's record (and found none of its own). */
  let recordChecked = false;
  if (oneWriteAllowed(store, accountId)) {
    // The charge and its record in one transaction (see ops.ts, one-write operations).
    const written = await applyOpWithRecord(store, accountId, opId, { kind: 'new', dueAt, serviceId: command.serviceId, mainAccountId: payer ?? null }, movement, entry, recordItems(store, accountId, entry, payer));
    if (written.outcome === 'applied') {
      markFinalized(store, accountId, opId, entry);
      return answerOf(accountId, entry, payer);
    }
    if (written.outcome === 'record_refused') {
      const replay = await storedAnswer(store, command.requestId, bodyHash, true);
      if (replay) return replay;
    }
    // Anything else: the two-write way below decides, knowing the account's main account if
    // the refusal told it.
    recordChecked = written.outcome === 'fallback' && written.recordChecked;
    if (payer === undefined) {
      const refused = await routeViaMain();
      if (refused) return refused;
    }
  }
  // The request's record, read only on a refusal: afresh before anyone is asked to cover it,
  // and the replay below answers from the latest read.
  const earlierAnswer = lazyRead(() => storedAnswer(store, command.requestId, bodyHash, true));
  const answeredBefore = async () => !!(await earlierAnswer(true));
  // A repeat of an event answered before is answered before anything is written (see
  // reserve: the charge taken and given back refused others meanwhile; review 1). What an
  // earlier attempt of it charged and left (it died, or timed out, before it learnt the
  // record existed) goes back first, as when the retry wrote first and found it: on the
  // account it charges, and on the service account that account routes the service to.
  if (!recordChecked) {
    const record = await requestRecord(store, command.requestId);
    if (record) {
      const charged = [accountId, ...(isServiceAccountId(accountId) ? [] : [serviceAccountId(accountId, command.serviceId)]), ...(record.kind === 'debit' && typeof record.accountId === 'string' ? [record.accountId] : [])];
      await settleStrays(store, record, opId, [...new Set(charged)]);
      if (record.h !== bodyHash) reusedRequestId(command.requestId);
      return record.answer as StoredAnswer;
    }
  }
  const charge = () => isServiceAccountId(accountId)
    ? applyOp(store, accountId, opId, { kind: 'new', dueAt, answeredBefore }, { balanceDelta: -entry.chg, reservedDelta: 0, availableDelta: -entry.chg }, entry)
    : applyOp(store, accountId, opId, { kind: 'new', dueAt, serviceId: command.serviceId, answeredBefore, mainAccountId: payer ?? null }, movement, entry);
  let result = await charge();
  if (!result.ok && result.otherMain) {
    // An attached account this process had not seen: with its main account known, look at
    // that one's service accounts first.
    payer = result.account!.mainAccountId;
    const refused = await routeViaMain();
    if (refused) return refused;
    result = await charge();
  }
  if (!result.ok && result.route) {
    // The owner keeps a service account for this service (seed 004): it pays in units, and
    // the answer names the owner.
    const refused = routeTo(result.route, command.accountId, result.account!.serviceAccounts![command.serviceId]!);
    if (refused) return refused;
    payer = undefined;
    result = await charge();
  }
  if (!result.ok) {
    const refusal = refusalOf(result.account, opId, now);
    if (refusal === 'exists') {
      const recorded = result.account!.ops[opId]!;
      if (recorded.h !== bodyHash) reusedRequestId(command.requestId);
      entry = recorded;
    } else {
      const replay = await earlierAnswer();
      if (replay) return replay;
      const routed = isServiceAccountId(accountId);
      const shown = routed ? `the ${command.serviceId} account of ${owner}` : `account ${command.accountId}`;
      if (refusal === 'not_found') fail('not_found', `${shown} does not exist`);
      if (refusal === 'account_inactive') fail('account_inactive', `${shown} is suspended or expired`);
      if (result.main === 'inactive') fail('account_inactive', `the main account of ${command.accountId} fails authorization`);
      if (result.full) tooManyOps(store, shown);
      const { action, redirectUrl } = finalUnitActionOf(routed ? result.account as ServiceAccountItem : undefined);
      fail('insufficient_credit', `${shown} cannot pay ${entry.chg}${routed ? ` ${service.unit}` : ''}`, { finalUnitAction: action, ...(redirectUrl ? { redirectUrl } : {}) });
    }
  }
  const answer = answerOf(accountId, entry, payer);
  try {
    await writeRecord(store, accountId, entry, payer);
  } catch (error) {
    if (!conditionFailedAt(error, 0)) throw error;
    // The request record exists. Unless it records this very debit (a concurrent duplicate
    // that recorded it first), the debit just taken is a second one: give it back. That is
    // the case of a replay after the first debit's entry left the account, and of a
    // requestId that belongs to another request.
    const record = await requestRecord(store, command.requestId);
    if (record?.n !== entry.n) await giveBack(store, accountId, entry);
    else markFinalized(store, accountId, opId, entry);
    const replay = await storedAnswer(store, command.requestId, bodyHash);
    if (replay) return replay;
    throw error;
  }
  markFinalized(store, accountId, opId, entry);
  return answer;
}

/**
 * The answer names the account the client knows (the owner of a service account) and the
 * service account charged; an attached account's charge names its main account, which pays.
 */
const answerOf = (accountId: string, entry: OpEntry, payer?: string): StoredAnswer => ({
  status: 201,
  body: {
    charged: { units: entry.u, amount: entry.chg }, chargedAccountId: payer ?? publicAccountId(accountId),
    ...(isServiceAccountId(accountId) ? { serviceAccount: accountId.slice(accountId.indexOf('~') + 1) } : {}),
  },
});

/**
 * Gives back the entries under `opId` on `accountIds` that are not the charge `record`
 * records (a record of another request, or of this one under another nonce): charges that
 * attempts of a request answered before took and left. One read per account, only on repeats.
 */
async function settleStrays(store: Store, record: Record<string, any>, opId: string, accountIds: string[]): Promise<void> {
  for (const accountId of accountIds) {
    const stray = (await getAccountItem(store, accountId))?.ops?.[opId];
    if (stray && !(record.kind === 'debit' && stray.n === record.n)) await giveBack(store, accountId, stray);
  }
}

/** Undoes a debit recorded only on the account (this very entry, by nonce). */
async function giveBack(store: Store, accountId: string, entry: OpEntry): Promise<boolean> {
  try {
    await store.db.send(new UpdateCommand({
      TableName: store.tableName, Key: key.account(accountId),
      UpdateExpression: 'SET balance = balance + :a, available = available + :a REMOVE ops.#op',
      ConditionExpression: 'ops.#op.n = :n',
      ExpressionAttributeNames: { '#op': `evt:${entry.rid}` }, ExpressionAttributeValues: { ':a': entry.chg, ':n': entry.n },
    }));
    return true;
  } catch (error) {
    if (!isConditionFailure(error)) throw error;
    return false;
  }
}

/** The request record and ledger entry of a debit the account already applied, in one transaction. */
async function writeRecord(store: Store, accountId: string, entry: OpEntry, payer: string | undefined): Promise<void> {
  await withConflictRetry(() => store.db.send(new TransactWriteCommand({ TransactItems: recordItems(store, accountId, entry, payer) as any })));
}

/** The transaction items of a debit's record: the request record (only if new), its ledger entry, its multi-session event. */
function recordItems(store: Store, accountId: string, entry: OpEntry, payer: string | undefined) {
  return [
    { Put: {
      TableName: store.tableName,
      Item: { ...key.request(entry.rid), requestId: entry.rid, h: entry.h, n: entry.n, kind: 'debit', accountId, at: entry.at, answer: answerOf(accountId, entry, payer) },
      ConditionExpression: 'attribute_not_exists(pk)',
    } },
    ledgerPut(store, { accountId, entryId: `evt:${entry.rid}`, at: entry.at, type: 'charge', amount: -entry.chg, reservedDelta: 0, units: entry.u, requestId: entry.rid }),
    ...(entry.ms ? [{ Put: {
      TableName: store.tableName,
      Item: { ...key.multiSessionEvent(entry.ms, entry.rid), requestId: entry.rid, serviceId: entry.svc, clientId: entry.cl, accountId, ...(entry.ac ? { askedBy: entry.ac } : {}), charged: { units: entry.u, amount: entry.chg }, at: entry.at },
    } }] : []),
  ];
}

/**
 * For the sweep and the backstop: a debit the account applied is recorded (its record
 * written now if it never was), or, when the request record belongs to another debit or
 * request, given back.
 */
export async function ensureDirectDebitRecorded(store: Store, account: AccountItem, entry: OpEntry): Promise<'recorded' | 'given_back' | 'unknown'> {
  const accountId = account.accountId;
  let record = await requestRecord(store, entry.rid);
  if (!record) {
    try {
      await writeRecord(store, accountId, entry, account.mainAccountId);
      return 'recorded';
    } catch (error) {
      if (!conditionFailedAt(error, 0)) throw error;
      record = await requestRecord(store, entry.rid); // recorded meanwhile, by a retry of the debit
    }
  }
  if (record?.n === entry.n) return 'recorded';
  return (await giveBack(store, accountId, entry)) ? 'given_back' : 'unknown';
}
