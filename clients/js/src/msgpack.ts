// herald-client/msgpack: a small MessagePack codec for `format: 'msgpack'` (the specification:
// https://github.com/msgpack/msgpack/blob/master/spec.md): nil, booleans, integers (64-bit ones
// as numbers while safe, bigints beyond), floats, strings, binary, arrays and maps. Extension types are refused; so is anything
// else a JSON value could not be (functions, symbols). Like JSON, object properties whose value is
// undefined are left out.

const te = new TextEncoder();
const td = new TextDecoder();

/** Encodes `value` as MessagePack. */
export function encode(value: unknown): Uint8Array {
  let buf = new Uint8Array(256);
  let view = new DataView(buf.buffer);
  let pos = 0;

  const room = (n: number) => {
    if (pos + n <= buf.length) return;
    const bigger = new Uint8Array(Math.max(buf.length * 2, pos + n));
    bigger.set(buf);
    buf = bigger;
    view = new DataView(buf.buffer);
  };
  const u8 = (b: number) => {
    room(1);
    buf[pos++] = b;
  };
  // A type byte and its length or value as an unsigned integer of `size` bytes (1, 2, 4).
  const head = (type: number, n: number, size: number) => {
    room(1 + size);
    buf[pos++] = type;
    if (size == 1) view.setUint8(pos, n);
    else if (size == 2) view.setUint16(pos, n);
    else view.setUint32(pos, n);
    pos += size;
  };
  const bytes = (b: Uint8Array) => {
    room(b.length);
    buf.set(b, pos);
    pos += b.length;
  };
  // A length: in the fix form's low bits when under `fix` (fixstr, fixarray, fixmap), else after
  // `type8`, `type8 + 1` or `type8 + 2` (str, bin, array, map: 8, 16, 32-bit lengths; arrays and
  // maps have no 8-bit form, so their `type8` is one less than their 16-bit type).
  const len = (n: number, fixType: number, fix: number, type8: number, has8: boolean) => {
    if (n < fix) u8(fixType | n);
    else if (has8 && n < 0x100) head(type8, n, 1);
    else if (n < 0x10000) head(type8 + 1, n, 2);
    else head(type8 + 2, n, 4);
  };
  const int64 = (v: bigint) => {
    room(9);
    buf[pos++] = v < 0 ? 0xd3 : 0xcf;
    if (v < 0) view.setBigInt64(pos, v);
    else view.setBigUint64(pos, v);
    pos += 8;
  };

  const put = (v: any): void => {
    if (v == null) u8(0xc0);
    else if (v === false) u8(0xc2);
    else if (v === true) u8(0xc3);
    else if (typeof v == 'number') {
      if (!Number.isSafeInteger(v)) {
        room(9);
        buf[pos++] = 0xcb;
        view.setFloat64(pos, v);
        pos += 8;
      } else if (v >= 0) {
        if (v < 0x80) u8(v);
        else if (v < 0x100) head(0xcc, v, 1);
        else if (v < 0x10000) head(0xcd, v, 2);
        else if (v < 0x100000000) head(0xce, v, 4);
        else int64(BigInt(v));
      } else if (v >= -0x20) u8(v & 0xff);
      else if (v >= -0x80) head(0xd0, v & 0xff, 1);
      else if (v >= -0x8000) head(0xd1, v & 0xffff, 2);
      else if (v >= -0x80000000) head(0xd2, v >>> 0, 4);
      else int64(BigInt(v));
    } else if (typeof v == 'bigint') {
      if (v < -(1n << 63n) || v >= 1n << 64n) throw new RangeError('msgpack: bigint out of range');
      int64(v);
    } else if (typeof v == 'string') {
      const b = te.encode(v);
      len(b.length, 0xa0, 32, 0xd9, true);
      bytes(b);
    } else if (v instanceof Uint8Array || v instanceof ArrayBuffer) {
      const b = v instanceof ArrayBuffer ? new Uint8Array(v) : v;
      len(b.length, 0, 0, 0xc4, true);
      bytes(b);
    } else if (Array.isArray(v)) {
      len(v.length, 0x90, 16, 0xdb, false);
      v.forEach(put);
    } else if (typeof v == 'object') {
      const keys = Object.keys(v).filter((k) => v[k] !== undefined);
      len(keys.length, 0x80, 16, 0xdd, false);
      for (const k of keys) {
        put(k);
        put(v[k]);
      }
    } else {
      throw new TypeError('msgpack: cannot encode a ' + typeof v);
    }
  };

  put(value);
  return buf.slice(0, pos);
}

/** Decodes one MessagePack value that fills `bytes` exactly. */
export function decode(bytes: Uint8Array): unknown {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let pos = 0;

  // Moves past `n` bytes and returns where they start; throws if the input ends first.
  const take = (n: number) => {
    if (pos + n > bytes.length) throw new RangeError('msgpack: truncated');
    pos += n;
    return pos - n;
  };
  const uint = (size: number) => {
    const at = take(size);
    return size == 1 ? view.getUint8(at) : size == 2 ? view.getUint16(at) : view.getUint32(at);
  };
  const big = (v: bigint) =>
    v >= -BigInt(Number.MAX_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  const str = (n: number) => td.decode(bytes.subarray(take(n), pos));
  const arr = (n: number) => {
    const a = [];
    for (let i = 0; i < n; i++) a.push(get());
    return a;
  };
  const map = (n: number) => {
    const o: Record<string, unknown> = {};
    for (let i = 0; i < n; i++) {
      const k = get();
      if (typeof k != 'string' && typeof k != 'number') throw new TypeError('msgpack: map key');
      // An own property, as JSON.parse makes it: never the object's prototype.
      Object.defineProperty(o, k, {
        value: get(),
        enumerable: true,
        writable: true,
        configurable: true,
      });
    }
    return o;
  };

  const get = (): unknown => {
    const t = uint(1);
    if (t < 0x80) return t;
    if (t < 0x90) return map(t & 0x0f);
    if (t < 0xa0) return arr(t & 0x0f);
    if (t < 0xc0) return str(t & 0x1f);
    if (t >= 0xe0) return t - 0x100;
    switch (t) {
      case 0xc0:
        return null;
      case 0xc2:
        return false;
      case 0xc3:
        return true;
      case 0xc4:
      case 0xc5:
      case 0xc6:
        return bytes.slice(take(uint(1 << (t - 0xc4))), pos);
      case 0xca:
        return view.getFloat32(take(4));
      case 0xcb:
        return view.getFloat64(take(8));
      case 0xcc:
      case 0xcd:
      case 0xce:
        return uint(1 << (t - 0xcc));
      case 0xcf:
        return big(view.getBigUint64(take(8)));
      case 0xd0:
        return view.getInt8(take(1));
      case 0xd1:
        return view.getInt16(take(2));
      case 0xd2:
        return view.getInt32(take(4));
      case 0xd3:
        return big(view.getBigInt64(take(8)));
      case 0xd9:
      case 0xda:
      case 0xdb:
        return str(uint(1 << (t - 0xd9)));
      case 0xdc:
      case 0xdd:
        return arr(uint(2 << (t - 0xdc)));
      case 0xde:
      case 0xdf:
        return map(uint(2 << (t - 0xde)));
    }
    throw new TypeError('msgpack: unsupported type 0x' + t.toString(16));
  };

  const value = get();
  if (pos != bytes.length) throw new RangeError('msgpack: bytes after the value');
  return value;
}

/** The codec, for `new Herald(url, { format: 'msgpack', msgpack })`. */
export const msgpack = { encode, decode };
