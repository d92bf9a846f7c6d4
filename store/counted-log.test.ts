import assert from 'node:assert/strict';
import { mock, test } from 'node:test';
import { createCountedLog } from './counted-log.ts';

test('counted log writes the first event at once', () => {
  const lines: Array<[number, string]> = [];
  const note = createCountedLog(10_000, (count, first: string) => lines.push([count, first]));
  note('a');
  assert.deepEqual(lines, [[1, 'a']]);
});

test('counted log writes a burst when its interval ends', () => {
  mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 1_000_000 });
  try {
    const lines: Array<[number, string]> = [];
    const note = createCountedLog(10_000, (count, first: string) => lines.push([count, first]));
    note('a');
    mock.timers.tick(1_000);
    note('b');
    note('c');
    assert.deepEqual(lines, [[1, 'a']]);
    mock.timers.tick(9_000);
    assert.deepEqual(lines, [[1, 'a'], [2, 'b']]);
    mock.timers.tick(20_000);
    assert.equal(lines.length, 2, 'no line without events');
    note('d');
    assert.deepEqual(lines.at(-1), [1, 'd']);
  } finally {
    mock.timers.reset();
  }
});
