// A small load harness for benchmarks: runs an async operation from a fixed
// number of concurrent loops for a bounded time and count, then reports
// throughput and latency percentiles next to a baseline from the same run.

export interface MeasureOptions {
  /** Wall-clock time of the measured phase, in milliseconds. */
  durationMs: number;
  /** Number of loops that each await one operation at a time. */
  concurrency: number;
  /** Upper bound on measured operations, so a fast target ends early. */
  maxOperations?: number;
  /** Unmeasured time before the measured phase (JIT, keep-alive sockets), in milliseconds. */
  warmupMs?: number;
}

export interface Figures {
  name: string;
  operations: number;
  errors: number;
  elapsedMs: number;
  opsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  /**
   * CPU time of this whole process (user and system, every thread) per
   * operation during the measured phase, in microseconds. Less sensitive to
   * other load on the machine than the throughput.
   */
  cpuMicrosPerOp: number;
}

const DEFAULT_MAX_OPERATIONS = 1_000_000;

/** Reads a positive number from the environment variable `name`, or `fallback` when it is unset or empty. */
export function readSetting(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value <= 0) throw new RangeError(`${name} must be a positive number, got '${raw}'`);
  return value;
}

interface Phase {
  latenciesMs: number[];
  errors: number;
  firstError: unknown;
  elapsedMs: number;
}

async function runPhase(operation: () => Promise<void>, durationMs: number, concurrency: number, maxOperations: number): Promise<Phase> {
  const phase: Phase = { latenciesMs: [], errors: 0, firstError: undefined, elapsedMs: 0 };
  const started = performance.now();
  const deadline = started + durationMs;
  let issued = 0;

  const loop = async (): Promise<void> => {
    while (issued < maxOperations && performance.now() < deadline) {
      issued += 1;
      const operationStarted = performance.now();
      try {
        await operation();
        phase.latenciesMs.push(performance.now() - operationStarted);
      } catch (error) {
        phase.errors += 1;
        phase.firstError ??= error;
      }
    }
  };

  await Promise.all(Array.from({ length: concurrency }, loop));
  phase.elapsedMs = performance.now() - started;
  return phase;
}

/** Returns the value below which `fraction` of the sorted samples lie (nearest rank). */
function percentile(sorted: Float64Array, fraction: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(fraction * sorted.length) - 1));
  return sorted[rank] ?? Number.NaN;
}

/**
 * Measures `operation` under load. Failed operations are counted as errors
 * and left out of the latencies, and the first failure is logged once.
 */
export async function measure(name: string, operation: () => Promise<void>, options: MeasureOptions): Promise<Figures> {
  if (!(options.concurrency >= 1) || !(options.durationMs > 0)) {
    throw new RangeError('measure needs concurrency >= 1 and durationMs > 0');
  }
  const maxOperations = options.maxOperations ?? DEFAULT_MAX_OPERATIONS;

  if ((options.warmupMs ?? 0) > 0) {
    await runPhase(operation, options.warmupMs ?? 0, options.concurrency, maxOperations);
  }
  const cpuBefore = process.cpuUsage();
  const phase = await runPhase(operation, options.durationMs, options.concurrency, maxOperations);
  const cpu = process.cpuUsage(cpuBefore);
  if (phase.errors > 0) {
    console.error(`${name}: ${phase.errors} operations failed; first error:`, phase.firstError);
  }

  const sorted = Float64Array.from(phase.latenciesMs).sort();
  return {
    name,
    operations: sorted.length,
    errors: phase.errors,
    elapsedMs: phase.elapsedMs,
    opsPerSecond: (sorted.length * 1000) / phase.elapsedMs,
    p50Ms: percentile(sorted, 0.5),
    p99Ms: percentile(sorted, 0.99),
    maxMs: sorted.length > 0 ? (sorted[sorted.length - 1] ?? Number.NaN) : Number.NaN,
    cpuMicrosPerOp: sorted.length > 0 ? (cpu.user + cpu.system) / sorted.length : Number.NaN,
  };
}

/**
 * Returns the figures of the round with the median throughput, so one round
 * disturbed by other load on the machine does not decide the result.
 */
export function medianRound(rounds: Figures[]): Figures {
  const sorted = [...rounds].sort((a, b) => a.opsPerSecond - b.opsPerSecond);
  const median = sorted[Math.floor((sorted.length - 1) / 2)];
  if (median === undefined) throw new RangeError('medianRound needs at least one round');
  return median;
}

function formatRate(value: number): string {
  return Math.round(value).toLocaleString('en-US');
}

function formatMs(value: number): string {
  return `${value.toFixed(2)} ms`;
}

/**
 * Prints one line of figures. With a baseline, it adds the throughput ratio
 * (above 1 is faster than the baseline) and the p99 ratio (above 1 is slower).
 */
export function report(name: string, figures: Figures, baseline?: Figures): void {
  const parts = [
    `${name.padEnd(44)}`,
    `${formatRate(figures.opsPerSecond).padStart(8)} ops/s`,
    `p50 ${formatMs(figures.p50Ms).padStart(9)}`,
    `p99 ${formatMs(figures.p99Ms).padStart(9)}`,
    `max ${formatMs(figures.maxMs).padStart(9)}`,
    `n=${figures.operations}`,
    `cpu ${Math.round(figures.cpuMicrosPerOp)} µs/op`,
  ];
  if (figures.errors > 0) parts.push(`errors=${figures.errors}`);
  if (baseline !== undefined && baseline !== figures) {
    const throughputRatio = figures.opsPerSecond / baseline.opsPerSecond;
    const p99Ratio = figures.p99Ms / baseline.p99Ms;
    parts.push(`| vs ${baseline.name}: throughput x${throughputRatio.toFixed(2)}, p99 x${p99Ratio.toFixed(2)}`);
  }
  console.log(parts.join('  '));
}
