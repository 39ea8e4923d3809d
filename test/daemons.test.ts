import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { expect } from 'chai';
import { AuthenticationError, Processor } from 'mapscale';
import { Power, Recorder } from './fixtures/work-functions.js';
import { startDaemon, waitFor, withDaemons } from './helpers/daemon.js';
import { filesStartingWith, tempDir } from './helpers/files.js';

const run = promisify(execFile);

describe('worker daemons', () => {
  it('logs a listening line with its host and port', async () => {
    await withDaemons(1, {}, async ([daemon]) => {
      const line = daemon!.logs.find((l) => l.event === 'listening')!;
      expect(line.host).to.equal('127.0.0.1');
      expect(line.port).to.equal(daemon!.port).and.be.above(0);
    });
  });

  it('maps over two daemons at once by address, using every instance of both', async () => {
    await withDaemons(2, { workers: 2 }, async (daemons) => {
      const mapper = new Processor((x: number) => ({ square: x * x, pid: process.pid }), daemons.map((d) => d.address), { chunkSize: 10 });
      try {
        const results = await mapper.map(Array.from({ length: 2000 }, (_, i) => i));
        expect(mapper.workerCount).to.equal(4);
        expect(results.map((r) => r.square)).to.deep.equal(Array.from({ length: 2000 }, (_, i) => i * i));
        expect(new Set(results.map((r) => r.pid))).to.deep.equal(new Set(daemons.map((d) => d.child.pid)));
      } finally {
        await mapper.shutdown();
      }
    });
  });

  it('serves several coordinators at once, each with its own instances and state', async () => {
    await withDaemons(1, {}, async ([daemon]) => {
      const squares = new Processor(new Power(2), [daemon!.address]);
      const cubes = new Processor(new Power(3), [daemon!.address]);
      try {
        const jobs = Array.from({ length: 3000 }, (_, i) => i % 50);
        const [a, b] = await Promise.all([squares.map(jobs), cubes.map(jobs)]);
        expect(a).to.deep.equal(jobs.map((x) => x ** 2));
        expect(b).to.deep.equal(jobs.map((x) => x ** 3));
      } finally {
        await Promise.all([squares.shutdown(), cubes.shutdown()]);
      }
    });
  });

  it('stays up for the next coordinator after one shuts down', async () => {
    await withDaemons(1, {}, async ([daemon]) => {
      for (const power of [2, 3]) {
        const mapper = new Processor(new Power(power), [daemon!.address]);
        expect(await mapper.map([2])).to.deep.equal([2 ** power]);
        await mapper.shutdown();
      }
      expect(daemon!.child.exitCode).to.equal(null);
    });
  });

  it('runs cleanup() for a coordinator that disconnects without shutdown', async () => {
    const dir = tempDir();
    try {
      await withDaemons(1, { workers: 3 }, async ([daemon]) => {
        const app = fileURLToPath(new URL('./fixtures/abandoning-app.js', import.meta.url));
        const { stdout } = await run(process.execPath, [app, daemon!.address, dir.path], { timeout: 30_000 });
        expect(stdout).to.include('mapped');
        expect(filesStartingWith(dir.path, 'setup-')).to.have.length(3);
        await waitFor(() => filesStartingWith(dir.path, 'cleanup-').length === 3, 10_000, 'cleanup of 3 instances');
      });
    } finally {
      dir.remove();
    }
  });

  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    it(`on ${signal} stops accepting, runs cleanup() of every live instance and exits 0`, async () => {
      const dir = tempDir();
      const daemon = await startDaemon({ workers: 2 });
      const mapper = new Processor(new Recorder(dir.path), [daemon.address]);
      try {
        await mapper.map([1, 2, 3]);
        const code = await daemon.stop(signal);
        expect(code).to.equal(0);
        expect(filesStartingWith(dir.path, 'cleanup-')).to.have.length(2);
      } finally {
        await mapper.shutdown().catch(() => {});
        await daemon.stop();
        dir.remove();
      }
    });
  }

  describe('shared secret', () => {
    const secret = 'correct horse battery staple';

    it('accepts a coordinator that holds the secret', async () => {
      await withDaemons(1, { secret }, async ([daemon]) => {
        const mapper = new Processor(new Power(2), [daemon!.address], { secret });
        try {
          expect(await mapper.map([3])).to.deep.equal([9]);
        } finally {
          await mapper.shutdown();
        }
      });
    });

    it('refuses a wrong secret with AuthenticationError, and a missing one too', async () => {
      await withDaemons(1, { secret }, async ([daemon]) => {
        for (const options of [{ secret: 'wrong' }, {}]) {
          const saved = process.env.MAPSCALE_SECRET;
          delete process.env.MAPSCALE_SECRET;
          const mapper = new Processor(new Power(2), [daemon!.address], options);
          if (saved !== undefined) process.env.MAPSCALE_SECRET = saved;
          const error = await mapper.map([1]).then(() => null, (e: unknown) => e);
          expect(error, JSON.stringify(options)).to.be.instanceOf(AuthenticationError);
          expect((error as AuthenticationError).code).to.equal('MS_AUTH_FAILED');
          await mapper.shutdown();
        }
      });
    });

    it('takes the secret from MAPSCALE_SECRET by default', async () => {
      await withDaemons(1, { secret }, async ([daemon]) => {
        const saved = process.env.MAPSCALE_SECRET;
        process.env.MAPSCALE_SECRET = secret;
        let mapper: Processor<number, number>;
        try {
          mapper = new Processor(new Power(2), [daemon!.address]);
        } finally {
          if (saved === undefined) delete process.env.MAPSCALE_SECRET;
          else process.env.MAPSCALE_SECRET = saved;
        }
        try {
          expect(await mapper.map([4])).to.deep.equal([16]);
        } finally {
          await mapper.shutdown();
        }
      });
    });

    it('refuses to send work to a daemon that cannot prove it holds the secret', async () => {
      await withDaemons(1, {}, async ([daemon]) => {
        const mapper = new Processor(new Power(2), [daemon!.address], { secret });
        const error = await mapper.map([1]).then(() => null, (e: unknown) => e);
        expect(error).to.be.instanceOf(AuthenticationError);
        await mapper.shutdown();
      });
    });
  });
});
