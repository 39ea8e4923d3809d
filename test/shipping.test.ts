import { execFile, spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { expect } from 'chai';
import { Processor, SetupError, ShippingError, WorkFunction } from 'mapscale';
import { ForgetfulGreeter, Greeter } from './fixtures/module-scoped.js';
import { Power, ScaledPlusOne } from './fixtures/work-functions.js';
import { waitFor, withDaemons } from './helpers/daemon.js';
import { tempDir } from './helpers/files.js';

const run = promisify(execFile);
const COORDINATOR_ENTRY = new URL('../packages/coordinator/dist/index.js', import.meta.url).href;

describe('shipping the work function', () => {
  it('runs a class defined in the app\'s main script on a daemon that has none of the app\'s files', async () => {
    const app = tempDir('mapscale-app-');
    const workerHome = tempDir('mapscale-worker-home-');
    try {
      await withDaemons(1, { cwd: workerHome.path }, async ([daemon]) => {
        const script = join(app.path, 'main.mjs');
        writeFileSync(script, `
          import { unlinkSync } from 'node:fs';
          import { Processor, WorkFunction } from ${JSON.stringify(COORDINATOR_ENTRY)};
          // The app's own file is gone before anything is shipped: the class must travel by value.
          unlinkSync(new URL(import.meta.url));
          class Summer extends WorkFunction {
            constructor(offset) { super(); this.offset = offset; this.table = new Map([[1, 'one']]); }
            async setup() { this.os = await import('node:os'); }
            async call(x) {
              const { existsSync } = await import('node:fs');
              return { sum: x + this.offset, label: this.table.get(x) ?? null, pid: process.pid,
                       hasHostname: typeof this.os.hostname() === 'string', appFileSeen: existsSync(${JSON.stringify(script)}) };
            }
          }
          const mapper = new Processor(new Summer(100), [process.env.DAEMON]);
          try {
            console.log(JSON.stringify(await mapper.map([1, 2])));
          } finally {
            await mapper.shutdown();
          }
        `);
        const { stdout } = await run(process.execPath, [script], { env: { ...process.env, DAEMON: daemon!.address }, timeout: 30_000 });
        const results = JSON.parse(stdout.trim()) as { sum: number; label: string | null; pid: number; hasHostname: boolean; appFileSeen: boolean }[];
        expect(results.map((r) => r.sum)).to.deep.equal([101, 102]);
        expect(results.map((r) => r.label)).to.deep.equal(['one', null]);
        expect(results.every((r) => r.pid === daemon!.child.pid && r.hasHostname && !r.appFileSeen)).to.equal(true);
      });
    } finally {
      app.remove();
      workerHome.remove();
    }
  });

  it('ships a chain of user classes (a subclass of a subclass of WorkFunction)', async () => {
    const mapper = new Processor(new ScaledPlusOne(10, 1), 1);
    try {
      expect(await mapper.map([1, 2, 3])).to.deep.equal([11, 21, 31]);
    } finally {
      await mapper.shutdown();
    }
  });

  it('ships a class that declares static module = import.meta.url by reference, so it may use its module scope', async () => {
    const mapper = new Processor(new Greeter('?'), 2);
    try {
      expect(await mapper.map(['ada', 'bob'])).to.deep.equal(['HELLO ADA!?', 'HELLO BOB!?']);
    } finally {
      await mapper.shutdown();
    }
  });

  it('ships a class from a module that also holds the app (and imports Processor), running no app code on the workers', async () => {
    const { main } = await import('./fixtures/bundled/app-and-work.js');
    await withDaemons(1, { workers: 2 }, async ([daemon]) => {
      expect(await main([daemon!.address])).to.deep.equal([3, 6, 9]);
    });
    expect(await main(1)).to.deep.equal([3, 6, 9]);
  });

  it('fails setup with a clear error when the module starts a Processor at its top level, which would run on every worker', async () => {
    // Here, in the app, the module's own top-level Processor is not started.
    (globalThis as { mapscaleTestApp?: boolean }).mapscaleTestApp = true;
    const { Doubler } = await import('./fixtures/bundled/app-at-top-level.js');
    const mapper = new Processor(new Doubler(), 1);
    try {
      const error = await mapper.map([1]).then(() => null, (e: unknown) => e);
      expect(error).to.be.instanceOf(SetupError);
      expect(((error as SetupError).cause as Error).message).to.include('Processor from \'mapscale\' cannot be used inside a worker');
    } finally {
      await mapper.shutdown();
    }
  });

  it('refuses, at construction, what cannot be shipped, with ShippingError', () => {
    class WithPrivate extends WorkFunction<number, number> {
      #secret = 1;
      call(x: number) {
        return x + this.#secret;
      }
    }
    class WithFunctionState extends WorkFunction<number, number> {
      helper = (x: number) => x;
      call(x: number) {
        return this.helper(x);
      }
    }
    class WrongModule extends WorkFunction<number, number> {
      static module = './relative.js';
      call(x: number) {
        return x;
      }
    }
    class NotAWorkFunction {
      call(x: number) {
        return x;
      }
    }
    // A module-scope reference too (see module-scope.test.ts).
    for (const fn of [new WithPrivate(), new WithFunctionState(), new WrongModule(), new NotAWorkFunction(), Math.max, new ForgetfulGreeter()]) {
      expect(() => new Processor(fn as never, 1), (fn as object).constructor.name).to.throw(ShippingError);
    }
  });

  it('fails the first map with ShippingError when the module cannot be bundled, and stops the local daemon started meanwhile', async () => {
    class Unbundlable extends WorkFunction<number, number> {
      static module = new URL('./fixtures/no-such-module.js', import.meta.url).href;
      call(x: number) {
        return x;
      }
    }
    // The local daemon starts while the module is bundled; it must not outlive the failure.
    const localDaemons = () => spawnSync('pgrep', ['-P', String(process.pid), '-f', 'worker-server/dist/(bundled/)?local-entry.js'])
      .stdout.toString().split('\n').filter(Boolean);
    const before = new Set(localDaemons());
    const mapper = new Processor(new Unbundlable(), 1);
    try {
      const error = await mapper.map([1]).then(() => null, (e: unknown) => e);
      expect(error).to.be.instanceOf(ShippingError);
      expect((error as Error).message).to.include('cannot bundle the module of Unbundlable');
    } finally {
      await mapper.shutdown().catch(() => {});
    }
    await waitFor(() => localDaemons().every((pid) => before.has(pid)), 15_000, 'the local daemon to exit');
  });

  it('ships the work function once per worker session, not per job or per map', async () => {
    await withDaemons(1, {}, async ([daemon]) => {
      const mapper = new Processor(new Power(2), [daemon!.address]);
      try {
        for (let i = 0; i < 3; i++) await mapper.map(Array.from({ length: 1000 }, (_, j) => j));
      } finally {
        await mapper.shutdown();
      }
      expect(daemon!.logs.filter((l) => l.event === 'setup-done')).to.have.length(1);
    });
  });
});
