// The table layout, in one place. One table, generic keys (pk, sk), items:
//
//   pk                      sk                    what
//   SVC#<serviceId>         SERVICE               rating of a service
//   ACC#<accountId>         ACCOUNT               settings + balance, reserved, available, ops{}
//   ACC#<mainAccountId>     MEMBER#<accountId>    an account attached to it (written with the account)
//   SES#<sessionId>         SESSION               a charging session (record of what happened)
//   SES#<sessionId>         ANS#<requestId>       the answer to one request on the session (for repeats)
//   MS#<multiSessionId>     SES#<sessionId>       membership of a session in a multi-session
//   MS#<multiSessionId>     EVT#<requestId>       an event charged within a multi-session
//   LEDGER#<accountId>      <at>#<entryId>        append-only ledger entries, newest last
//   REQ#<requestId>         REQUEST               answer of a one-shot request (top-up, event)
//
// The sparse `due` index holds open sessions (at their next report or expiry) and accounts
// with `ops` entries the sweep may have to finish: a hold whose reserve died before its
// session was written, a debit whose record was never written, a finished entry nobody
// removed (see compaction.ts). An account write puts the account there only if it is not
// there already (`if_not_exists`), so the hot path adds no index writes.
//
// Accounts are the only items that can be hot. A charging operation changes an account in
// one transaction with its record while the account is quiet, and by a single-item
// conditional UpdateItem once this process saw it contended (see ops.ts, one-write
// operations). `available` is stored (not derived) because condition expressions cannot do
// arithmetic.
import { createHash } from 'node:crypto';
import type { CreateTableCommandInput } from '@aws-sdk/client-dynamodb';

export const MEMBER_SK_PREFIX = 'MEMBER#';

export const key = {
  service: (serviceId: string) => ({ pk: `SVC#${serviceId}`, sk: 'SERVICE' }),
  account: (accountId: string) => ({ pk: `ACC#${accountId}`, sk: 'ACCOUNT' }),
  member: (mainAccountId: string, accountId: string) => ({ pk: `ACC#${mainAccountId}`, sk: `${MEMBER_SK_PREFIX}${accountId}` }),
  session: (sessionId: string) => ({ pk: `SES#${sessionId}`, sk: 'SESSION' }),
  sessionAnswer: (sessionId: string, requestId: string) => ({ pk: `SES#${sessionId}`, sk: `ANS#${requestId}` }),
  multiSessionMember: (multiSessionId: string, sessionId: string) => ({ pk: `MS#${multiSessionId}`, sk: `SES#${sessionId}` }),
  multiSessionEvent: (multiSessionId: string, requestId: string) => ({ pk: `MS#${multiSessionId}`, sk: `EVT#${requestId}` }),
  ledger: (accountId: string, at: string, entryId: string) => ({ pk: `LEDGER#${accountId}`, sk: `${at}#${entryId}` }),
  request: (requestId: string) => ({ pk: `REQ#${requestId}`, sk: 'REQUEST' }),
  /** A sponsor transfer's guard: one per account and cover key (sponsors.ts). */
  sponsorTransfer: (transferId: string) => ({ pk: `SPT#${transferId}`, sk: 'TRANSFER' }),
};

/**
 * The request id of a step the system makes itself (an expiry, a multi-session's settlement).
 * It starts with `~`, which no client's requestId can hold (API.md identifiers): such a step
 * is never taken for a client's request, nor a client's for it.
 */
export const systemRequestId = (name: string) => `~${name}`;

/** Sparse index of open sessions by the time they are due for the sweep, sharded. */
export const DUE_INDEX = 'due';
export const DUE_SHARDS = 8;

/** The shard of the due index an item (a session, an account) goes to. */
export const dueShardOf = (id: string) => `due#${createHash('sha256').update(id).digest()[0]! % DUE_SHARDS}`;

export function tableDefinition(tableName: string): CreateTableCommandInput {
  return {
    TableName: tableName,
    BillingMode: 'PAY_PER_REQUEST',
    AttributeDefinitions: [
      { AttributeName: 'pk', AttributeType: 'S' },
      { AttributeName: 'sk', AttributeType: 'S' },
      { AttributeName: 'dueShard', AttributeType: 'S' },
      { AttributeName: 'dueAt', AttributeType: 'S' },
    ],
    KeySchema: [
      { AttributeName: 'pk', KeyType: 'HASH' },
      { AttributeName: 'sk', KeyType: 'RANGE' },
    ],
    GlobalSecondaryIndexes: [
      {
        IndexName: DUE_INDEX,
        KeySchema: [
          { AttributeName: 'dueShard', KeyType: 'HASH' },
          { AttributeName: 'dueAt', KeyType: 'RANGE' },
        ],
        Projection: { ProjectionType: 'KEYS_ONLY' },
      },
    ],
  };
}

export const TTL_ATTRIBUTE = 'expiresAtEpochSeconds';
