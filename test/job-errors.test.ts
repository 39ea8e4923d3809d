import { expect } from 'chai';
import { CleanupError, JobError, MapScaleError, Processor, SetupError } from 'mapscale';
import { CleanupFails, Picky, SetupFails } from './fixtures/work-functions.js';

describe('errors from user code', () => {
  it('rejects a map with JobError carrying the job index, the worker address and the original error', async () => {
    const mapper = new Processor(new Picky([37]), 2);
    try {
      const jobs = Array.from({ length: 100 }, (_, i) => i);
      const error = await mapper.map(jobs).then(() => null, (e: unknown) => e);
      expect(error).to.be.instanceOf(JobError).and.instanceOf(MapScaleError);
      const jobError = error as JobError;
      expect(jobError.code).to.equal('MS_JOB_FAILED');
      expect(jobError.jobIndex).to.equal(37);
      expect(jobError.workerAddress).to.match(/^127\.0\.0\.1:\d+$/);
      const cause = jobError.cause as Error & { code?: string; detail?: unknown };
      expect(cause).to.be.instanceOf(Error);
      expect(cause.name).to.equal('PickyError');
      expect(cause.message).to.equal('job value 37 is not welcome');
      expect(cause.code).to.equal('E_PICKY');
      expect(cause.detail).to.deep.equal({ job: 37 });
      expect(cause.stack).to.include('PickyError').and.include('call');
    } finally {
      await mapper.shutdown();
    }
  });

  it('keeps the workers up after a job error: the next map works', async () => {
    const mapper = new Processor(new Picky([5]), 2);
    try {
      await mapper.map([4, 5, 6]).catch(() => {});
      expect(await mapper.map([1, 2, 3])).to.deep.equal([2, 3, 4]);
      expect(mapper.workerCount).to.equal(2);
    } finally {
      await mapper.shutdown();
    }
  });

  it('names the lowest failing job when several fail', async () => {
    const mapper = new Processor(new Picky([900, 40, 41]), 1, { chunkSize: 1000 });
    try {
      const error = (await mapper.map(Array.from({ length: 1000 }, (_, i) => i)).catch((e: unknown) => e)) as JobError;
      expect(error.jobIndex).to.equal(40);
    } finally {
      await mapper.shutdown();
    }
  });

  it('reports a thrown non-Error value as the cause, not as a crash', async () => {
    const mapper = new Processor((x: number) => {
      if (x === 2) throw { reason: 'plain object thrown' };
      return x;
    }, 1);
    try {
      const error = (await mapper.map([1, 2, 3]).catch((e: unknown) => e)) as JobError;
      expect(error).to.be.instanceOf(JobError);
      expect((error.cause as Error & { value: unknown }).value).to.deep.equal({ reason: 'plain object thrown' });
    } finally {
      await mapper.shutdown();
    }
  });

  it('rejects maps with SetupError when setup() throws on a worker', async () => {
    const mapper = new Processor(new SetupFails(), 2);
    try {
      const error = await mapper.map([1]).then(() => null, (e: unknown) => e);
      expect(error).to.be.instanceOf(SetupError);
      expect((error as SetupError).code).to.equal('MS_SETUP_FAILED');
      expect(((error as SetupError).cause as Error).name).to.equal('RangeError');
    } finally {
      await mapper.shutdown();
    }
  });

  it('reports every failing cleanup() from shutdown() as CleanupError, and still closes', async () => {
    const mapper = new Processor(new CleanupFails(), 2);
    await mapper.map([1, 2, 3]);
    const error = await mapper.shutdown().then(() => null, (e: unknown) => e);
    expect(error).to.be.instanceOf(CleanupError);
    const cleanupError = error as CleanupError;
    expect(cleanupError.code).to.equal('MS_CLEANUP_FAILED');
    expect(cleanupError.errors).to.have.length(2);
    for (const { error: e, workerAddress } of cleanupError.errors) {
      expect(e.message).to.equal('cleanup could not flush');
      expect(workerAddress).to.match(/^127\.0\.0\.1:\d+#\d$/);
    }
    expect(mapper.status).to.equal('closed');
  });
});
