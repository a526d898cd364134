// POST /sessions/{sessionId}/refund: release an active session's reservation, or give back
// part of what a closed session charged.
import { httpHandler, parse, pathParam, requestHash } from '../http/handler.js';
import { answerResponse } from '../http/problem.js';
import { refundBody } from '../http/schemas.js';
import { refundSession } from '../store/sessions.js';
import { store } from '../config.js';

export const handler = httpHandler(async (request) => {
  const sessionId = pathParam(request, 'sessionId');
  const body = parse(refundBody, request.body);
  return answerResponse(await refundSession(store(), sessionId, body, requestHash(request, body)));
});
