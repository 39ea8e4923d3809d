import { expect } from 'chai';
import { Processor, ProcessorClosedError, InvalidOptionError } from 'mapscale';
import { Power, Recorder } from './fixtures/work-functions.js';
import { filesStartingWith, tempDir } from './helpers/files.js';

describe('Processor lifecycle (the README example)', () => {
  it('maps on 2 local workers in job order, again on the same workers, then shuts down', async () => {
    const mapper = new Processor(new Power(2), 2);
    try {
      expect(await mapper.map([0, 1, 2, 3, 4])).to.deep.equal([0, 1, 4, 9, 16]);
      expect(await mapper.map([5, 6, 7])).to.deep.equal([25, 36, 49]);
      expect(mapper.workerCount).to.equal(2);
      expect(mapper.status).to.equal('running');
    } finally {
      await mapper.shutdown();
    }
    expect(mapper.status).to.equal('closed');
  });

  it('runs setup() once per worker across several maps, and cleanup() once per worker at shutdown', async () => {
    const dir = tempDir();
    try {
      const mapper = new Processor(new Recorder(dir.path), 3);
      const seen = new Set<string>();
      for (let round = 0; round < 3; round++) {
        for (const id of await mapper.map(Array.from({ length: 200 }, (_, i) => i))) seen.add(id);
      }
      expect(filesStartingWith(dir.path, 'setup-')).to.have.length(3);
      expect(filesStartingWith(dir.path, 'cleanup-')).to.have.length(0);
      expect(seen.size).to.be.within(1, 3);
      await mapper.shutdown();
      const setups = filesStartingWith(dir.path, 'setup-').map((f) => f.slice('setup-'.length)).sort();
      const cleanups = filesStartingWith(dir.path, 'cleanup-').map((f) => f.slice('cleanup-'.length)).sort();
      expect(cleanups).to.deep.equal(setups);
    } finally {
      dir.remove();
    }
  });

  it('accepts a plain function as the work function', async () => {
    const mapper = new Processor((x: number) => x * 10, 2);
    try {
      expect(await mapper.map([1, 2, 3])).to.deep.equal([10, 20, 30]);
    } finally {
      await mapper.shutdown();
    }
  });

  it('accepts any iterable or async iterable of jobs, and an empty list', async () => {
    const mapper = new Processor(new Power(3), 2);
    try {
      async function* generate() {
        for (let i = 0; i < 5; i++) yield i;
      }
      expect(await mapper.map(generate())).to.deep.equal([0, 1, 8, 27, 64]);
      expect(await mapper.map(new Set([2, 3]))).to.deep.equal([8, 27]);
      expect(await mapper.map([])).to.deep.equal([]);
    } finally {
      await mapper.shutdown();
    }
  });

  it('runs several maps at once on one Processor, each in its own job order', async () => {
    const mapper = new Processor(new Power(2), 2);
    try {
      const inputs = [0, 1, 2, 3].map((k) => Array.from({ length: 2000 + k * 500 }, (_, i) => i + k * 10_000));
      const outputs = await Promise.all(inputs.map((jobs) => mapper.map(jobs)));
      outputs.forEach((out, k) => expect(out).to.deep.equal(inputs[k]!.map((x) => x ** 2)));
    } finally {
      await mapper.shutdown();
    }
  });

  it('rejects map() at once after shutdown, with ProcessorClosedError', async () => {
    const mapper = new Processor(new Power(2), 1);
    await mapper.map([1]);
    await mapper.shutdown();
    const error = await mapper.map([1, 2]).then(() => null, (e: unknown) => e);
    expect(error).to.be.instanceOf(ProcessorClosedError);
    expect((error as ProcessorClosedError).code).to.equal('MS_PROCESSOR_CLOSED');
    await mapper.shutdown(); // a second shutdown is harmless
  });

  it('lets running maps finish when shutdown() is called during them', async () => {
    const mapper = new Processor(new Power(2), 2);
    const running = mapper.map(Array.from({ length: 5000 }, (_, i) => i));
    await mapper.shutdown();
    expect(await running).to.have.length(5000);
  });

  it('rejects bad arguments with InvalidOptionError naming what is wrong', () => {
    for (const workers of [0, -1, 1.5, [], [0], [true], [1.5]] as unknown[]) {
      expect(() => new Processor(new Power(2), workers as number)).to.throw(InvalidOptionError);
    }
    expect(() => new Processor(new Power(2), 1, { connectTimeoutMs: -5 })).to.throw(InvalidOptionError, /connectTimeoutMs/);
    expect(() => new Processor(new Power(2), ['no-port-here'])).to.throw(InvalidOptionError);
  });
});
