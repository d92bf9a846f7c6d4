import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import { DomicileError } from '../policy/index.ts';
import type { Database } from '../store/database.ts';
import { getJob, type Job } from '../store/jobs.ts';
import { createKekRewrapRunner } from '../store/kek-rotation.ts';
import type { KeyProvider } from '../tokenizer/keys/provider.ts';
import { startProgress } from './progress.ts';

const POLL_MS = 500;

/**
 * Shows the progress of a rewrap job until it completes, and rejects when it
 * fails for good. With the embedded database no worker can run beside the
 * command, so the job runs here with `keys`, which must wrap with its target.
 * `again` names the command to run after a failure.
 */
export async function followRewrapJob(options: { db: Database; keys: KeyProvider; job: Job; logger: Logger; again: string }): Promise<Job> {
  const { db, keys, job, logger } = options;
  const progress = startProgress('rewrap', 'data keys');
  const openKeys = (): Promise<KeyProvider> => Promise.reject(new DomicileError('internal', 'the key provider of this command does not wrap with the target version of the job'));
  const runner = db.kind === 'pglite' ? createKekRewrapRunner({ db, keys, openKeys, logger }) : undefined;
  if (runner === undefined) {
    console.log('waiting for a worker (domicile start, role all or worker) to run the job; press Ctrl+C to stop waiting, the job goes on');
  }
  let reported = 0;
  try {
    for (;;) {
      await runner?.runOnce();
      const current = await getJob(db, job.id);
      if (current === undefined) {
        throw new DomicileError('not_found', `rewrap job ${job.id} disappeared`);
      }
      progress.update(current.done, current.total);
      if (current.state === 'completed') {
        return current;
      }
      if (current.state === 'failed') {
        throw new DomicileError('internal', `rewrap job ${job.id} failed (${current.lastErrorCode ?? 'unknown'}); run ${options.again} again`);
      }
      if (runner !== undefined && current.lastErrorCode !== null && current.attempts !== reported) {
        reported = current.attempts;
        console.error(`rewrap job ${job.id} attempt ${current.attempts} failed (${current.lastErrorCode}); retrying after the backoff`);
      }
      await sleep(POLL_MS);
    }
  } finally {
    progress.stop();
  }
}
