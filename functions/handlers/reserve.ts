// POST /sessions: reserve credit before service (CCR-Initial).
import { httpHandler, parse, requestHash } from '../http/handler.js';
import { answerResponse } from '../http/problem.js';
import { reserveBody } from '../http/schemas.js';
import { reserve } from '../store/sessions.js';
import { store } from '../config.js';

export const handler = httpHandler(async (request) => {
  const body = parse(reserveBody, request.body);
  return answerResponse(await reserve(store(), body, requestHash(request, body)));
});
