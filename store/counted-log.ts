/**
 * Writes a log line for repeated events at most once per interval. Each line
 * carries the count of events since the previous line and the details of the
 * first of them. The count of the last interval of a burst is written by a
 * timer when that interval ends (the timer does not keep the process alive).
 */
export function createCountedLog<T>(intervalMs: number, write: (count: number, first: T) => void): (details: T) => void {
  let count = 0;
  let first: T | undefined;
  let lastWritten = 0;
  let flush: NodeJS.Timeout | undefined;

  const writeCount = (): void => {
    if (flush !== undefined) clearTimeout(flush);
    flush = undefined;
    if (count === 0 || first === undefined) return;
    const written = { count, first };
    count = 0;
    first = undefined;
    lastWritten = Date.now();
    write(written.count, written.first);
  };

  return (details) => {
    count += 1;
    first ??= details;
    const sinceLast = Date.now() - lastWritten;
    if (sinceLast >= intervalMs) {
      writeCount();
    } else if (flush === undefined) {
      flush = setTimeout(writeCount, intervalMs - sinceLast);
      flush.unref();
    }
  };
}
