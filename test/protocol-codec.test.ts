import { expect } from 'chai';
import {
  FrameTooLargeError,
  ProtocolError,
  NUMBER_LIST_EXTENSION,
  createCodec,
  decodeMessage,
  deserializeError,
  encodeMessage,
  isSerializedError,
  serializeError,
  type Message,
  type SerializedError,
} from '@mapscale/protocol';

/** Packs on one codec and unpacks on another, as a coordinator and a worker thread do. */
function roundTrip<T>(value: T): T {
  return createCodec().unpack(createCodec().pack(value)) as T;
}

/** Carries a serialized error the way it really travels: inside a message envelope. */
function overTheWire(data: SerializedError): SerializedError {
  const message = decodeMessage(encodeMessage({ type: 'setup-failed', slot: 0, error: data }));
  return (message as Extract<Message, { type: 'setup-failed' }>).error;
}

function causes(error: unknown): unknown[] {
  const chain: unknown[] = [];
  let current = error;
  while (current instanceof Error && 'cause' in current && chain.length < 100) {
    current = current.cause;
    chain.push(current);
  }
  return chain;
}

describe('createCodec', () => {
  describe('round trips', () => {
    it('keeps integers across the 8-, 16-, 32- and 53-bit boundaries', () => {
      const values = [0, 1, -1, 127, 128, 255, 256, -32, -33, -128, -129, 65535, 65536, 2 ** 31 - 1, 2 ** 31, -(2 ** 31),
        2 ** 32, 2 ** 53 - 1, -(2 ** 53 - 1)];
      expect(roundTrip(values)).to.deep.equal(values);
      for (const v of values) expect(roundTrip(v)).to.equal(v);
    });

    it('keeps floats, NaN and the infinities', () => {
      const values = [0.5, -1.25, Math.PI, 1e-300, 1.7976931348623157e308, Number.EPSILON, Infinity, -Infinity];
      expect(roundTrip(values)).to.deep.equal(values);
      expect(roundTrip(NaN)).to.be.NaN;
    });

    it('keeps strings: empty, unicode, and long', () => {
      const long = 'abcdefghij'.repeat(20_000);
      const values = ['', 'a', 'héllo wörld', '日本語', 'emoji 🎉👩‍💻', 'tab\tnew\nline\0nul', long];
      expect(roundTrip(values)).to.deep.equal(values);
      expect(roundTrip(long)).to.equal(long);
    });

    it('keeps booleans, null and undefined, at top level and inside containers', () => {
      expect(roundTrip(true)).to.equal(true);
      expect(roundTrip(false)).to.equal(false);
      expect(roundTrip(null)).to.equal(null);
      expect(roundTrip(undefined)).to.equal(undefined);
      const mixed = [null, undefined, 1, { a: null, b: undefined }];
      const back = roundTrip(mixed);
      expect(back).to.deep.equal(mixed);
      expect(back[1]).to.equal(undefined);
      expect(back[3]).to.have.property('b', undefined);
    });

    it('keeps arrays: empty, nested and long', () => {
      const values = [[], [1, [2, [3, [4, []]]]], Array.from({ length: 10_000 }, (_, i) => i * 7)];
      expect(roundTrip(values)).to.deep.equal(values);
    });

    it('keeps plain objects, including empty ones and unusual keys', () => {
      const value = { a: 1, b: 'two', c: [3], '': 'empty key', 'with space': true, 42: 'numeric key', nested: {} };
      expect(roundTrip(value)).to.deep.equal(value);
    });

    it('keeps many objects of one shape, and of shapes that differ', () => {
      const value = Array.from({ length: 500 }, (_, i) => (i % 3 === 0 ? { x: i, y: -i - 1 } : { x: i, y: -i - 1, label: `p${i}` }));
      expect(roundTrip(value)).to.deep.equal(value);
    });

    it('keeps a Map as a Map, with non-string keys and nested values', () => {
      const map = new Map<unknown, unknown>([[1, 'one'], ['two', { n: 2 }], [true, [3]], [null, new Map([['inner', 1]])]]);
      const back = roundTrip(map);
      expect(back).to.be.instanceOf(Map);
      expect(back).to.deep.equal(map);
      expect(back.get(1)).to.equal('one');
      expect(back.get(null)).to.be.instanceOf(Map);
    });

    it('keeps a Set as a Set', () => {
      const set = new Set<unknown>([1, 'a', 2.5, null]);
      const back = roundTrip(set);
      expect(back).to.be.instanceOf(Set);
      expect(back).to.deep.equal(set);
      expect(roundTrip(new Set())).to.be.instanceOf(Set);
    });

    it('keeps a Date as a Date with the same instant', () => {
      for (const date of [new Date(0), new Date(1_700_000_000_123), new Date(-86_400_000), new Date('2100-01-01T00:00:00.001Z')]) {
        const back = roundTrip(date);
        expect(back).to.be.instanceOf(Date);
        expect(back.getTime()).to.equal(date.getTime());
      }
    });

    it('keeps small BigInts as BigInts', () => {
      const values = [0n, 1n, -1n, 42n, -42n, 2n ** 53n + 1n, 2n ** 63n - 1n, -(2n ** 63n), 2n ** 64n - 1n];
      for (const v of values) {
        const back = roundTrip(v);
        expect(typeof back).to.equal('bigint');
        expect(back).to.equal(v);
      }
    });

    it('keeps BigInts wider than 64 bits, positive and negative, alone and nested', () => {
      const values = [2n ** 64n, 2n ** 100n, -(2n ** 90n), 3n ** 200n, -(7n ** 150n) + 1n];
      for (const v of values) expect(roundTrip(v)).to.equal(v);
      expect(roundTrip({ big: 2n ** 70n, list: [2n ** 80n, 1n] })).to.deep.equal({ big: 2n ** 70n, list: [2n ** 80n, 1n] });
    });

    it('keeps a Buffer as a Buffer with the same bytes', () => {
      const buffer = Buffer.from([0, 1, 2, 254, 255]);
      const back = roundTrip(buffer);
      expect(Buffer.isBuffer(back)).to.equal(true);
      expect(back.equals(buffer)).to.equal(true);
      expect(Buffer.isBuffer(roundTrip(Buffer.alloc(0)))).to.equal(true);
    });

    it('keeps only the viewed bytes of a Buffer slice', () => {
      const back = roundTrip(Buffer.from([9, 8, 7, 6, 5]).subarray(1, 3));
      expect([...back]).to.deep.equal([8, 7]);
    });

    it('keeps a Uint8Array as a Uint8Array with the same bytes', () => {
      const bytes = new Uint8Array([4, 5, 6, 255]);
      const back = roundTrip(bytes);
      expect(back).to.be.instanceOf(Uint8Array);
      expect([...back]).to.deep.equal([...bytes]);
    });

    it('keeps a Float64Array as a Float64Array, not as a byte Buffer', () => {
      const floats = new Float64Array([1.5, -0.25, Math.PI, Infinity, Number.MIN_VALUE]);
      const back = roundTrip(floats);
      expect(back).to.be.instanceOf(Float64Array);
      expect(Buffer.isBuffer(back)).to.equal(false);
      expect(back.length).to.equal(floats.length);
      expect([...back]).to.deep.equal([...floats]);
      expect(Number.isNaN(roundTrip(new Float64Array([NaN]))[0])).to.equal(true);
    });

    it('keeps a Float64Array view at a non-zero offset into a larger buffer', () => {
      const backing = new ArrayBuffer(64);
      const view = new Float64Array(backing, 8, 3);
      view.set([1.25, -2, 1e100]);
      const back = roundTrip(view);
      expect(back).to.be.instanceOf(Float64Array);
      expect([...back]).to.deep.equal([1.25, -2, 1e100]);
    });

    it('keeps an Int32Array as an Int32Array, negatives included', () => {
      const ints = new Int32Array([-1, 0, 1, 2 ** 31 - 1, -(2 ** 31)]);
      const back = roundTrip(ints);
      expect(back).to.be.instanceOf(Int32Array);
      expect([...back]).to.deep.equal([...ints]);
    });

    it('keeps typed arrays inside objects typed', () => {
      const value = { f: new Float64Array([0.5]), i: new Int32Array([-7]), u: new Uint8Array([1]) };
      const back = roundTrip(value);
      expect(back.f).to.be.instanceOf(Float64Array);
      expect(back.i).to.be.instanceOf(Int32Array);
      expect(back.u).to.be.instanceOf(Uint8Array);
      expect([...back.f, ...back.i, ...back.u]).to.deep.equal([0.5, -7, 1]);
    });

    it('keeps a deeply nested mix of every supported type', () => {
      const value = {
        id: 7,
        name: 'run',
        when: new Date(1_600_000_000_000),
        tags: new Set(['a', 'b']),
        index: new Map<string, unknown>([['k', { deep: [1, { deeper: [new Set([1n, 2n ** 65n])] }] }]]),
        samples: new Float64Array([0.1, 0.2]),
        counts: new Int32Array([-3, 3]),
        raw: Buffer.from('xyz'),
        nothing: null,
        missing: undefined,
        children: [{ id: 8, children: [] }, { id: 9, children: [{ id: 10, children: [] }] }],
      };
      const back = roundTrip(value);
      expect(back).to.deep.equal(value);
      expect(back.samples).to.be.instanceOf(Float64Array);
      expect(back.index.get('k')).to.deep.equal({ deep: [1, { deeper: [new Set([1n, 2n ** 65n])] }] });
    });
  });

  it('decodes values on a fresh codec that never saw the earlier ones, in any order', () => {
    const packer = createCodec();
    const values = [[{ x: 1, y: 2 }, { x: 3, y: 4 }], [{ x: 5, y: 6 }], { x: 7, y: 8, z: { x: 1, y: 2 } }];
    const packed = values.map((v) => packer.pack(v));
    for (const order of [[0, 1, 2], [2, 1, 0], [1, 2, 0]]) {
      const unpacker = createCodec();
      for (const i of order) expect(unpacker.unpack(packed[i]!)).to.deep.equal(values[i]);
    }
    expect(createCodec().unpack(packed[1]!)).to.deep.equal(values[1]);
  });

  it('leaves earlier packed buffers intact after later packs on the same codec', () => {
    const codec = createCodec();
    const first = codec.pack({ x: 1, s: 'aaaa' });
    const second = codec.pack({ x: 2, s: 'bbbb' });
    codec.pack(new Array(100_000).fill(7));
    expect(codec.unpack(first)).to.deep.equal({ x: 1, s: 'aaaa' });
    expect(codec.unpack(second)).to.deep.equal({ x: 2, s: 'bbbb' });
  });

  it('unpacks from a plain Uint8Array as well as a Buffer', () => {
    const codec = createCodec();
    const packed = codec.pack([1, 'two', { three: 3 }]);
    expect(codec.unpack(new Uint8Array(packed))).to.deep.equal([1, 'two', { three: 3 }]);
  });
});

