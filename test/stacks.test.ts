import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import { JobError, Processor, SetupError, WorkFunction } from 'mapscale';
import { Picky, SetupFails } from './fixtures/work-functions.js';

const THIS_FILE = fileURLToPath(import.meta.url);
const FIXTURES = fileURLToPath(new URL('./fixtures/work-functions.js', import.meta.url));

/** `file:line` of the line of `file` that holds `marker` (this compiled file's own lines). */
function lineOf(file: string, marker: string): string {
  const lines = readFileSync(file, 'utf8').split('\n');
  const index = lines.findIndex((line) => line.includes(marker) && !line.includes('lineOf('));
  expect(index, marker).to.be.greaterThan(-1);
  return `${file}:${index + 1}:`;
}

class FailsInSetup extends WorkFunction<number, number> {
  override setup(): void {
    throw new Error('setup-marker: cannot open');
  }
  call(x: number): number {
    return x;
  }
}

class ThrowsAndReturns extends WorkFunction<string, unknown> {
  call(job: string): unknown {
    if (job === 'throw') throw new TypeError('thrown-marker');
    return new RangeError('returned-marker');
  }
}

async function setupError(mapper: Processor<number, number>): Promise<Error> {
  try {
    const error = await mapper.map([1]).then(() => null, (e: unknown) => e);
    expect(error).to.be.instanceOf(SetupError);
    return (error as SetupError).cause as Error;
  } finally {
    await mapper.shutdown().catch(() => {});
  }
}

describe('stacks point at the user\'s code', () => {
  it('a setup() error: the file and line of the throw, not an eval inside the worker', async () => {
    const cause = await setupError(new Processor(new FailsInSetup(), 1));
    expect(cause.stack).to.include(`at FailsInSetup.setup (file://${lineOf(THIS_FILE, "throw new Error('setup-marker")}`);
    expect(cause.stack).to.not.include('restore.js').and.not.include('eval at');
  });

  it('a job that throws: the file and line of the throw', async () => {
    const mapper = new Processor(new ThrowsAndReturns(), 1);
    try {
      const thrown = await mapper.map(['throw']).then(() => null, (e: unknown) => e);
      expect(thrown).to.be.instanceOf(JobError);
      expect(((thrown as JobError).cause as Error).stack).to.include(`at ThrowsAndReturns.call (file://${lineOf(THIS_FILE, "new TypeError('thrown-marker')")}`);
    } finally {
      await mapper.shutdown();
    }
  });

  it('a job that returns an Error: the result keeps the stack it had on the worker, not the coordinator\'s decoding', async () => {
    const mapper = new Processor(new ThrowsAndReturns(), 1);
    try {
      const [returned] = (await mapper.map(['return'])) as Error[];
      expect(returned).to.be.instanceOf(RangeError);
      expect(returned!.message).to.equal('returned-marker');
      expect(returned!.stack).to.include('at ThrowsAndReturns.call (');
      expect(returned!.stack).to.not.include('codec.js').and.not.include('engine.js');
      expect(returned!.stack).to.include(`file://${lineOf(THIS_FILE, "new RangeError('returned-marker')")}`);
    } finally {
      await mapper.shutdown();
    }
  });

  it('a plain function: its file and line', async () => {
    const mapper = new Processor((x: number) => {
      if (x > 0) throw new Error('function-marker');
      return x;
    }, 1);
    try {
      const error = (await mapper.map([1]).then(() => null, (e: unknown) => e)) as JobError;
      expect((error.cause as Error).stack).to.include(`file://${lineOf(THIS_FILE, "new Error('function-marker')")}`);
    } finally {
      await mapper.shutdown();
    }
  });

  it('a class from another file: found through its construction\'s stack, or else named after the class', async () => {
    const mapper = new Processor(new Picky([3]), 1);
    try {
      const error = (await mapper.map([3]).then(() => null, (e: unknown) => e)) as JobError;
      expect((error.cause as Error).stack).to.include(`at Picky.call (file://${lineOf(FIXTURES, 'const error = new PickyError(')}`);
    } finally {
      await mapper.shutdown();
    }
    const fromFixtures = await setupError(new Processor(new SetupFails(), 1));
    expect(fromFixtures.stack).to.include(`at SetupFails.setup (file://${lineOf(FIXTURES, "throw new RangeError('setup cannot open its cache')")}`);
    // Source that is in no file (made by eval; cut in two here, so not even this file holds it).
    const Evaluated = new Function('WorkFunction', 'return class Evaluated extends WorkFunction { setup() { throw new Error(' + '"evaluated") } call(x) { return x; } }')(WorkFunction) as new () => WorkFunction<number, number>;
    const cause = await setupError(new Processor(new Evaluated(), 1));
    expect(cause.stack).to.include('at Evaluated.setup (mapscale-shipped/Evaluated.js:1:');
  });
});
