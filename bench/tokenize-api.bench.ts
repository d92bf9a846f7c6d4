// Batch tokenize API over HTTP on 127.0.0.1: deterministic tokens per second in
// batches of 100 and 1000 items, against `deterministicToken` called in-process
// on the same kind of values in the same run (the ratio is API / in-process).
//
// Each API call authenticates the credential, validates and normalizes every
// item, computes the tokens and appends one audit entry in a transaction on
// the embedded PGlite database. The gateway and the load generator share this
// process, and request bodies are serialized once before measuring, so the
// figures include the server's and the client's JSON work but no body building.
//
// Settings (environment): BENCH_DURATION_MS (measured time per case, default
// 3000), BENCH_WARMUP_MS (default 500), BENCH_CONCURRENCY (concurrent HTTP
// requests, default 4).

import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createCredential } from '../store/credentials.ts';
import { tokenTestPolicy } from '../store/fixtures/tokens.ts';
import { createTestVault, testDatabases } from '../store/testing.ts';
import { deterministicToken } from '../tokenizer/deterministic.ts';
import { measure, readSetting, report, type Figures } from './harness.ts';
import { createTestGateway } from '../gateway/testing.ts';

const DURATION_MS = readSetting('BENCH_DURATION_MS', 3000);
const WARMUP_MS = readSetting('BENCH_WARMUP_MS', 500);
const CONCURRENCY = readSetting('BENCH_CONCURRENCY', 4);
const VALUE_COUNT = 4096;

const values = Array.from({ length: VALUE_COUNT }, (_, index) => `member${index}.bench@example.test`);

/** Serializes one tokenize body of `size` email items, starting at value `offset`. */
function batchBody(size: number, offset: number): string {
  const items = Array.from({ length: size }, (_, index) => ({ recordType: 'member', field: 'email', value: values[(offset + index) % VALUE_COUNT] }));
  return JSON.stringify({ items });
}

function post(agent: http.Agent, port: number, secret: string, body: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const request = http.request(
      {
        host: '127.0.0.1',
        port,
        method: 'POST',
        path: '/api/v1/tokenize',
        agent,
        headers: { authorization: `Bearer ${secret}`, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
      },
      (response) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('end', () => {
          if (response.statusCode !== 200) {
            reject(new Error(`tokenize returned status ${response.statusCode}`));
            return;
          }
          // Parsed as a real client would, and checked so a failing batch is not counted.
          const parsed = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { results: Array<{ token?: string }> };
          if (parsed.results.some((result) => result.token === undefined)) {
            reject(new Error('tokenize returned an item error'));
            return;
          }
          resolve();
        });
        response.on('error', reject);
      },
    );
    request.on('error', reject);
    request.end(body);
  });
}

/** Figures of an operation that makes `tokensPerOperation` tokens, as tokens per second. */
function asTokens(figures: Figures, tokensPerOperation: number, name: string): Figures {
  return { ...figures, name, opsPerSecond: figures.opsPerSecond * tokensPerOperation, cpuMicrosPerOp: figures.cpuMicrosPerOp / tokensPerOperation };
}

async function main(): Promise<void> {
  const database = testDatabases()[0];
  if (database === undefined) throw new Error('no test database');
  const db = await database.open();
  const policy = tokenTestPolicy();
  const store = await createTestVault(db, policy);
  const { secret } = await createCredential(db, { name: 'bench', location: 'abroad', scopes: { operations: ['tokenize'], recordTypes: ['member'] } });
  const app = createTestGateway(db, policy, store);
  const server = http.createServer(app);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  const agent = new http.Agent({ keepAlive: true, maxSockets: CONCURRENCY });

  try {
    // In-process baseline: one operation is one batch of 1000 tokens, so the
    // harness overhead per token is as small as on the HTTP side.
    let offset = 0;
    const inProcess = await measure(
      'deterministicToken in-process (x1000)',
      async () => {
        for (let index = 0; index < 1000; index += 1) {
          deterministicToken(store.keyring, 'member.email', values[(offset + index) % VALUE_COUNT] ?? '');
        }
        offset += 1000;
      },
      { durationMs: DURATION_MS, warmupMs: WARMUP_MS, concurrency: 1 },
    );
    const baseline = asTokens(inProcess, 1000, 'deterministicToken in-process');
    report('deterministicToken in-process (tokens/s)', baseline);

    for (const size of [100, 1000]) {
      const bodies = Array.from({ length: 16 }, (_, index) => batchBody(size, index * size));
      let next = 0;
      const figures = await measure(
        `tokenize API batch ${size}`,
        () => post(agent, port, secret, bodies[next++ % bodies.length] ?? ''),
        { durationMs: DURATION_MS, warmupMs: WARMUP_MS, concurrency: CONCURRENCY },
      );
      report(`tokenize API, batches of ${size} (tokens/s)`, asTokens(figures, size, `tokenize API batch ${size}`), baseline);
      console.log(`  ${figures.opsPerSecond.toFixed(1)} requests/s, p50 ${figures.p50Ms.toFixed(2)} ms per request`);
    }
  } finally {
    agent.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await store.keys.close();
    await db.close();
  }
}

await main();
