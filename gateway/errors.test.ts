import assert from 'node:assert/strict';
import { test } from 'node:test';
import express from 'express';
import request from 'supertest';
import { silentLogger } from '../store/testing.ts';
import { createErrorHandler } from './errors.ts';

/** An app whose one route throws `error`, handled by the gateway's error handler. */
function failingApp(error: unknown): express.Express {
  const app = express();
  app.get('/', () => {
    throw error;
  });
  app.use(createErrorHandler(silentLogger()));
  return app;
}

const unavailable: Array<[string, unknown]> = [
  ['server shutdown (57P01)', Object.assign(new Error('terminating connection due to administrator command'), { code: '57P01' })],
  ['connection failure (08006)', Object.assign(new Error('connection failure'), { code: '08006' })],
  ['refused socket', Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' })],
  ['ended connection', new Error('Connection terminated unexpectedly')],
  ['broken client', new Error('Client has encountered a connection error and is not queryable')],
];

for (const [name, error] of unavailable) {
  test(`database unavailable gives 503: ${name}`, async () => {
    const response = await request(failingApp(error)).get('/');
    assert.equal(response.status, 503);
    assert.equal(response.body.error.code, 'unavailable');
    assert.equal(response.body.error.message, 'the database is unavailable; retry later');
  });
}

test('retired key version gives 503', async () => {
  const response = await request(failingApp(Object.assign(new Error('tokenization key version 1 is retired'), { code: 'DK001' }))).get('/');
  assert.equal(response.status, 503);
  assert.match(response.body.error.message, /restarted to load the current tokenization keys/);
});

test('other errors give 500 without their message', async () => {
  const response = await request(failingApp(Object.assign(new Error('duplicate key value violates unique constraint, Key (email)=(x@example.org)'), { code: '23505' }))).get('/');
  assert.equal(response.status, 500);
  assert.equal(response.body.error.code, 'internal');
  assert.equal(response.text.includes('example.org'), false);
});
