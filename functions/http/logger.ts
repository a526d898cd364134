// The Powertools logger every function shares, in a module of its own: the scheduled
// functions (interim sweep, recharge trigger) log through it without bundling the HTTP edge
// (functions/http/handler.ts), whose request schemas bring valibot.
import { Logger } from '@aws-lambda-powertools/logger';

export const logger = new Logger({ serviceName: process.env.POWERTOOLS_SERVICE_NAME ?? 'charging' });
