// POST /sessions/{sessionId}/update: debit what was used, re-reserve what is requested (CCR-Update).
import { httpHandler, parse, pathParam, requestHash } from '../http/handler.js';
import { answerResponse } from '../http/problem.js';
import { updateBody } from '../http/schemas.js';
import { updateSession } from '../store/sessions.js';
import { store } from '../config.js';

export const handler = httpHandler(async (request) => {
  const sessionId = pathParam(request, 'sessionId');
  const body = parse(updateBody, request.body);
  return answerResponse(await updateSession(store(), sessionId,
    { requestId: body.requestId, usedUnits: body.used.units, requested: body.requested }, requestHash(request, body)));
});
