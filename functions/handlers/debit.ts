// POST /sessions/{sessionId}/debit: final debit, the rest of the reservation goes back (CCR-Termination).
import { httpHandler, parse, pathParam, requestHash } from '../http/handler.js';
import { answerResponse } from '../http/problem.js';
import { debitBody } from '../http/schemas.js';
import { debitSession } from '../store/sessions.js';
import { store } from '../config.js';

export const handler = httpHandler(async (request) => {
  const sessionId = pathParam(request, 'sessionId');
  const body = parse(debitBody, request.body);
  return answerResponse(await debitSession(store(), sessionId,
    { requestId: body.requestId, usedUnits: body.used.units, outcome: body.outcome }, requestHash(request, body)));
});
