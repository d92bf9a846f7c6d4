import cliProgress from 'cli-progress';

export interface Progress {
  update(done: number, total: number): void;
  stop(): void;
}

/**
 * Shows a progress bar on standard error when it is a terminal; elsewhere
 * (pipes, CI logs) it shows nothing, so output stays readable.
 */
export function startProgress(label: string, unit: string): Progress {
  if (process.stderr.isTTY !== true) {
    return { update: () => undefined, stop: () => undefined };
  }
  const bar = new cliProgress.SingleBar(
    { format: `${label} [{bar}] {percentage}% | {value}/{total} ${unit}`, stream: process.stderr, hideCursor: true },
    cliProgress.Presets.shades_classic,
  );
  let started = false;
  return {
    update(done, total) {
      if (!started) {
        bar.start(Math.max(total, 1), 0);
        started = true;
      }
      bar.setTotal(Math.max(total, done, 1));
      bar.update(done);
    },
    stop() {
      if (started) {
        bar.stop();
      }
    },
  };
}
