import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { expect } from 'chai';

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const BIN = fileURLToPath(new URL('../node_modules/.bin/mapscale-worker', import.meta.url));

describe('command line and plain node', () => {
  it('mapscale-worker --help lists its options with their defaults', async () => {
    const { stdout } = await run(BIN, ['--help'], { timeout: 20_000 });
    for (const flag of ['--host', '--port', '--workers', '--secret-file', '--log-level']) expect(stdout).to.include(flag);
    expect(stdout).to.include('127.0.0.1').and.include('7100');
  });

  it('mapscale-worker rejects an unknown option with a non-zero exit', async () => {
    const error = await run(BIN, ['--no-such-flag'], { timeout: 20_000 }).then(() => null, (e: { code?: number }) => e);
    expect(error?.code).to.be.a('number').and.not.equal(0);
  });

  it('runs the README demo with plain node from the repository root', async () => {
    const { stdout } = await run(process.execPath, ['examples/demo.mjs'], { cwd: ROOT, timeout: 30_000 });
    expect(stdout).to.include('[ 0, 1, 4, 9, 16 ]');
  });
});