describe('serializeError and deserializeError', () => {
  it('keep name, message and stack', () => {
    const original = new Error('it broke');
    const data = serializeError(original);
    expect(data.name).to.equal('Error');
    expect(data.message).to.equal('it broke');
    expect(data.stack).to.equal(original.stack);
    const back = deserializeError(data);
    expect(back).to.be.instanceOf(Error);
    expect(back.name).to.equal('Error');
    expect(back.message).to.equal('it broke');
    expect(back.stack).to.equal(original.stack);
  });

  it('keep the name of built-in and custom error classes', () => {
    class QuotaExceededError extends Error {
      constructor(message: string) {
        super(message);
        this.name = 'QuotaExceededError';
      }
    }
    for (const original of [new TypeError('t'), new RangeError('r'), new SyntaxError('s'), new QuotaExceededError('q')]) {
      const back = deserializeError(overTheWire(serializeError(original)));
      expect(back.name).to.equal(original.name);
      expect(back.message).to.equal(original.message);
      expect(back.stack).to.equal(original.stack);
    }
  });

  it('keep the remote name out of the own enumerable properties', () => {
    const back = deserializeError(serializeError(Object.assign(new TypeError('x'), { code: 'E_X' })));
    expect(back.name).to.equal('TypeError');
    expect(Object.keys(back)).to.deep.equal(['code']);
  });

  it('keep own properties such as code and errno', () => {
    const original = Object.assign(new Error('no such file'), { code: 'ENOENT', errno: -2, path: '/tmp/x', details: { retry: false, tries: [1, 2] } });
    const data = serializeError(original);
    expect(data.props).to.deep.equal({ code: 'ENOENT', errno: -2, path: '/tmp/x', details: { retry: false, tries: [1, 2] } });
    const back = deserializeError(overTheWire(data)) as Error & Record<string, unknown>;
    expect(back.code).to.equal('ENOENT');
    expect(back.errno).to.equal(-2);
    expect(back.path).to.equal('/tmp/x');
    expect(back.details).to.deep.equal({ retry: false, tries: [1, 2] });
  });

  it('omit props when the error has none of its own', () => {
    expect(serializeError(new Error('plain'))).to.not.have.property('props');
  });

  it('keep the code of MapScale errors, and their extra fields', () => {
    const back = deserializeError(overTheWire(serializeError(new FrameTooLargeError(5000, 1024)))) as Error & Record<string, unknown>;
    expect(back.name).to.equal('FrameTooLargeError');
    expect(back.code).to.equal('MS_FRAME_TOO_LARGE');
    expect(back.size).to.equal(5000);
    expect(back.limit).to.equal(1024);
    const protocol = deserializeError(serializeError(new ProtocolError('bad'))) as Error & Record<string, unknown>;
    expect(protocol.name).to.equal('ProtocolError');
    expect(protocol.code).to.equal('MS_PROTOCOL');
  });

  it('turn own function and symbol properties into strings rather than dropping them', () => {
    const original = Object.assign(new Error('x'), { retry() { return 1; }, kind: Symbol('transient') });
    const data = serializeError(original);
    expect(data.props).to.have.property('retry').that.is.a('string');
    expect(data.props).to.have.property('kind').that.is.a('string');
    const back = deserializeError(overTheWire(data)) as Error & Record<string, unknown>;
    expect(back.retry).to.be.a('string');
    expect(back.kind).to.be.a('string');
  });

  it('keep a cause chain of errors with their names, messages and codes', () => {
    const root = Object.assign(new Error('connection reset'), { code: 'ECONNRESET' });
    const middle = new TypeError('request failed', { cause: root });
    const top = new Error('job 3 failed', { cause: middle });
    const back = deserializeError(overTheWire(serializeError(top)));
    const chain = causes(back);
    expect(chain).to.have.length(2);
    const [c1, c2] = chain as (Error & Record<string, unknown>)[];
    expect(c1).to.be.instanceOf(Error);
    expect(c1!.name).to.equal('TypeError');
    expect(c1!.message).to.equal('request failed');
    expect(c1!.stack).to.equal(middle.stack);
    expect(c2!.name).to.equal('Error');
    expect(c2!.message).to.equal('connection reset');
    expect(c2!.code).to.equal('ECONNRESET');
  });

  it('keep a cause that is not an Error as its value', () => {
    for (const cause of ['a string', 42, { reason: 'timeout', after: 30 }, [1, 2], null, false]) {
      const back = deserializeError(overTheWire(serializeError(new Error('wrapped', { cause }))));
      expect(back.cause).to.deep.equal(cause);
    }
  });

  it('omit the cause when there is none', () => {
    expect(serializeError(new Error('alone'))).to.not.have.property('cause');
    expect(deserializeError(serializeError(new Error('alone')))).to.not.have.property('cause');
  });

  it('stop at a bounded depth on a cyclic cause chain', () => {
    const a = new Error('a');
    const b = new Error('b', { cause: a });
    (a as Error & { cause: unknown }).cause = b;
    const data = serializeError(a);
    const back = deserializeError(overTheWire(data));
    const chain = causes(back);
    expect(chain.length).to.be.within(1, 50);
    expect((chain[0] as Error).message).to.equal('b');
    expect((chain[1] as Error).message).to.equal('a');
  });

  it('keep the head of a very long cause chain and stop at a bounded depth', () => {
    let error = new Error('level 0');
    for (let i = 1; i <= 30; i++) error = new Error(`level ${i}`, { cause: error });
    const chain = causes(deserializeError(serializeError(error)));
    expect(chain.length).to.be.within(2, 29);
    chain.forEach((c, i) => expect((c as Error).message).to.equal(`level ${29 - i}`));
  });

  describe('non-Error thrown values', () => {
    const thrown: [string, unknown][] = [
      ['a string', 'plain string'],
      ['a number', 404],
      ['a plain object', { status: 'bad', items: [1, 2] }],
      ['an array', ['x', 1]],
      ['null', null],
      ['undefined', undefined],
      ['a boolean', false],
      ['a small bigint', 12n],
    ];
    for (const [what, value] of thrown) {
      it(`serialize ${what} as NonErrorThrown carrying the value`, () => {
        const data = serializeError(value);
        expect(data.name).to.equal('NonErrorThrown');
        expect(data.message).to.be.a('string').that.is.not.empty;
        expect(data.props).to.have.property('value');
        expect(data.props!.value).to.deep.equal(value);
        const back = deserializeError(overTheWire(data)) as Error & { value?: unknown };
        expect(back).to.be.instanceOf(Error);
        expect(back.name).to.equal('NonErrorThrown');
        expect(back.value).to.deep.equal(value);
      });
    }

    it('serialize a thrown function as a string value', () => {
      const data = serializeError(function namedThrow() {});
      expect(data.name).to.equal('NonErrorThrown');
      expect(data.props!.value).to.be.a('string');
    });

    it('serialize a thrown symbol as a string value', () => {
      const data = serializeError(Symbol('oops'));
      expect(data.name).to.equal('NonErrorThrown');
      expect(data.props!.value).to.be.a('string');
    });

    it('serialize a value JSON cannot stringify without throwing', () => {
      const cyclic: Record<string, unknown> = {};
      cyclic.self = cyclic;
      for (const value of [cyclic, 2n ** 70n]) {
        const data = serializeError(value);
        expect(data.name).to.equal('NonErrorThrown');
        expect(data.message).to.be.a('string');
      }
    });
  });

  it('isSerializedError accepts serialized errors and rejects other values', () => {
    expect(isSerializedError(serializeError(new Error('x')))).to.equal(true);
    expect(isSerializedError(serializeError('thrown string'))).to.equal(true);
    expect(isSerializedError({ name: 'E', message: '' })).to.equal(true);
    for (const value of [null, undefined, 'Error', 42, {}, { name: 'E' }, { message: 'm' }, { name: 1, message: 'm' }, { name: 'E', message: 2 }]) {
      expect(isSerializedError(value), JSON.stringify(value)).to.equal(false);
    }
  });
});

