import type { Database } from '../store/database.ts';
import { outboxStats } from '../store/outbox.ts';

/** Delivery counters of one destination since the worker started. */
export interface DestinationStats {
  delivered: number;
  failed: number;
  /** Events not yet delivered, including those waiting for a retry, at the last pass. */
  pending: number;
  /** Seconds since the oldest undelivered event was written, at the last pass; 0 when none is pending. */
  lagSeconds: number;
}

/** Counters of a replication worker for metrics, updated in place. Totals cover every destination. */
export interface ReplicationStats {
  delivered: number;
  failed: number;
  pending: number;
  lagSeconds: number;
  readonly destinations: Readonly<Record<string, DestinationStats>>;
  recordDelivered(destination: string, count: number): void;
  recordFailed(destination: string, count: number): void;
}

export function createReplicationStats(destinationNames: readonly string[]): ReplicationStats {
  const destinations: Record<string, DestinationStats> = {};
  for (const name of destinationNames) {
    destinations[name] = { delivered: 0, failed: 0, pending: 0, lagSeconds: 0 };
  }

  return {
    delivered: 0,
    failed: 0,
    pending: 0,
    lagSeconds: 0,
    destinations,
    recordDelivered(destination: string, count: number): void {
      this.delivered += count;
      const entry = destinations[destination];
      if (entry !== undefined) {
        entry.delivered += count;
      }
    },
    recordFailed(destination: string, count: number): void {
      this.failed += count;
      const entry = destinations[destination];
      if (entry !== undefined) {
        entry.failed += count;
      }
    },
  };
}

/** Refreshes `pending` and `lagSeconds` from the outbox, for the destinations this worker serves. */
export async function measureLag(db: Database, stats: ReplicationStats): Promise<void> {
  const rows = await outboxStats(db);
  let pending = 0;
  let lagSeconds = 0;
  for (const [name, entry] of Object.entries(stats.destinations)) {
    const row = rows.find((candidate) => candidate.destination === name);
    entry.pending = row?.open ?? 0;
    entry.lagSeconds = row?.oldestAgeSeconds ?? 0;
    pending += entry.pending;
    lagSeconds = Math.max(lagSeconds, entry.lagSeconds);
  }
  stats.pending = pending;
  stats.lagSeconds = lagSeconds;
}
