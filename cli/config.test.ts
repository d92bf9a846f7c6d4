import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, it } from 'node:test';
import { DomicileError } from '../policy/index.ts';
import { loadConfig, productionWarnings } from './config.ts';

describe('loadConfig', () => {
  it('uses the embedded defaults', () => {
    const config = loadConfig({});
    assert.equal(config.appPort, 8080);
    assert.equal(config.gatewayPort, 8081);
    assert.equal(config.appOrigin, 'http://localhost:8080');
    assert.equal(config.gatewayOrigin, 'http://localhost:8081');
    assert.equal(config.databaseUrl, undefined);
    assert.equal(config.upstream, undefined);
    assert.equal(config.dataDir, path.resolve('data'));
    assert.equal(config.keyFile, path.resolve('data', 'kek.json'));
  });

  it('derives origins from the ports', () => {
    const config = loadConfig({ DOMICILE_APP_PORT: '9000', DOMICILE_GATEWAY_PORT: '9001' });
    assert.equal(config.appOrigin, 'http://localhost:9000');
    assert.equal(config.gatewayOrigin, 'http://localhost:9001');
  });

  it('reduces configured origins to scheme, host and port', () => {
    const config = loadConfig({ DOMICILE_APP_ORIGIN: 'https://shop.example/path?q=1' });
    assert.equal(config.appOrigin, 'https://shop.example');
  });

  it('names each invalid variable', () => {
    try {
      loadConfig({ DOMICILE_APP_PORT: '70000', DOMICILE_UPSTREAM: 'not a url' });
      assert.fail('expected invalid settings to be rejected');
    } catch (error) {
      assert.ok(error instanceof DomicileError);
      const paths = error.issues.map((issue) => issue.path).sort();
      assert.deepEqual(paths, ['DOMICILE_APP_PORT', 'DOMICILE_UPSTREAM']);
      assert.doesNotMatch(error.message, /not a url/, 'the message must not echo the value');
    }
  });

  it('warns about the evaluation defaults', () => {
    const warnings = productionWarnings(loadConfig({}));
    assert.equal(warnings.length, 3);
    assert.match(warnings[0] ?? '', /PGlite/);
    assert.match(warnings[1] ?? '', /kek\.json/);
    assert.match(warnings[2] ?? '', /example app/);
  });

  it('drops warnings for production settings', () => {
    const warnings = productionWarnings(
      loadConfig({ DATABASE_URL: 'postgres://db.internal/domicile', DOMICILE_UPSTREAM: 'https://app.example' }),
    );
    assert.equal(warnings.length, 1);
  });
});
