import { rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { Processor, ProcessorClosedError } from 'mapscale';
import { waitFor } from './helpers/daemon.js';

interface HoldJob {
  kind: 'first' | 'hold';
  marker: string;
}

/**
 * 'first' keeps its thread busy for 20 ms, past the daemon's resultFlushMs (5 ms); 'hold' blocks its
 * thread, synchronously, until the app has seen the first result (a marker file appears), or gives
 * up after 10 s. Only a first result sent before 'hold' starts can release it.
 */
function firstThenHold(job: HoldJob): string {
  if (job.kind === 'first') {
    const end = Date.now() + 20;
    while (Date.now() < end);
    return 'first';
  }
  const fs = process.getBuiltinModule('node:fs');
  const nap = new Int32Array(new SharedArrayBuffer(4));
  const giveUp = Date.now() + 10_000;
  while (!fs.existsSync(job.marker)) {
    if (Date.now() > giveUp) return 'gave up';
    Atomics.wait(nap, 0, 0, 5);
  }
  return 'released';
}

describe('streaming: imap, imapUnordered, lazy inputs', () => {
  it('imap yields results in job order from an async generator', async () => {
    const mapper = new Processor((x: number) => x * x, 2);
    try {
      async function* input() {
        for (let i = 0; i < 5000; i++) yield i;
      }
      const out: number[] = [];
      for await (const r of mapper.imap(input())) out.push(r);
      expect(out).to.deep.equal(Array.from({ length: 5000 }, (_, i) => i * i));
    } finally {
      await mapper.shutdown();
    }
  });

  for (const [path, options] of [['its data connection', {}], ['the daemon port', { dataConnections: false }]] as const) {
    it(`sends a result that waited past resultFlushMs before the next job of its batch starts, even a synchronous one that blocks (${path})`, async () => {
      const marker = join(tmpdir(), `mapscale-released-${process.pid}-${Date.now()}`);
      const mapper = new Processor(firstThenHold, 1, { chunkSize: 2, ...options });
      try {
        await mapper.map([]);
        const direct = 'dataConnections' in options ? 0 : 1;
        await waitFor(() => mapper.stats()[0]!.directSlots === direct, 10_000, `${direct} instance(s) to attach`);
        const out: string[] = [];
        for await (const result of mapper.imap([{ kind: 'first', marker }, { kind: 'hold', marker }] satisfies HoldJob[])) {
          out.push(result);
          if (result === 'first') writeFileSync(marker, '');
        }
        expect(out).to.deep.equal(['first', 'released']);
      } finally {
        rmSync(marker, { force: true });
        await mapper.shutdown();
      }
    });
  }

  it('imapUnordered yields every result once, in any order', async () => {
    const mapper = new Processor(async (x: number) => {
      await new Promise((resolve) => setTimeout(resolve, (x * 7) % 5));
      return x + 1;
    }, 3);
    try {
      const out: number[] = [];
      for await (const r of mapper.imapUnordered(Array.from({ length: 500 }, (_, i) => i))) out.push(r);
      expect(out.sort((a, b) => a - b)).to.deep.equal(Array.from({ length: 500 }, (_, i) => i + 1));
    } finally {
      await mapper.shutdown();
    }
  });

  it('stopping an imap loop early cancels the rest, and the Processor goes on', async () => {
    const mapper = new Processor((x: number) => x, 2);
    try {
      let pulled = 0;
      function* endless() {
        for (let i = 0; ; i++) {
          pulled++;
          yield i;
        }
      }
      let seen = 0;
      for await (const r of mapper.imap(endless())) {
        expect(r).to.equal(seen++);
        if (seen === 1000) break;
      }
      const pulledAtBreak = pulled;
      expect(await mapper.map([1, 2, 3])).to.deep.equal([1, 2, 3]);
      expect(pulled).to.equal(pulledAtBreak);
    } finally {
      await mapper.shutdown();
    }
  });

  it('ends an open imap with ProcessorClosedError at shutdown', async () => {
    const mapper = new Processor((x: number) => x, 1);
    async function* slow() {
      for (let i = 0; ; i++) {
        await new Promise((resolve) => setTimeout(resolve, 5));
        yield i;
      }
    }
    const stream = mapper.imap(slow());
    expect((await stream.next()).value).to.equal(0);
    await mapper.shutdown();
    const error = await (async () => {
      for await (const _ of stream) { /* drain */ }
    })().then(() => null, (e: unknown) => e);
    expect(error).to.be.instanceOf(ProcessorClosedError);
  });

  it('keeps the coordinator heap bounded over 1,000,000 jobs streamed through imap', async function () {
    this.timeout(180_000);
    const mapper = new Processor((job: { i: number; pad: string }) => job.i + 1, 2, { window: 20_000 });
    try {
      const total = 1_000_000;
      let produced = 0;
      async function* input() {
        // ~150 bytes a job: holding them all would take well over 100 MB.
        while (produced < total) yield { i: produced++, pad: `${'x'.repeat(100)}${produced}` };
      }
      global.gc?.();
      const baseline = process.memoryUsage().heapUsed;
      let peak = baseline;
      let consumed = 0;
      let maxAhead = 0;
      for await (const r of mapper.imap(input())) {
        if (r !== consumed + 1) throw new Error(`result ${consumed} is ${r}`);
        consumed++;
        maxAhead = Math.max(maxAhead, produced - consumed);
        if ((consumed & 0xffff) === 0) {
          // Collect first, so the sample is what is retained, not garbage not yet swept.
          global.gc?.();
          peak = Math.max(peak, process.memoryUsage().heapUsed);
        }
      }
      expect(consumed).to.equal(total);
      expect(global.gc, 'run with --expose-gc (see .mocharc.json)').to.be.a('function');
      // Lazy: the input is never read far ahead of what the consumer took.
      expect(maxAhead).to.be.at.most(20_000 + 1);
      // Generous ceiling: an unbounded run would hold ~1M jobs of ~150 bytes each.
      expect(peak - baseline, `heap grew by ${Math.round((peak - baseline) / 1e6)} MB`).to.be.below(64 * 1024 * 1024);
    } finally {
      await mapper.shutdown();
    }
  });
});
