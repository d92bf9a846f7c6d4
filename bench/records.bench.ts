// Records API throughput against raw Postgres inserts in the same run:
//   - records created per second through POST /api/v1/records, against raw
//     single-row INSERTs of a similar row at the same concurrency (goal: at
//     least 0.5 of the raw rate);
//   - records read per second through GET /api/v1/records/:subjectToken;
//   - records created per second through POST /api/v1/records:batch (100 per
//     request), against raw 100-row INSERTs (goal: at least 0.3).
//
// The gateway listener runs on 127.0.0.1 in this process and is driven over
// HTTP with a keep-alive agent, so the figures include the HTTP client's CPU
// time. Against PGlite (the default) the database also runs in this process.
// With DATABASE_URL the benchmark creates a new database on that server and
// drops it at the end.
//
// Settings (environment): BENCH_DURATION_MS (measured time per case and
// round, default 3000), BENCH_WARMUP_MS (default 500), BENCH_CONCURRENCY
// (default 16), BENCH_MAX_REQUESTS (upper bound per case and round, default
// 20000), BENCH_ROUNDS (default 3).

import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { pino } from 'pino';
import { createGatewayApp } from '../gateway/gateway-listener.ts';
import { loadPolicyFile } from '../policy/load.ts';
import { createCredential } from '../store/credentials.ts';
import { openDatabase, type Database } from '../store/database.ts';
import { loadKeyring } from '../store/keyring-store.ts';
import { migrate } from '../store/migrate.ts';
import { createVault } from '../store/vault.ts';
import { blindIndex } from '../tokenizer/blind-index.ts';
import type { Keyring } from '../tokenizer/keyring.ts';
import { openLocalKeyFile, type LocalKeyProvider } from '../tokenizer/keys/local-file.ts';
import type { Policy } from '../policy/schema.ts';
import { blindIndexNamespace, dataKeyContext, encryptField, generateSubjectToken } from '../store/record-crypto.ts';
import { validateValues } from '../store/vault-validate.ts';
import { measure, medianRound, readSetting, report, type Figures, type MeasureOptions } from './harness.ts';

const BATCH_SIZE = 100;
const CREATE_GOAL = 0.5;
const BATCH_GOAL = 0.3;

const settings = {
  durationMs: readSetting('BENCH_DURATION_MS', 3000),
  warmupMs: readSetting('BENCH_WARMUP_MS', 500),
  concurrency: readSetting('BENCH_CONCURRENCY', 16),
  maxOperations: readSetting('BENCH_MAX_REQUESTS', 20_000),
  rounds: readSetting('BENCH_ROUNDS', 3),
};

/** Synthetic customer whose email differs per call, so blind indexes are distinct as in real traffic. */
let sequence = 0;
function syntheticCustomer(): Record<string, string> {
  sequence += 1;
  return {
    name: `Bench Person ${sequence}`,
    email: `bench.${sequence}.${randomBytes(3).toString('hex')}@example.test`,
    phone: '+49 30 5550 1234',
    birthDate: '1985-06-15',
    postalCode: '10115',
    country: 'DE',
  };
}

/**
 * Raw rows of about the size of a stored record: six base64 ciphertexts of 60
 * bytes. Made ahead of time, so the baseline does not pay for random bytes.
 */
const RAW_FIELDS = Array.from({ length: 256 }, () => {
  const fields: Record<string, string> = {};
  for (const name of ['name', 'email', 'phone', 'birthDate', 'postalCode', 'country']) {
    fields[name] = randomBytes(60).toString('base64');
  }
  return JSON.stringify(fields);
});
let rawIndex = 0;
function rawFields(): string {
  rawIndex = (rawIndex + 1) % RAW_FIELDS.length;
  return RAW_FIELDS[rawIndex] ?? '{}';
}

interface Opened {
  db: Database;
  close(): Promise<void>;
}

