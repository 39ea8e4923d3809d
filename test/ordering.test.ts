import { expect } from 'chai';
import { Processor } from 'mapscale';
import { Jittery } from './fixtures/work-functions.js';

describe('result order', () => {
  it('keeps job order for 10,000 jobs with random per-job delays', async () => {
    const mapper = new Processor(new Jittery(), 4);
    try {
      const jobs = Array.from({ length: 10_000 }, (_, i) => i);
      const results = await mapper.map(jobs);
      expect(results).to.have.length(jobs.length);
      const wrong = results.findIndex((r, i) => r !== i * 3 + 1);
      expect(wrong, `first wrong index`).to.equal(-1);
    } finally {
      await mapper.shutdown();
    }
  });
});
