import { join } from 'node:path';
import { expect } from 'chai';
import { AbortError, Processor, ProcessorClosedError } from 'mapscale';
import { waitFor, withDaemons } from './helpers/daemon.js';
import { within } from './helpers/bounded.js';
import { tempDir } from './helpers/files.js';
import { noteAndSpin, spinJobs as spinJobsOf, startedJobs as started } from './fixtures/spin-work.js';

/**
 * Issue 12, item 6: a cancel used to reach an instance thread only through its event loop, which a
 * batch of synchronous jobs holds until the batch is done; so the aborted map's jobs kept starting,
 * and the next map waited behind them. Now the daemon's main thread tells the thread through shared
 * memory, checked between jobs and before every batch.
 */

const JOB_MS = 300;
const WORKERS = 2;
const spinJobs = (file: string, count: number, first = 0) => spinJobsOf(file, count, JOB_MS, first);

/**
 * After the stop at `startedAtStop` starts, at most one more job per instance may have started
 * (in the instant between reading the file and the cancel reaching the daemon); nothing after.
 * Checked once the next map has been answered and a few more jobs' time has passed, so a job that
 * was still going to start would have.
 */
async function expectNoneStartedAfter(file: string, startedAtStop: number, mapper: Processor | null): Promise<void> {
  if (mapper) {
    // The next map is answered after at most the jobs that were running: not after the cancelled ones.
    expect(await within(mapper.map(spinJobs(file, 1, 10_000)), 4 * JOB_MS + 3_000, 'the next 1-job map')).to.deep.equal([10_000]);
  }
  await new Promise((resolve) => setTimeout(resolve, 4 * JOB_MS));
  const cancelledStarts = started(file).filter((index) => index < 10_000);
  expect(cancelledStarts.length, `jobs started: ${cancelledStarts.length}, ${startedAtStop} when stopped`).to.be.at.most(startedAtStop + WORKERS);
}

describe('cancelling synchronous jobs', function () {
  this.timeout(60_000);

  for (const dataConnections of [true, false]) {
    it(`abort: no job of the aborted map starts once the cancel reached the daemon, and the next map is not held up (${dataConnections ? 'data connections' : 'daemon port'})`, async () => {
      const dir = tempDir();
      const file = join(dir.path, 'started');
      try {
        await withDaemons(1, { workers: WORKERS }, async ([daemon]) => {
          const mapper = new Processor(noteAndSpin, [daemon!.address], { dataConnections });
          try {
            const controller = new AbortController();
            const map = mapper.map(spinJobs(file, 200), { signal: controller.signal });
            map.catch(() => {});
            await waitFor(() => started(file).length >= 5, 20_000, '5 jobs to start');
            const startedAtStop = started(file).length;
            controller.abort();
            expect(await within(map.then(() => null, (e: unknown) => e), 2_000, 'the aborted map')).to.be.instanceOf(AbortError);
            await expectNoneStartedAfter(file, startedAtStop, mapper);
          } finally {
            await mapper.shutdown({ force: true });
          }
        });
      } finally {
        dir.remove();
      }
    });
  }

  it('an imap loop broken early: no more of its jobs start, and the next map is not held up', async () => {
    const dir = tempDir();
    const file = join(dir.path, 'started');
    try {
      await withDaemons(1, { workers: WORKERS }, async ([daemon]) => {
        const mapper = new Processor(noteAndSpin, [daemon!.address]);
        try {
          let seen = 0;
          let startedAtStop = 0;
          await within((async () => {
            for await (const index of mapper.imap(spinJobs(file, 200))) {
              expect(index).to.equal(seen);
              if (++seen === 4) {
                startedAtStop = started(file).length;
                break;
              }
            }
          })(), 20_000, 'the imap loop');
          await expectNoneStartedAfter(file, startedAtStop, mapper);
        } finally {
          await mapper.shutdown({ force: true });
        }
      });
    } finally {
      dir.remove();
    }
  });

  it('shutdown({ force: true }) mid-map: no more of its jobs start, and shutdown ends after the running ones', async () => {
    const dir = tempDir();
    const file = join(dir.path, 'started');
    try {
      await withDaemons(1, { workers: WORKERS }, async ([daemon]) => {
        const mapper = new Processor(noteAndSpin, [daemon!.address]);
        const map = mapper.map(spinJobs(file, 200));
        map.catch(() => {});
        await waitFor(() => started(file).length >= 5, 20_000, '5 jobs to start');
        const startedAtStop = started(file).length;
        await within(mapper.shutdown({ force: true }), 4 * JOB_MS + 5_000, 'shutdown({ force: true })');
        expect(await map.then(() => null, (e: unknown) => e)).to.be.instanceOf(ProcessorClosedError);
        // The daemon serves the next coordinator at once.
        const next = new Processor(noteAndSpin, [daemon!.address]);
        try {
          await expectNoneStartedAfter(file, startedAtStop, next);
        } finally {
          await next.shutdown({ force: true });
        }
      });
    } finally {
      dir.remove();
    }
  });
});
