// What a DynamoDB error means, by its name and a cancelled transaction's reasons: plain
// functions with no SDK import (see db.ts, which re-exports them for the store).

export function isConditionFailure(error: unknown): error is Error & { Item?: Record<string, any> } {
  return (error as Error)?.name === 'ConditionalCheckFailedException';
}

/** Reasons of a cancelled transaction, one per action, with the item where ALL_OLD was asked. */
export function cancellationReasons(error: unknown): Array<{ Code?: string; Item?: Record<string, any> }> | null {
  if ((error as Error)?.name !== 'TransactionCanceledException') return null;
  return ((error as any).CancellationReasons ?? []) as Array<{ Code?: string; Item?: Record<string, any> }>;
}

/** Whether action `index` of a cancelled transaction failed its condition (not a conflict, not a validation error). */
export function conditionFailedAt(error: unknown, index: number): boolean {
  return cancellationReasons(error)?.[index]?.Code === 'ConditionalCheckFailed';
}

/** Another transaction on the same item, and nothing refused: running the write again may succeed. */
export function isTransientConflict(error: unknown): boolean {
  const name = (error as Error)?.name;
  if (name === 'TransactionConflictException') return true;
  const reasons = cancellationReasons(error);
  return !!reasons && reasons.some((r) => r.Code === 'TransactionConflict') && !reasons.some((r) => r.Code === 'ConditionalCheckFailed');
}
