import { DomicileError } from '../policy/errors.ts';
import type { ActorCreateItem, BatchCreateResult } from './vault-batch.ts';
import { createForActors } from './vault-batch.ts';
import type { VaultDeps } from './vault-common.ts';
import { auditSealerFor } from './audit-seal.ts';

/** Maximum number of single calls that share one transaction. */
const GROUP_MAX = 100;
/** Groups in flight at once on Postgres; see groupsInFlight. */
const GROUPS_IN_FLIGHT = 3;

/** Outcome of one item of a group: its value, or the error that fails only this item. */
export type GroupResult<O> = { ok: true; value: O } | { ok: false; error: unknown };

interface Waiting<I, O> {
  item: I;
  resolve: (result: O) => void;
  reject: (error: unknown) => void;
}

/**
 * Group commit for single calls. While `parallel` groups run, the calls that
 * arrive queue up, and the next group takes all of them (up to GROUP_MAX).
 * A group costs about as many round trips as one call, so under load the
 * round trips and commits are shared. A call that arrives while fewer than
 * `parallel` groups run starts at once, so grouping adds no wait when the
 * gateway is idle. Several groups in flight let one group's CPU work (JSON,
 * encryption) overlap another's wait for the database. `run` returns one
 * result per item, in order; when it throws, every call of the group fails
 * with that error.
 */
export function createGroupRunner<I, O>(run: (items: readonly I[]) => Promise<ReadonlyArray<GroupResult<O>>>, parallel = 1): (item: I) => Promise<O> {
  const queue: Array<Waiting<I, O>> = [];
  let running = 0;

  const settle = (group: ReadonlyArray<Waiting<I, O>>, results: ReadonlyArray<GroupResult<O>>): void => {
    group.forEach((waiting, index) => {
      const result = results[index];
      if (result === undefined) {
        waiting.reject(new DomicileError('internal', 'grouped call returned no result'));
      } else if (result.ok) {
        waiting.resolve(result.value);
      } else {
        waiting.reject(result.error);
      }
    });
  };

  const drain = async (): Promise<void> => {
    running += 1;
    while (queue.length > 0) {
      const group = queue.splice(0, GROUP_MAX);
      try {
        settle(group, await run(group.map((waiting) => waiting.item)));
      } catch (error) {
        for (const waiting of group) waiting.reject(error);
      }
    }
    running -= 1;
  };

  return (item) =>
    new Promise((resolve, reject) => {
      queue.push({ item, resolve, reject });
      if (running < parallel) {
        void drain();
      }
    });
}

/**
 * Group commit for single creates (see createGroupRunner). Each caller gets
 * its result only after its records committed and their audit entries were
 * chained. The seal runs after the group made way for the next one, so one
 * seal often chains the entries of several groups. Invalid values fail only
 * their own item, but a database failure fails every create of the group.
 */
export function createGroupCommitter(deps: VaultDeps): (item: ActorCreateItem) => Promise<{ subjectToken: string; version: number }> {
  const grouped = createGroupRunner(async (items: readonly ActorCreateItem[]) => {
    const results: readonly BatchCreateResult[] = await createForActors(deps, items);
    return results.map((result) =>
      result.ok ? { ok: true as const, value: { subjectToken: result.subjectToken, version: result.version } } : { ok: false as const, error: result.error },
    );
  }, groupsInFlight(deps));
  return async (item) => {
    const created = await grouped(item);
    await auditSealerFor(deps.db).seal(deps.keyring);
    return created;
  };
}

/**
 * Groups that may run at once. PGlite runs one statement at a time in this
 * process, so a second group would only wait. On Postgres, a few groups keep
 * the connection pool busy while this process encrypts the next group.
 */
export function groupsInFlight(deps: VaultDeps): number {
  return deps.db.kind === 'pglite' ? 1 : GROUPS_IN_FLIGHT;
}
