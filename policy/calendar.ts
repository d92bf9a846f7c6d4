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

/** Returns the calendar date `YYYY-MM-DD` of `now` in `timeZone` (UTC when undefined). */
export function calendarDate(now: Date, timeZone?: string): string {
  const parts = new Intl.DateTimeFormat('en-US', { timeZone: timeZone ?? 'UTC', year: 'numeric', month: '2-digit', day: '2-digit' }).formatToParts(now);
  const part = (type: Intl.DateTimeFormatPartTypes): string => parts.find((entry) => entry.type === type)?.value ?? '';
  return `${part('year').padStart(4, '0')}-${part('month')}-${part('day')}`;
}
