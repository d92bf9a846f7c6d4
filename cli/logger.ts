import { pino, type DestinationStream, type Logger } from 'pino';

/**
 * Paths redacted as a second line of defence. The first line is that no code
 * logs a value of a policy field, a credential, a header or a body at all.
 */
const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'headers.authorization',
  'headers.cookie',
  'values',
  'body',
  'secret',
  'password',
  'session',
];

export function createLogger(level: string, destination?: DestinationStream): Logger {
  const options = {
    level,
    base: { service: 'domicile' },
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
  };
  return destination === undefined ? pino(options) : pino(options, destination);
}
