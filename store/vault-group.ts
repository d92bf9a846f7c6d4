import { DomicileError } from '../policy/errors.ts';
import type { ActorCreateItem, BatchCreateResult } from './vault-batch.ts';
import { createForActors } from './vault-batch.ts';
import type { VaultDeps } from './vault-common.ts';

/** Maximum number of single creates that share one transaction. */
const GROUP_MAX = 100;

interface Waiting {
  item: ActorCreateItem;
  resolve: (result: { subjectToken: string; version: number }) => void;
  reject: (error: unknown) => void;
}

/**
 * Group commit for single creates. While one transaction runs, the creates
 * that arrive queue up, and the next transaction writes all of them (up to
 * GROUP_MAX). Every write takes the audit chain's head lock until it commits,
 * so without grouping, concurrent creates commit one at a time. A create that
 * arrives while nothing runs starts at once, so grouping adds no wait when the
 * gateway is idle. Each caller gets its answer only after its transaction
 * committed. Invalid values fail only their own item, but a database failure
 * fails every create of the group.
 */
export function createGroupCommitter(deps: VaultDeps): (item: ActorCreateItem) => Promise<{ subjectToken: string; version: number }> {
  const queue: Waiting[] = [];
  let running = false;

  const settle = (group: readonly Waiting[], results: readonly BatchCreateResult[]): void => {
    group.forEach((waiting, index) => {
      const result = results[index];
      if (result === undefined) {
        waiting.reject(new DomicileError('internal', 'create returned no result'));
      } else if (result.ok) {
        waiting.resolve({ subjectToken: result.subjectToken, version: result.version });
      } else {
        waiting.reject(result.error);
      }
    });
  };

  const drain = async (): Promise<void> => {
    running = true;
    while (queue.length > 0) {
      const group = queue.splice(0, GROUP_MAX);
      try {
        settle(group, await createForActors(deps, group.map((waiting) => waiting.item)));
      } catch (error) {
        for (const waiting of group) waiting.reject(error);
      }
    }
    running = false;
  };

  return (item) =>
    new Promise((resolve, reject) => {
      queue.push({ item, resolve, reject });
      if (!running) {
        void drain();
      }
    });
}
