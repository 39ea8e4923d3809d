import { cpSync, existsSync, mkdirSync, readFileSync, readdirSync, realpathSync, symlinkSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { expect } from 'chai';
import * as mapscale from 'mapscale';
import * as workerServer from '@mapscale/worker-server';
import * as protocol from '@mapscale/protocol';
import * as transport from '@mapscale/transport';
import { tempDir } from './helpers/files.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const PACKAGES = [
  ['mapscale', 'coordinator'], ['@mapscale/protocol', 'protocol'], ['@mapscale/transport', 'transport'], ['@mapscale/worker-server', 'worker-server'],
] as const;

type ErrorClass = (new (...args: never[]) => Error) & { code: string };

/** Every MapScaleError class the packages export, each once, by name. */
function exportedErrorClasses(): Map<string, ErrorClass> {
  const classes = new Map<string, ErrorClass>();
  for (const exports of [mapscale, workerServer, protocol, transport] as Record<string, unknown>[]) {
    for (const [name, value] of Object.entries(exports)) {
      if (typeof value === 'function' && (value.prototype as object) instanceof mapscale.MapScaleError) classes.set(name, value as ErrorClass);
    }
  }
  return classes;
}

/**
 * A second, separate copy of the built packages, as an app gets with two versions in its
 * node_modules: MapScale's packages copied, their dependencies linked to the installed ones.
 */
function secondCopy(dir: string): string {
  const modules = join(dir, 'node_modules');
  for (const [name, folder] of PACKAGES) {
    const from = join(root, 'packages', folder);
    const to = join(modules, name);
    mkdirSync(to, { recursive: true });
    cpSync(join(from, 'package.json'), join(to, 'package.json'));
    cpSync(join(from, 'dist'), join(to, 'dist'), { recursive: true });
    for (const dep of readdirSync(join(from, 'node_modules'))) {
      const names = dep.startsWith('@') ? readdirSync(join(from, 'node_modules', dep)).map((n) => `${dep}/${n}`) : [dep];
      for (const depName of names) {
        if (depName.startsWith('@mapscale/') || depName.startsWith('@types/') || existsSync(join(modules, depName))) continue;
        mkdirSync(dirname(join(modules, depName)), { recursive: true });
        symlinkSync(realpathSync(join(from, 'node_modules', depName)), join(modules, depName));
      }
    }
  }
  return pathToFileURL(join(modules, 'mapscale', 'dist', 'index.js')).href;
}

describe('error classes', () => {
  it('gives every exported error class its own code, listed with the class in the README', () => {
    const readme = readFileSync(join(root, 'README.md'), 'utf8');
    const rows = new Map([...readme.matchAll(/^\| `(\w+)` \| `(MS_[A-Z_]+)` \|/gm)].map((m) => [m[1]!, m[2]!]));
    const seen = new Map<string, string>();
    const classes = exportedErrorClasses();
    expect(classes.size).to.be.greaterThan(20);
    for (const [name, cls] of classes) {
      if (cls === mapscale.MapScaleError) continue;
      expect(cls.code, name).to.match(/^MS_[A-Z_]+$/);
      expect(cls.code, name).to.not.equal(mapscale.MapScaleError.code);
      expect(seen.get(cls.code), `${name} shares ${cls.code}`).to.equal(undefined);
      seen.set(cls.code, name);
      expect(rows.get(name), `README's error tables: a row for ${name}`).to.equal(cls.code);
    }
  });

  it('never raises the base class itself, whose code says nothing', () => {
    for (const [, folder] of PACKAGES) {
      const src = join(root, 'packages', folder, 'src');
      for (const file of readdirSync(src, { recursive: true }) as string[]) {
        if (!file.endsWith('.ts')) continue;
        expect(readFileSync(join(src, file), 'utf8'), file).to.not.match(/new MapScaleError\(/);
      }
    }
  });

  it('carries its code on the instance, as an own property that travels with a serialized error', () => {
    const error = new mapscale.JobTimeoutError(3, 100, '127.0.0.1:1');
    expect(error.code).to.equal('MS_JOB_TIMEOUT');
    expect(Object.keys(error)).to.include('code');
    expect(protocol.serializeError(error).props?.code).to.equal('MS_JOB_TIMEOUT');
    expect(error.name).to.equal('JobTimeoutError');
  });

  it('recognises, with instanceof, errors made by a second copy of the library, both ways', async () => {
    const dir = tempDir('mapscale-copy-');
    try {
      const copy = (await import(secondCopy(dir.path))) as typeof mapscale;
      expect(copy.JobError).to.not.equal(mapscale.JobError);
      const theirs = new copy.JobError(4, '127.0.0.1:1', new Error('boom'));
      const ours = new mapscale.JobError(4, '127.0.0.1:1', new Error('boom'));
      expect(theirs).to.be.instanceOf(mapscale.JobError).and.instanceOf(mapscale.MapScaleError);
      expect(ours).to.be.instanceOf(copy.JobError).and.instanceOf(copy.MapScaleError);
      expect(theirs).to.not.be.instanceOf(mapscale.SetupError);
      // A subclass's brand carries its parents'.
      const connect = new copy.ConnectError('refused');
      expect(connect).to.be.instanceOf(mapscale.ConnectError).and.instanceOf(mapscale.ConnectionClosedError);
      expect(new mapscale.ConnectionClosedError('closed')).to.not.be.instanceOf(copy.ConnectError);
      expect(new copy.ModuleScopeError('x')).to.be.instanceOf(mapscale.ShippingError);
      // One that the other copy really raised.
      let raised: unknown;
      try {
        new copy.Processor((x: number) => x, 0);
      } catch (error) {
        raised = error;
      }
      expect(raised).to.be.instanceOf(mapscale.InvalidOptionError);
      expect(new Error('plain')).to.not.be.instanceOf(mapscale.MapScaleError);
      expect(null).to.not.be.instanceOf(mapscale.MapScaleError);
    } finally {
      dir.remove();
    }
  });

  it('checks a user\'s own subclass that declares no code the ordinary way', () => {
    class MyError extends mapscale.ShippingError {}
    class OtherError extends mapscale.ShippingError {}
    expect(new MyError('x')).to.be.instanceOf(MyError).and.instanceOf(mapscale.ShippingError);
    expect(new OtherError('x')).to.not.be.instanceOf(MyError);
    expect(new MyError('x').code).to.equal('MS_SHIPPING');
  });
});
