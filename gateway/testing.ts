import type { Express } from 'express';
import type { Policy } from '../policy/index.ts';
import { silentLogger, type OpenedTestDatabase, type TestVault } from '../store/testing.ts';
import type { GatewayDeps } from './deps.ts';
import { createGatewayApp } from './gateway-listener.ts';

/** Origins that test gateways use unless a test names its own. */
export const TEST_APP_ORIGIN = 'http://localhost:8080';
export const TEST_GATEWAY_ORIGIN = 'http://localhost:8081';

/**
 * Builds the gateway app for tests over a test database and vault, with a
 * silent logger, the test origins and a readiness probe that always passes.
 * Each key of `overrides` replaces that dependency, the vault included.
 */
export function createTestGateway(db: OpenedTestDatabase, policy: Policy, store: TestVault, overrides: Partial<GatewayDeps> = {}): Express {
  return createGatewayApp({
    vault: store.vault,
    db,
    policy,
    keyring: store.keyring,
    logger: silentLogger(),
    appOrigins: [TEST_APP_ORIGIN],
    gatewayOrigin: TEST_GATEWAY_ORIGIN,
    ready: async () => true,
    ...overrides,
  });
}
