import { expect } from 'chai';
import { Processor } from 'mapscale';
import { Echo } from './fixtures/work-functions.js';

describe('values that jobs and results may be', () => {
  let mapper: Processor<unknown, unknown>;
  before(() => {
    mapper = new Processor(new Echo(), 2);
  });
  after(async () => {
    await mapper.shutdown();
  });

  it('round-trips every kind msgpack carries, with its type kept', async () => {
    const jobs: unknown[] = [
      0, -1.5, 2 ** 53 - 1, 'text ✓', true, null, [1, [2, [3]]],
      { a: 1, nested: { b: [1, 2] } },
      new Map<unknown, unknown>([['k', 1], [2, 'two']]),
      new Set([1, 'a']),
      new Date('2026-11-25T12:00:00Z'),
      12345678901234567890123n, -5n,
      Buffer.from([1, 2, 3]),
      new Uint8Array([4, 5, 6]),
      new Float64Array([1.5, -2.25, Math.PI]),
      new Float32Array([0.5]),
      new Int32Array([-7, 7]),
      new Uint16Array([65535]),
      new BigInt64Array([-(2n ** 62n)]),
    ];
    const results = await mapper.map(jobs);
    expect(results).to.have.length(jobs.length);
    results.forEach((value, i) => {
      const job = jobs[i];
      if (job !== null && typeof job === 'object') expect(value?.constructor, `job ${i}`).to.equal(job.constructor);
      expect(value, `job ${i}`).to.deep.equal(job);
    });
  });

  it('carries lists of plain numbers exactly both ways (one number list per batch): -0, NaN, the infinities, the extremes', async () => {
    const special = [0, -0, 0.1, -1.5, 2 ** 53 - 1, -(2 ** 53), 5e-324, 1.7976931348623157e308, NaN, Infinity, -Infinity];
    const jobs = Array.from({ length: 5000 }, (_, i) => special[i % special.length]! * (i % 2 === 0 ? 1 : 1 + i / 1e4));
    const results = await mapper.map(jobs);
    expect(results).to.have.length(jobs.length);
    results.forEach((value, i) => expect(Object.is(value, jobs[i]), `job ${i}: ${String(value)} vs ${jobs[i]}`).to.equal(true));
  });

  it('keeps a Float64Array typed end to end, so the worker can do typed math on it', async () => {
    const sum = new Processor((a: Float64Array) => {
      if (!(a instanceof Float64Array)) throw new TypeError(`got ${Object.prototype.toString.call(a)}`);
      let s = 0;
      for (let i = 0; i < a.length; i++) s += a[i]!;
      return s;
    }, 1);
    try {
      const big = new Float64Array(1 << 17).map((_, i) => i);
      expect(await sum.map([big, new Float64Array([0.5, 0.25])])).to.deep.equal([(big.length * (big.length - 1)) / 2, 0.75]);
    } finally {
      await sum.shutdown();
    }
  });

  it('keeps object keys such as __proto__ and constructor as plain data', async () => {
    const job = JSON.parse('{"__proto__": {"polluted": true}, "constructor": {"prototype": {"x": 1}}}');
    const [out] = (await mapper.map([job])) as Record<string, unknown>[];
    expect(({} as Record<string, unknown>).polluted).to.equal(undefined);
    expect(Object.getPrototypeOf(out)).to.equal(Object.prototype);
  });
});