describe('serializeError with properties an envelope cannot carry', () => {
  it('describes circular, symbol-holding and oversized values instead of failing the message', async () => {
    const { encodeMessage, decodeMessage, serializeError } = await import('@mapscale/protocol');
    const error = new Error('request failed') as Error & Record<string, unknown>;
    const req: Record<string, unknown> = {};
    req.res = { req };
    error.req = req;
    error.config = { kind: Symbol('k') };
    error.huge = 2n ** 70n;
    error.code = 'E_HTTP';
    const decoded = decodeMessage(encodeMessage({ type: 'setup-failed', slot: 0, error: serializeError(error) }));
    const props = (decoded as { error: { props: Record<string, unknown> } }).error.props;
    expect(props.code).to.equal('E_HTTP');
    for (const key of ['req', 'config', 'huge']) expect(props[key]).to.be.a('string').and.match(/^\[not serializable/);
    const thrown = decodeMessage(encodeMessage({ type: 'setup-failed', slot: 0, error: serializeError(2n ** 70n) }));
    expect((thrown as { error: { name: string } }).error.name).to.equal('NonErrorThrown');
  });
});

describe('number lists (a batch of plain numbers as one ext value)', () => {
  const codec = createCodec();
  const special = [0, -0, 1, -1, 0.1, -1.5, 2 ** 31, -(2 ** 31) - 1, 2 ** 53 - 1, -(2 ** 53), 1e-300, 5e-324, 1.7976931348623157e308, NaN, Infinity, -Infinity];

  it('packs a list of numbers as the N extension and reads it back exactly, -0 and NaN included', () => {
    const values = Array.from({ length: 1000 }, (_, i) => special[i % special.length]! * (i % 3 === 0 ? 1 : 1 + i / 7));
    const bytes = codec.packList(values);
    expect(bytes[0], 'ext 32').to.equal(0xc9);
    expect(bytes[5], 'extension type').to.equal(NUMBER_LIST_EXTENSION);
    expect(bytes.length).to.equal(6 + 8 * values.length);
    const back = codec.unpack(bytes) as number[];
    expect(Array.isArray(back), 'a plain array, not a typed one').to.equal(true);
    expect(back).to.have.length(values.length);
    back.forEach((value, i) => expect(Object.is(value, values[i]), `value ${i}: ${value} vs ${values[i]}`).to.equal(true));
  });

  it('packs a range of a list, numbers or not, without its neighbours', () => {
    const numbers = Array.from({ length: 100 }, (_, i) => i * 1.25);
    expect(codec.unpack(codec.packList(numbers, 10, 60))).to.deep.equal(numbers.slice(10, 60));
    const mixed: unknown[] = [...numbers.slice(0, 50), 'x', ...numbers.slice(50)];
    expect(codec.unpack(codec.packList(mixed, 20, 80))).to.deep.equal(mixed.slice(20, 80));
    expect(codec.unpack(codec.packList(mixed, 51, 101)), 'numbers after the string').to.deep.equal(mixed.slice(51, 101));
  });

  it('reads a list wherever a frame puts it, 8-aligned or not', () => {
    const values = Array.from({ length: 64 }, (_, i) => i / 3);
    const bytes = codec.packList(values);
    for (let shift = 0; shift < 8; shift++) {
      const holder = Buffer.alloc(bytes.length + shift);
      bytes.copy(holder, shift);
      expect(codec.unpack(holder.subarray(shift)), `shifted by ${shift}`).to.deep.equal(values);
    }
  });

  it('leaves every other list to msgpack: a non-number anywhere, short lists', () => {
    const numbers = Array.from({ length: 100 }, (_, i) => i);
    const cases: unknown[][] = [
      [...numbers, '1'], [...numbers, null], [...numbers, 1n], [...numbers, undefined], [...numbers, [1]], numbers.slice(0, 4),
    ];
    for (const list of cases) {
      const bytes = codec.packList(list);
      expect(bytes[5] === NUMBER_LIST_EXTENSION && bytes[0] === 0xc9, `list ending ${String(list.at(-1))}`).to.equal(false);
      expect(codec.unpack(bytes)).to.deep.equal(list);
    }
  });
});
