// Ledger entries: append-only, written in the same transaction as the (cold) session or
// request item they belong to, with ids derived from that operation so a retry rewrites
// nothing. `amount` is the signed change to the balance, `reservedDelta` the signed
// change to the reservation: summing each over an account's ledger gives its balance and
// its reserved amount.
import { QueryCommand } from '@aws-sdk/lib-dynamodb';
import { key } from './table.js';
import type { Store } from './db.js';
import { decodeCursor, pageOf } from './cursor.js';

export type LedgerEntryType = 'topup' | 'reserve' | 'release' | 'debit' | 'charge' | 'refund' | 'adjustment' | 'expire' | 'allotment' | 'recharge' | 'sponsor_transfer';

export interface LedgerEntry {
  accountId: string;
  entryId: string;
  at: string;
  type: LedgerEntryType;
  amount: number;
  reservedDelta: number;
  units?: number;
  sessionId?: string;
  requestId?: string;
  reason?: string;
  /** Allotments: the other account of the transfer. */
  counterparty?: string;
  /** A lateral allotment (between two members): the entry of the other side. */
  pairEntryId?: string;
}

export function ledgerPut(store: Store, entry: LedgerEntry) {
  return {
    Put: {
      TableName: store.tableName,
      Item: { ...key.ledger(entry.accountId, entry.at, entry.entryId), ...entry },
      ConditionExpression: 'attribute_not_exists(pk)',
    },
  };
}

/**
 * The ledger entry of a session step on an account, net: what it charged (`amount`, negative)
 * and how the reservation moved (`reservedDelta`); none when nothing moved. Its type says what
 * the step did: `debit` when it charged (an expiry charging a party's usage too), else `expire`
 * for an expiry, else `reserve` or `release` by the reservation's move. One entry a step, not
 * one per movement: every entry is an item written on the charging path, in its transaction
 * (two write units each). Its id derives from the step, so a retry or a roll-forward writes
 * the same one.
 */
export function stepEntry(base: { accountId: string; sessionId: string; requestId: string; at: string; seq: number },
  step: { chargeMinor: number; reservedDelta: number; units?: number; expiry?: boolean }): LedgerEntry[] {
  if (step.chargeMinor === 0 && step.reservedDelta === 0) return [];
  const type: LedgerEntryType = step.chargeMinor !== 0 ? 'debit' : step.expiry ? 'expire' : step.reservedDelta > 0 ? 'reserve' : 'release';
  const { seq, ...rest } = base;
  return [{
    ...rest, entryId: `${base.sessionId}:${seq}:${type}`, type, amount: -step.chargeMinor, reservedDelta: step.reservedDelta,
    ...(step.units !== undefined ? { units: step.units } : {}),
  }];
}

export async function readLedger(store: Store, accountId: string, options: { limit?: number; next?: string } = {}) {
  const pk = `LEDGER#${accountId}`;
  const limit = options.limit ?? 100;
  const result = await store.db.send(
    new QueryCommand({
      TableName: store.tableName,
      KeyConditionExpression: 'pk = :pk',
      ExpressionAttributeValues: { ':pk': pk },
      ScanIndexForward: false,
      Limit: limit + 1,
      ConsistentRead: true,
      ...(options.next ? { ExclusiveStartKey: { pk, sk: decodeCursor(options.next) } } : {}),
    }),
  );
  const page = pageOf(result.Items ?? [], limit, result.LastEvaluatedKey);
  const entries = page.items.map(({ pk: _pk, sk: _sk, accountId: _a, ...entry }: Record<string, any>) => entry);
  return { entries, ...(page.next ? { next: page.next } : {}) };
}
