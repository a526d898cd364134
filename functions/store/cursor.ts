// The `next` of a page of items sorted by `<at>#<id>` sort keys (ledger entries, notifications):
// the last sort key read, opaque to clients, and checked when it comes back.
import { fail } from '../domain/errors.js';

/** The `next` of a page of items keyed `<at>#<id>` (ledger entries, notifications). */
export const encodeCursor = (sk: string) => Buffer.from(sk, 'utf8').toString('base64url');
export const decodeCursor = (cursor: string) => {
  const sk = Buffer.from(cursor, 'base64url').toString('utf8');
  // Within DynamoDB's 1,024 bytes of a sort key (else a query DynamoDB refuses), and whole
  // UTF-8 (else one that reads as another key: fails before, a 200; review 24 of stop 28).
  if (!/^\d{4}-\d\d-\d\dT[^#]+#.+$/.test(sk) || Buffer.byteLength(sk) > 1024 || sk.includes('\uFFFD')) fail('validation_failed', 'next is not a cursor this server gave');
  return sk;
};

/**
 * One page of at most `limit` items from a query asked for `limit + 1`: `next` when another
 * item follows, or when DynamoDB stopped before (`lastKey`: its 1 MB cap; fails before: a
 * page cut there had no next, and the rest was out of reach; review). DynamoDB hands back a
 * LastEvaluatedKey whenever it stopped at its Limit, also on the last item, so the query
 * asks one more: a page that ended there offered a `next` to an empty page.
 */
export function pageOf<T extends Record<string, unknown>>(items: T[], limit: number, lastKey: Record<string, unknown> | undefined): { items: T[]; next?: string } {
  const page = items.slice(0, limit);
  const more = items.length > limit || lastKey !== undefined;
  return more && page.length ? { items: page, next: encodeCursor(String(page[page.length - 1]!.sk)) } : { items: page };
}
