import { availableParallelism } from 'node:os';
import { expect } from 'chai';
import { Processor, ProcessorClosedError } from 'mapscale';
import { Power } from './fixtures/work-functions.js';

describe('conventions users expect', () => {
  it('await using: the Processor is shut down when the block is left', async () => {
    let outside: Processor<number, number> | undefined;
    {
      await using mapper = new Processor(new Power(2), 1);
      outside = mapper;
      expect(await mapper.map([3])).to.deep.equal([9]);
      expect(mapper.status).to.equal('running');
    }
    expect(outside.status).to.equal('closed');
    const error = await outside.map([1]).then(() => null, (e: unknown) => e);
    expect(error).to.be.instanceOf(ProcessorClosedError);
  });

  it('await using shuts down also when the block throws', async () => {
    let outside: Processor<number, number> | undefined;
    const thrown = await (async () => {
      await using mapper = new Processor(new Power(2), 1);
      outside = mapper;
      await mapper.map([1]);
      throw new Error('the block failed');
    })().then(() => null, (e: unknown) => e);
    expect((thrown as Error).message).to.equal('the block failed');
    expect(outside!.status).to.equal('closed');
  });

  it('new Processor(fn) with no worker count starts one local instance per CPU', async () => {
    const mapper = new Processor(new Power(2));
    try {
      expect(await mapper.map([1, 2, 3])).to.deep.equal([1, 4, 9]);
      expect(mapper.workerCount).to.equal(availableParallelism());
      expect(mapper.stats().map((s) => s.slots)).to.deep.equal([availableParallelism()]);
    } finally {
      await mapper.shutdown();
    }
  });
});
