// POST /debits: a one-shot event charge (CCR-Event), no reservation.
import { httpHandler, parse, requestHash } from '../http/handler.js';
import { answerResponse } from '../http/problem.js';
import { directDebitBody } from '../http/schemas.js';
import { directDebit } from '../store/debits.js';
import { store } from '../config.js';
import { noteDenial } from '../store/notifications.js';

export const handler = httpHandler(async (request) => {
  const body = parse(directDebitBody, request.body);
  const s = store();
  try {
    return answerResponse(await directDebit(s, body, requestHash(request, body)));
  } catch (error) {
    await noteDenial(s, error, body);
    throw error;
  }
});