/** Opens PGlite in a temporary folder, or a new database on the server of DATABASE_URL. */
async function openBenchDatabase(dataDir: string, poolMax: number): Promise<Opened> {
  const logger = pino({ level: 'silent' });
  const url = process.env['DATABASE_URL'];
  if (url === undefined || url === '') {
    const db = await openDatabase({ dataDir, logger });
    return { db, close: () => db.close() };
  }
  const name = `domicile_bench_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: url });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const target = new URL(url);
  target.pathname = `/${name}`;
  const db = await openDatabase({ databaseUrl: target.toString(), dataDir, logger, poolMax });
  return {
    db,
    close: async () => {
      await db.close();
      const cleanup = new pg.Client({ connectionString: url });
      await cleanup.connect();
      await cleanup.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await cleanup.end();
    },
  };
}

function send(agent: http.Agent, port: number, options: { method: string; path: string; headers: Record<string, string>; body?: string; expect: number }): Promise<string> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string | number> = { ...options.headers };
    if (options.body !== undefined) {
      headers['content-type'] = 'application/json';
      headers['content-length'] = Buffer.byteLength(options.body);
    }
    const req = http.request({ host: '127.0.0.1', port, method: options.method, path: options.path, agent, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        if (res.statusCode !== options.expect) reject(new Error(`${options.method} ${options.path}: status ${res.statusCode}: ${text.slice(0, 200)}`));
        else resolve(text);
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(options.body);
  });
}

async function rounds(name: string, operation: () => Promise<void>, options: MeasureOptions): Promise<Figures> {
  const figures: Figures[] = [];
  for (let round = 0; round < settings.rounds; round += 1) {
    figures.push(await measure(name, operation, options));
  }
  return medianRound(figures);
}

/** Figures scaled from requests to records, for cases that write many records per request. */
function perRecord(figures: Figures, recordsPerOperation: number): Figures {
  return {
    ...figures,
    name: `${figures.name} (records)`,
    opsPerSecond: figures.opsPerSecond * recordsPerOperation,
    operations: figures.operations * recordsPerOperation,
    cpuMicrosPerOp: figures.cpuMicrosPerOp / recordsPerOperation,
  };
}

/**
 * Does the CPU work of one created record without database and HTTP, as the
 * create path does it: validation and normalization, a data key wrapped by
 * the KEK, one AES-GCM encryption per field and the blind index of each
 * searchable field.
 */
async function prepareRecord(keys: LocalKeyProvider, keyring: Keyring, policy: Policy, values: Record<string, string>): Promise<void> {
  const validated = validateValues(policy, { recordType: 'customer', values, purpose: 'signup', mode: 'create' });
  const subjectToken = generateSubjectToken();
  const dataKey = await keys.generateDataKey(dataKeyContext(subjectToken));
  for (const [field, value] of validated.set) {
    encryptField(dataKey.plaintext, { recordType: 'customer', subjectToken, field }, value);
    if (validated.recordPolicy.fields[field]?.searchable === true) {
      blindIndex(keyring, blindIndexNamespace('customer', field), String(value));
    }
  }
  dataKey.plaintext.fill(0);
}

async function main(): Promise<void> {
  const dataDir = await mkdtemp(join(tmpdir(), 'domicile-bench-'));
  const opened = await openBenchDatabase(join(dataDir, 'db'), settings.concurrency + 2);
  const { db } = opened;
  const logger = pino({ level: 'silent' });
  const keys = await openLocalKeyFile(join(dataDir, 'keys', 'kek.json'));
  const server = http.createServer();
  try {
    await migrate(db, logger);
    const policy = loadPolicyFile(fileURLToPath(new URL('../examples/policy.yaml', import.meta.url)));
    const keyring = await loadKeyring(db, keys);
    const vault = createVault({ db, policy, keys, keyring, logger });
    const app = createGatewayApp({ vault, db, policy, keyring, logger, appOrigins: ['http://localhost:8080'], gatewayOrigin: 'http://localhost:8081', ready: async () => true });
    server.on('request', app);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as AddressInfo).port;
    const { secret } = await createCredential(db, { name: 'bench', location: 'in-country', scopes: { operations: ['records:create', 'records:read'], recordTypes: ['customer'] } });
    const auth = { authorization: `Bearer ${secret}` };
    await db.pool.query('CREATE TABLE bench_raw (id uuid PRIMARY KEY, token text NOT NULL UNIQUE, fields jsonb NOT NULL, version integer NOT NULL, created_at timestamptz NOT NULL DEFAULT now())');

    const agent = new http.Agent({ keepAlive: true, maxSockets: settings.concurrency });
    const options: MeasureOptions = { durationMs: settings.durationMs, warmupMs: settings.warmupMs, concurrency: settings.concurrency, maxOperations: settings.maxOperations };
    const batchOptions: MeasureOptions = { ...options, maxOperations: Math.max(1, Math.floor(settings.maxOperations / BATCH_SIZE)) };
    const created: string[] = [];

    console.log(`database: ${db.kind}, concurrency ${settings.concurrency}, ${settings.rounds} rounds of ${settings.durationMs} ms, median round shown`);

    const rawSingle = await rounds('raw single-row INSERT', async () => {
      await db.pool.query('INSERT INTO bench_raw (id, token, fields, version) VALUES ($1, $2, $3, 1)', [randomUUID(), `sub_${randomUUID()}`, rawFields()]);
    }, options);
    const apiCreate = await rounds('POST /api/v1/records', async () => {
      const text = await send(agent, port, { method: 'POST', path: '/api/v1/records', headers: auth, body: JSON.stringify({ recordType: 'customer', values: syntheticCustomer(), purpose: 'signup' }), expect: 201 });
      if (created.length < 10_000) created.push((JSON.parse(text) as { subjectToken: string }).subjectToken);
    }, options);
    const actor = { id: 'bench', location: 'in-country' as const };
    const vaultCreate = await rounds('vault.create (no HTTP)', async () => {
      await vault.create({ recordType: 'customer', values: syntheticCustomer(), actor, purpose: 'signup' });
    }, options);
    // Floors: what any API call costs here without database or crypto, and
    // what preparing one record costs without database or HTTP.
    const httpFloor = await rounds('GET /healthz (HTTP floor)', async () => {
      await send(agent, port, { method: 'GET', path: '/healthz', headers: {}, expect: 200 });
    }, options);
    const prepareFloor = await rounds('prepare a record (CPU floor)', async () => {
      await prepareRecord(keys, keyring, policy, syntheticCustomer());
    }, { ...options, concurrency: 1 });
    const apiRead = await rounds('GET /api/v1/records/:subjectToken', async () => {
      const token = created[Math.floor(Math.random() * created.length)] ?? '';
      await send(agent, port, { method: 'GET', path: `/api/v1/records/${token}?recordType=customer`, headers: { ...auth, 'x-access-purpose': 'support' }, expect: 200 });
    }, options);
    const rawMulti = await rounds(`raw ${BATCH_SIZE}-row INSERT`, async () => {
      const values: string[] = [];
      const params: unknown[] = [];
      for (let row = 0; row < BATCH_SIZE; row += 1) {
        values.push(`($${row * 3 + 1}, $${row * 3 + 2}, $${row * 3 + 3}, 1)`);
        params.push(randomUUID(), `sub_${randomUUID()}`, rawFields());
      }
      await db.pool.query(`INSERT INTO bench_raw (id, token, fields, version) VALUES ${values.join(', ')}`, params);
    }, batchOptions);
    const apiBatch = await rounds(`POST /api/v1/records:batch (${BATCH_SIZE})`, async () => {
      const records = Array.from({ length: BATCH_SIZE }, () => ({ recordType: 'customer', values: syntheticCustomer(), purpose: 'signup' }));
      const text = await send(agent, port, { method: 'POST', path: '/api/v1/records:batch', headers: auth, body: JSON.stringify({ records }), expect: 200 });
      if (text.includes('"error"')) throw new Error(`batch item failed: ${text.slice(0, 300)}`);
    }, batchOptions);
    agent.destroy();

    report(rawSingle.name, rawSingle);
    report(apiCreate.name, apiCreate, rawSingle);
    report(vaultCreate.name, vaultCreate, rawSingle);
    report(apiRead.name, apiRead, rawSingle);
    report(httpFloor.name, httpFloor, rawSingle);
    const rawRecords = perRecord(rawMulti, BATCH_SIZE);
    const batchRecords = perRecord(apiBatch, BATCH_SIZE);
    report(rawRecords.name, rawRecords);
    report(batchRecords.name, batchRecords, rawRecords);
    report(prepareFloor.name, prepareFloor, rawRecords);

    const createRatio = apiCreate.opsPerSecond / rawSingle.opsPerSecond;
    const batchRatio = batchRecords.opsPerSecond / rawRecords.opsPerSecond;
    console.log(`create ratio ${createRatio.toFixed(2)} (goal >= ${CREATE_GOAL}): ${createRatio >= CREATE_GOAL ? 'met' : 'missed'}`);
    console.log(`batch ratio  ${batchRatio.toFixed(2)} (goal >= ${BATCH_GOAL}): ${batchRatio >= BATCH_GOAL ? 'met' : 'missed'}`);
    if (createRatio < CREATE_GOAL || batchRatio < BATCH_GOAL) {
      console.log(
        'limits (read with the figures above): vault.create without HTTP shows what the HTTP path costs, and cpu µs/op what each ' +
          'operation costs this process, load generator included. Single creates that arrive together share one statement that ' +
          'writes the 8 tables and their audit entries and commits on its own; a seal then chains the audit entries of every ' +
          'create committed meanwhile under the audit head lock. Each record costs CPU here for validation, a new data key ' +
          'wrapped by the KEK, one AES-GCM encryption per field and keyed hashes, which bounds batch creates. The load ' +
          'generator shares this process and the machine with the gateway' +
          (db.kind === 'pglite' ? ', and PGlite runs one statement at a time in this process, so HTTP, JSON and crypto share its thread.' : ' and the database server.'),
      );
    }
  } finally {
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await keys.close();
    await opened.close();
    await rm(dataDir, { recursive: true, force: true });
  }
}

await main();
