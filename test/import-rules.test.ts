import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const repositoryRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const checkScript = path.join(repositoryRoot, 'scripts', 'check-imports.mjs');

function runCheck(root: string): { status: number | null; output: string } {
  const result = spawnSync(process.execPath, [checkScript, '--root', root], { encoding: 'utf8' });
  return { status: result.status, output: `${result.stdout}${result.stderr}` };
}

function writeTree(root: string, files: Record<string, string>): void {
  for (const [relative, content] of Object.entries(files)) {
    const full = path.join(root, relative);
    mkdirSync(path.dirname(full), { recursive: true });
    writeFileSync(full, content);
  }
}

test('repository follows the import rules', () => {
  const { status, output } = runCheck(repositoryRoot);
  assert.equal(status, 0, output);
});

test('import check accepts allowed imports', (t) => {
  const root = mkdtempSync(path.join(tmpdir(), 'domicile-imports-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  writeTree(root, {
    'policy/schema.ts': "import { z } from 'zod';\nexport const schema = z.string();\n",
    'tokenizer/form.ts': "import type { schema } from '../policy/schema.ts';\nexport type Form = typeof schema;\n",
    'tokenizer/keys/kms.ts': "import { KMSClient } from '@aws-sdk/client-kms';\nimport { readFile } from 'node:fs/promises';\nexport { KMSClient, readFile };\n",
    'tokenizer/form.test.ts': "import { readFileSync } from 'node:fs';\nimport '../store/vault.ts';\nexport { readFileSync };\n",
    'store/vault.ts': "import {\n  type Form,\n} from '../tokenizer/form.ts';\nexport type Vault = Form;\n",
    'gateway/api.ts': "export * from '../store/vault.ts';\nconst lazy = () => import('../tokenizer/form.ts');\nexport { lazy };\n",
    'replication/s3.ts': "import { S3Client } from '@aws-sdk/client-s3';\nimport type { Vault } from '../store/vault.ts';\nexport type S = [S3Client, Vault];\n",
    'cli/main.ts': "import '../gateway/api.ts';\nimport '../replication/s3.ts';\n",
    'examples/app.ts': "// import '../policy/schema.ts' stays a comment\nconst url = 'http://127.0.0.1/import';\nexport { url };\n",
  });

  const { status, output } = runCheck(root);

  assert.equal(status, 0, output);
  assert.match(output, /no violations/);
});

test('import check reports each broken rule', (t) => {
  const root = mkdtempSync(path.join(tmpdir(), 'domicile-imports-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  writeTree(root, {
    'policy/schema.ts': "import { helper } from '../store/helper.ts';\nexport const schema = helper;\n",
    'tokenizer/form.ts': "import { readFileSync } from 'node:fs';\nimport pg from 'pg';\nimport { KMSClient } from '@aws-sdk/client-kms';\nimport express from 'express';\nimport http from 'http';\nexport { readFileSync, pg, KMSClient, express, http };\n",
    'tokenizer/mask.ts': "import { vault } from '../store/helper.ts';\nexport const mask = vault;\n",
    'store/helper.ts': "export const helper = 1;\nexport const vault = 2;\nimport '../gateway/api.ts';\n",
    'store/a.ts': "import { b } from './b.ts';\nexport const a = b;\n",
    'store/b.ts': "import { c } from './c.ts';\nexport const b = c;\n",
    'store/c.ts': "export { a as c } from './a.ts';\n",
    'gateway/api.ts': "import '../replication/worker.ts';\n",
    'replication/worker.ts': "const load = () => import('../gateway/api.ts');\nexport { load };\n",
    'examples/app.ts': "import { schema } from '../policy/schema.ts';\nimport { gone } from './missing.ts';\nexport { schema, gone };\n",
  });

  const { status, output } = runCheck(root);

  assert.equal(status, 1, output);
  assert.match(output, /policy\/schema\.ts:1: imports store\/helper\.ts, but policy\/ may import nothing of the project/);
  assert.match(output, /tokenizer\/form\.ts:1: imports 'node:fs'/);
  assert.match(output, /tokenizer\/form\.ts:2: imports 'pg'/);
  assert.match(output, /tokenizer\/form\.ts:3: imports '@aws-sdk\/client-kms'/);
  assert.match(output, /tokenizer\/form\.ts:4: imports 'express'/);
  assert.match(output, /tokenizer\/form\.ts:5: imports 'http'/);
  assert.match(output, /tokenizer\/mask\.ts:1: imports store\/helper\.ts, but tokenizer\/ may import only policy\//);
  assert.match(output, /store\/helper\.ts:3: imports gateway\/api\.ts, but store\/ may import only policy\/, tokenizer\//);
  assert.match(output, /gateway\/api\.ts:1: imports replication\/worker\.ts/);
  assert.match(output, /replication\/worker\.ts:1: imports gateway\/api\.ts/);
  assert.match(output, /examples\/app\.ts:1: imports policy\/schema\.ts, but examples\/ may import nothing of the project/);
  assert.match(output, /examples\/app\.ts:2: imports '\.\/missing\.ts', which resolves to no file/);
  assert.match(output, /import cycle: gateway\/api\.ts -> replication\/worker\.ts -> gateway\/api\.ts/);
  assert.match(output, /import cycle: store\/a\.ts -> store\/b\.ts -> store\/c\.ts -> store\/a\.ts/);
});
