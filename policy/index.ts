export * from './schema.ts';
export * from './errors.ts';
export { calendarDate, isTimeZone } from './calendar.ts';
export { isAtLeastAsStrong, loadPolicyFile, parsePolicy } from './load.ts';
