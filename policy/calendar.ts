/**
 * Calendar dates in a time zone, for date rules such as `notAfter: today`.
 * Time zones are IANA names (`Europe/Berlin`); undefined means UTC.
 */

/** Reports whether the runtime's Intl accepts `timeZone` as an IANA time zone name. */
export function isTimeZone(timeZone: string): boolean {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone });
    return true;
  } catch {
    return false;
  }
}

/** Formatters by time zone: building one costs tens of microseconds, and a create checks every date field. */
const formatters = new Map<string, Intl.DateTimeFormat>();

function formatterFor(timeZone: string): Intl.DateTimeFormat {
  let formatter = formatters.get(timeZone);
  if (formatter === undefined) {
    formatter = new Intl.DateTimeFormat('en-US', { timeZone, year: 'numeric', month: '2-digit', day: '2-digit' });
    formatters.set(timeZone, formatter);
  }
  return formatter;
}

/** Returns the calendar date `YYYY-MM-DD` of `now` in `timeZone` (UTC when undefined). */
export function calendarDate(now: Date, timeZone?: string): string {
  const parts = formatterFor(timeZone ?? 'UTC').formatToParts(now);
  const part = (type: Intl.DateTimeFormatPartTypes): string => parts.find((entry) => entry.type === type)?.value ?? '';
  return `${part('year').padStart(4, '0')}-${part('month')}-${part('day')}`;
}
