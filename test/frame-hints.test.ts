import { expect } from 'chai';
import { JobError, JobTooLargeError, Processor } from 'mapscale';
import { withDaemons } from './helpers/daemon.js';

const LIMIT = 64 * 1024;

async function tooLarge(mapper: Processor<string, number>, job: string): Promise<JobTooLargeError> {
  const error = await mapper.map([job]).then(() => null, (e: unknown) => e);
  expect(error).to.be.instanceOf(JobError);
  const cause = (error as JobError).cause;
  expect(cause).to.be.instanceOf(JobTooLargeError);
  return cause as JobTooLargeError;
}

describe('hints that fit how the workers were made', () => {
  it('local workers: maxFrameBytes is their frame limit, and a job over it says to raise maxFrameBytes', async () => {
    const small = new Processor((s: string) => s.length, 1, { maxFrameBytes: LIMIT });
    try {
      const cause = await tooLarge(small, 'x'.repeat(100_000));
      expect(cause.limit).to.equal(LIMIT);
      expect(cause.message).to.include('maxFrameBytes').and.not.include('--max-frame-bytes');
    } finally {
      await small.shutdown();
    }
    // Raising it raises what the local daemon accepts.
    const larger = new Processor((s: string) => s.length, 1, { maxFrameBytes: 2 * LIMIT });
    try {
      expect(await larger.map(['x'.repeat(100_000)])).to.deep.equal([100_000]);
    } finally {
      await larger.shutdown();
    }
  });

  it('a daemon started by hand: a job over its limit says to raise its --max-frame-bytes', async () => {
    await withDaemons(1, { workers: 1, args: ['--max-frame-bytes', String(LIMIT)] }, async ([daemon]) => {
      const mapper = new Processor((s: string) => s.length, [daemon!.address]);
      try {
        const cause = await tooLarge(mapper, 'x'.repeat(100_000));
        expect(cause.limit).to.equal(LIMIT);
        expect(cause.message).to.include('--max-frame-bytes');
      } finally {
        await mapper.shutdown();
      }
    });
  });
});
