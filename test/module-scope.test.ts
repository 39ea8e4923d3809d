import { expect } from 'chai';
import { JobError, ModuleScopeError, Processor, SetupError, ShippingError } from 'mapscale';
import { ForgetfulGreeter } from './fixtures/module-scoped.js';
import { InnocentChild, NeedsAppGlobal, WellBehaved, helper } from './fixtures/scope-users.js';

function constructionError(make: () => unknown): unknown {
  try {
    make();
  } catch (error) {
    return error;
  }
  return undefined;
}

describe('module-scope references in code sent by value', () => {
  it('are refused when the Processor is constructed, naming them: a class', () => {
    const error = constructionError(() => new Processor(new ForgetfulGreeter(), 1)) as ModuleScopeError;
    expect(error).to.be.instanceOf(ModuleScopeError).and.instanceOf(ShippingError);
    expect(error.code).to.equal('MS_MODULE_SCOPE');
    expect(error.identifiers).to.deep.equal(['shout']);
    expect(error.message).to.include('ForgetfulGreeter').and.include('"shout"').and.include('static module = import.meta.url');
  });

  it('are refused when the Processor is constructed: a plain function, and the base of a class chain', () => {
    const fn = constructionError(() => new Processor((x: number) => helper(x), 1)) as ModuleScopeError;
    expect(fn).to.be.instanceOf(ModuleScopeError);
    expect(fn.identifiers).to.deep.equal(['helper']);
    const chain = constructionError(() => new Processor(new InnocentChild(), 1)) as ModuleScopeError;
    expect(chain).to.be.instanceOf(ModuleScopeError);
    expect(chain.identifiers).to.deep.equal(['helper']);
    expect(chain.message).to.include('LeakyBase uses "helper"');
  });

  it('lets through globals every worker has, names a source declares itself, and names it checks with typeof', async () => {
    const mapper = new Processor(new WellBehaved(), 1);
    try {
      const [result] = (await mapper.map([5])) as { sum: number; caught: string; self: string; types: unknown[] }[];
      expect(result!.sum).to.equal(5 + 2 + 10 + 2 + 0);
      expect(result!.caught).to.equal('SyntaxError');
      expect(result!.self).to.equal('WellBehaved');
      expect(result!.types).to.deep.equal([1, 'number', '/p', 'function', 1, 1.5, 2, 'number', false, 'object', 'function', 'object', true, 'function', 'function']);
    } finally {
      await mapper.shutdown();
    }
  });

  it('a global the app has and a worker lacks fails setup with ModuleScopeError naming it, not some job', async () => {
    (globalThis as unknown as { mapscaleAppOnly?: number }).mapscaleAppOnly = 1;
    let mapper: Processor<number, number> | undefined;
    try {
      mapper = new Processor(new NeedsAppGlobal(), 2);
      const error = await mapper.map(Array.from({ length: 1000 }, (_, i) => i)).then(() => null, (e: unknown) => e);
      expect(error).to.not.be.instanceOf(JobError);
      expect(error).to.be.instanceOf(SetupError);
      const cause = (error as SetupError).cause as Error & { code: string; identifiers: string[] };
      expect(cause.name).to.equal('ModuleScopeError');
      expect(cause.code).to.equal('MS_MODULE_SCOPE');
      expect(cause.identifiers).to.deep.equal(['mapscaleAppOnly']);
    } finally {
      delete (globalThis as unknown as { mapscaleAppOnly?: number }).mapscaleAppOnly;
      await mapper?.shutdown().catch(() => {});
    }
  });
});
