// POST /sessions: reserve credit before service (CCR-Initial), or propose a multi-party
// session (`parties` and `principle` instead of `accountId`; it waits for every party to agree).
import { httpHandler, parse, requestHash } from '../http/handler.js';
import { answerResponse } from '../http/problem.js';
import { proposeBody, reserveBody } from '../http/schemas.js';
import { reserve } from '../store/sessions.js';
import { proposePartySession } from '../store/parties.js';
import { store } from '../config.js';
import { noteDenial } from '../store/notifications.js';

export const handler = httpHandler(async (request) => {
  const isProposal = typeof request.body === 'object' && request.body !== null && 'parties' in request.body;
  if (isProposal) {
    const body = parse(proposeBody, request.body);
    return answerResponse(await proposePartySession(store(), { ...body, parties: body.parties.map((p) => p.accountId) }, requestHash(request, body)));
  }
  const body = parse(reserveBody, request.body);
  const s = store();
  try {
    return answerResponse(await reserve(s, body, requestHash(request, body)));
  } catch (error) {
    await noteDenial(s, error, body);
    throw error;
  }
});
