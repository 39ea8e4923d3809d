import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, realpathSync, statSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { expect } from 'chai';
import { tempDir } from './helpers/files.js';

const run = promisify(execFile);
const APP = fileURLToPath(new URL('./fixtures/local-bundle-app.js', import.meta.url));
const ROOT_MODULES = fileURLToPath(new URL('../node_modules/', import.meta.url));

/** Every file under `dir` whose name ends with `suffix`. */
function filesUnder(dir: string, suffix: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' }).filter((name) => name.endsWith(suffix));
}

describe('the bundle cache of local workers', () => {
  it('is per user ($XDG_CACHE_HOME/mapscale, 0700): an app run elsewhere leaves no .mapscale-cache in its directory', async () => {
    const cwd = tempDir('mapscale-app-cwd-');
    const cache = tempDir('mapscale-xdg-cache-');
    try {
      const { stdout } = await run(process.execPath, [APP, 'self-contained'], {
        cwd: cwd.path, env: { ...process.env, XDG_CACHE_HOME: cache.path }, timeout: 30_000,
      });
      expect(JSON.parse(stdout)).to.deep.equal(['> number 42', '> not a number: x']);
      expect(existsSync(join(cwd.path, '.mapscale-cache')), 'a .mapscale-cache in the app\'s directory').to.equal(false);
      expect(readdirSync(cwd.path)).to.deep.equal([]);
      const root = join(cache.path, 'mapscale');
      expect(statSync(root).mode & 0o777).to.equal(0o700);
      expect(filesUnder(root, '.mjs')).to.have.length(1);
    } finally {
      cwd.remove();
      cache.remove();
    }
  });

  it('still resolves the packages a bundle leaves external from the app\'s directory and its parents, as before', async () => {
    // <tmp>/node_modules/is-number and <tmp>/app/node_modules/msgpackr: one package at each level.
    const project = tempDir('mapscale-app-project-');
    const cache = tempDir('mapscale-xdg-cache-');
    try {
      const app = join(project.path, 'app');
      mkdirSync(join(app, 'node_modules'), { recursive: true });
      mkdirSync(join(project.path, 'node_modules'));
      symlinkSync(realpathSync(join(ROOT_MODULES, 'is-number')), join(project.path, 'node_modules', 'is-number'), 'dir');
      symlinkSync(realpathSync(join(ROOT_MODULES, 'msgpackr')), join(app, 'node_modules', 'msgpackr'), 'dir');
      const { stdout } = await run(process.execPath, [APP, 'externals'], {
        cwd: app, env: { ...process.env, XDG_CACHE_HOME: cache.path }, timeout: 30_000,
      });
      expect(JSON.parse(stdout)).to.deep.equal([[true, 1], [false, 2]]);
      expect(readdirSync(app)).to.deep.equal(['node_modules']);
    } finally {
      project.remove();
      cache.remove();
    }
  });
});
