// POST /debits: a one-shot event charge (CCR-Event), no reservation.
import { httpHandler, parse, requestHash } from '../http/handler.js';
import { answerResponse } from '../http/problem.js';
import { directDebitBody } from '../http/schemas.js';
import { directDebit } from '../store/debits.js';
import { store } from '../config.js';

export const handler = httpHandler(async (request) => {
  const body = parse(directDebitBody, request.body);
  return answerResponse(await directDebit(store(), body, requestHash(request, body)));
});
