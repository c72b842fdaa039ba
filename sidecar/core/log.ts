// Line logging to stderr: plain text, or one JSON object per line (PLINTH_LOG_FORMAT=json) for
// log collectors. Never pass secrets (passwords, tokens, keys) to it.
const LEVELS = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 } as const;
export type LogLevel = keyof typeof LEVELS;
export type LogFormat = 'text' | 'json';

/** Extra fields of a line (request_id, ...): JSON keys, or ` key=value` after a text line. */
export type LogFields = Record<string, string | number | boolean | null | undefined>;

export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
}

export function createLogger(level: LogLevel, format: LogFormat = 'text'): Logger {
  const at = (l: Exclude<LogLevel, 'silent'>) => (msg: string, fields?: LogFields) => {
    if (LEVELS[l] < LEVELS[level]) return;
    const time = new Date().toISOString();
    if (format === 'json') {
      process.stderr.write(`${JSON.stringify({ time, level: l, msg, ...fields })}\n`);
      return;
    }
    let extra = '';
    if (fields) for (const [k, v] of Object.entries(fields)) if (v !== undefined) extra += ` ${k}=${v}`;
    process.stderr.write(`${time} ${l.toUpperCase()} ${msg}${extra}\n`);
  };
  return { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
}
