/**
 * The MongoDB store's consistency design (lib/store/mongo-design.ts) without a server: the
 * visibility horizon a reader pages under, and the counter deltas. The store itself runs against a
 * real server only (test/store/mongo.test.ts, with SETS_TEST_MONGODB_URI or SETS_TEST_MONGO_URL).
 */
import { strict as assert } from 'node:assert';
import { counterDeltas, counterId, visibilityCapText, visibilityCapUs } from '../../lib/store/mongo-design';
import { formatMicros, toMicros } from '../../lib/store/common';

describe('MongoDB store design (no server)', function () {
  const now = Date.parse('2026-01-01T00:00:00Z');
  const live = new Date(now + 30_000);
  const expired = new Date(now - 1);

  it('a reader never passes a date_added an unfinished write may still fill in', function () {
    // simulated interleaving: writer W records its reservation (floor = clock 100), writer W2
    // reserves 102 and inserts; W reserves 101 but has not inserted yet
    const clock = 102;
    const cap = visibilityCapUs(clock, [{ floor: 100, expiresAt: live }], now);
    assert.equal(cap, 100, 'W2 (102) stays out of sight until W (101) is in');
    assert.ok((cap ?? Infinity) < 101, 'the cursor cannot move past W');
    // without reservations the clock read first bounds the page: later reservations are above it
    assert.equal(visibilityCapUs(clock, [], now), 102);
    // the lowest live floor wins; an expired reservation (a crashed writer) no longer holds readers back
    assert.equal(visibilityCapUs(500, [{ floor: 300, expiresAt: live }, { floor: 200, expiresAt: live }, { floor: 10, expiresAt: expired }], now), 200);
    assert.equal(visibilityCapUs(null, [{ floor: 1, expiresAt: live }], now), null, 'nothing reserved yet: no bound');
  });

  it('the cap is a date_added text compared as the store compares them', function () {
    const us = toMicros('2026-01-01T00:00:00.000123Z')?.us ?? 0;
    const text = visibilityCapText(us, [], now);
    assert.equal(text, '2026-01-01T00:00:00.000123Z');
    assert.ok(formatMicros(us - 1) <= (text ?? '') && formatMicros(us + 1) > (text ?? ''));
  });

  it('counter deltas follow status changes, inserts and deletes; no-ops write nothing', function () {
    const d = counterDeltas([
      { collection: 'c', before: null, after: 'pending' },
      { collection: 'c', before: null, after: 'pending' },
      { collection: 'c', before: 'pending', after: 'invalid' },
      { collection: 'c', before: 'finalized', after: 'finalized' },
      { collection: 'd', before: 'finalized', after: null },
    ]);
    assert.deepEqual(Object.fromEntries(d), {
      [counterId('c', 'pending')]: 1,
      [counterId('c', 'invalid')]: 1,
      [counterId('d', 'finalized')]: -1,
    });
    assert.equal(counterDeltas([{ collection: 'c', before: null, after: 'pending' }, { collection: 'c', before: 'pending', after: null }]).size, 0);
  });
});
