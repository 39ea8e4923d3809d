import { expect } from 'chai';
import { Processor, WorkFunction } from 'mapscale';
import { Power } from './fixtures/work-functions.js';

// Compile-time checks: Job and Result are inferred from the work function (tsc fails the build otherwise).
type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends (<T>() => T extends B ? 1 : 2) ? true : false;
function assertType<T extends true>(): T | undefined {
  return undefined;
}

class AsyncLength extends WorkFunction<string, number> {
  async call(text: string): Promise<number> {
    return text.length;
  }
}

describe('types', () => {
  it('infers Job and Result from classes, async classes and plain functions', () => {
    const make = false as boolean; // never constructs: only the types are checked
    if (make) {
      const a = new Processor(new Power(2), 1);
      const b = new Processor(new AsyncLength(), 1);
      const c = new Processor((x: number) => ({ twice: x * 2 }), 1);
      const d = new Processor(async (x: number) => String(x), 1);
      assertType<Equal<Awaited<ReturnType<typeof a.map>>, number[]>>();
      assertType<Equal<Awaited<ReturnType<typeof b.map>>, number[]>>();
      assertType<Equal<Awaited<ReturnType<typeof c.map>>, { twice: number }[]>>();
      assertType<Equal<Awaited<ReturnType<typeof d.map>>, string[]>>();
    }
    expect(make).to.equal(false);
  });
});
