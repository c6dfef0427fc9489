/**
 * The subset of ONNX's ModelProto that arbor writes and reads (field numbers from onnx-ml.proto):
 * a graph of nodes with attributes, tensors in raw_data, value infos with tensor types, opset
 * imports and metadata_props. Everything else is skipped on read.
 */
import {
  fieldString,
  ProtoError,
  ProtoReader,
  ProtoWriter,
  readFloats,
  readInts,
  WIRE_LEN,
} from "./proto.ts";

/** TensorProto.DataType values arbor uses. */
export const DT_FLOAT = 1;
export const DT_UINT8 = 2;
export const DT_INT32 = 6;
export const DT_INT64 = 7;
export const DT_DOUBLE = 11;

/** AttributeProto.AttributeType values. */
export const AT_FLOAT = 1;
export const AT_INT = 2;
export const AT_STRING = 3;
export const AT_TENSOR = 4;
export const AT_FLOATS = 6;
export const AT_INTS = 7;
export const AT_STRINGS = 8;

/** A tensor whose payload is kept as little-endian raw bytes. */
export interface OnnxTensor {
  name: string;
  dataType: number;
  dims: number[];
  raw: Uint8Array;
}

/** One node attribute; the field used depends on `type`. */
export interface OnnxAttribute {
  name: string;
  type: number;
  f?: number;
  i?: number;
  s?: string;
  t?: OnnxTensor;
  floats?: number[];
  ints?: number[];
  strings?: string[];
}

export interface OnnxNode {
  opType: string;
  domain: string;
  name: string;
  inputs: string[];
  outputs: string[];
  attributes: OnnxAttribute[];
}

/** A graph input or output: a tensor of `elemType` with dims (number, or a symbolic name). */
export interface OnnxValueInfo {
  name: string;
  elemType: number;
  dims: (number | string)[];
}

export interface OnnxModel {
  irVersion: number;
  opsets: { domain: string; version: number }[];
  producerName: string;
  producerVersion: string;
  graphName: string;
  nodes: OnnxNode[];
  initializers: OnnxTensor[];
  inputs: OnnxValueInfo[];
  outputs: OnnxValueInfo[];
  metadata: Record<string, string>;
}

// ── tensors ───────────────────────────────────────────────────────────────────────────

/** A float64 tensor. */
export function doubleTensor(
  name: string,
  values: ArrayLike<number>,
  dims: number[] = [values.length],
): OnnxTensor {
  const a = Float64Array.from(values);
  return { name, dataType: DT_DOUBLE, dims, raw: new Uint8Array(a.buffer) };
}

/** A float32 tensor. */
export function floatTensor(
  name: string,
  values: ArrayLike<number>,
  dims: number[] = [values.length],
): OnnxTensor {
  const a = Float32Array.from(values);
  return { name, dataType: DT_FLOAT, dims, raw: new Uint8Array(a.buffer) };
}

/** A uint8 tensor. */
export function uint8Tensor(
  name: string,
  values: ArrayLike<number>,
  dims: number[] = [values.length],
): OnnxTensor {
  return { name, dataType: DT_UINT8, dims, raw: Uint8Array.from(values) };
}

/** An int64 tensor. */
export function int64Tensor(
  name: string,
  values: ArrayLike<number>,
  dims: number[] = [values.length],
): OnnxTensor {
  const a = new BigInt64Array(values.length);
  for (let i = 0; i < values.length; i++) a[i] = BigInt(values[i]);
  return { name, dataType: DT_INT64, dims, raw: new Uint8Array(a.buffer) };
}

/** Numeric values of a float/double/uint8/int32/int64 tensor as float64. */
export function tensorValues(t: OnnxTensor): Float64Array {
  const raw = t.raw;
  const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  const size = { [DT_FLOAT]: 4, [DT_DOUBLE]: 8, [DT_UINT8]: 1, [DT_INT32]: 4, [DT_INT64]: 8 }[t.dataType];
  if (size === undefined) throw new ProtoError(`tensor ${t.name}: unsupported data type ${t.dataType}`);
  if (raw.length % size !== 0)
    throw new ProtoError(`tensor ${t.name}: raw data is not a whole number of values`);
  const n = raw.length / size;
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const o = i * size;
    switch (t.dataType) {
      case DT_FLOAT:
        out[i] = view.getFloat32(o, true);
        break;
      case DT_DOUBLE:
        out[i] = view.getFloat64(o, true);
        break;
      case DT_UINT8:
        out[i] = raw[o];
        break;
      case DT_INT32:
        out[i] = view.getInt32(o, true);
        break;
      default:
        out[i] = Number(view.getBigInt64(o, true));
    }
  }
  return out;
}

// ── writing ───────────────────────────────────────────────────────────────────────────

function writeTensor(w: ProtoWriter, t: OnnxTensor): void {
  w.packedInts(1, t.dims);
  w.int(2, t.dataType);
  if (t.name) w.string(8, t.name);
  w.bytes(9, t.raw);
}

function writeAttribute(w: ProtoWriter, a: OnnxAttribute): void {
  w.string(1, a.name);
  switch (a.type) {
    case AT_FLOAT:
      w.float(2, a.f ?? 0);
      break;
    case AT_INT:
      w.int(3, a.i ?? 0);
      break;
    case AT_STRING:
      w.string(4, a.s ?? "");
      break;
    case AT_TENSOR:
      if (a.t) w.message(5, (m) => writeTensor(m, a.t!));
      break;
    case AT_FLOATS:
      w.packedFloats(7, a.floats ?? []);
      break;
    case AT_INTS:
      w.packedInts(8, a.ints ?? []);
      break;
    case AT_STRINGS:
      for (const s of a.strings ?? []) w.string(9, s);
      break;
    default:
      throw new ProtoError(`attribute ${a.name}: unsupported type ${a.type}`);
  }
  w.int(20, a.type);
}

function writeValueInfo(w: ProtoWriter, v: OnnxValueInfo): void {
  w.string(1, v.name);
  w.message(2, (type) =>
    type.message(1, (tensor) => {
      tensor.int(1, v.elemType);
      tensor.message(2, (shape) => {
        for (const d of v.dims) {
          shape.message(1, (dim) => (typeof d === "number" ? dim.int(1, d) : dim.string(2, d)));
        }
      });
    }),
  );
}

/** Serialise a model to ONNX protobuf bytes. */
export function writeModel(model: OnnxModel): Uint8Array {
  const w = new ProtoWriter(1 << 16);
  w.int(1, model.irVersion);
  w.string(2, model.producerName);
  w.string(3, model.producerVersion);
  w.message(7, (g) => {
    for (const n of model.nodes) {
      g.message(1, (m) => {
        for (const i of n.inputs) m.string(1, i);
        for (const o of n.outputs) m.string(2, o);
        if (n.name) m.string(3, n.name);
        m.string(4, n.opType);
        for (const a of n.attributes) m.message(5, (am) => writeAttribute(am, a));
        if (n.domain) m.string(7, n.domain);
      });
    }
    g.string(2, model.graphName);
    for (const t of model.initializers) g.message(5, (m) => writeTensor(m, t));
    for (const v of model.inputs) g.message(11, (m) => writeValueInfo(m, v));
    for (const v of model.outputs) g.message(12, (m) => writeValueInfo(m, v));
  });
  for (const o of model.opsets) {
    w.message(8, (m) => {
      if (o.domain) m.string(1, o.domain);
      m.int(2, o.version);
    });
  }
  for (const [key, value] of Object.entries(model.metadata)) {
    w.message(14, (m) => {
      m.string(1, key);
      m.string(2, value);
    });
  }
  return w.finish();
}

// ── reading ───────────────────────────────────────────────────────────────────────────

function readTensor(data: Uint8Array): OnnxTensor {
  const r = new ProtoReader(data);
  const t: OnnxTensor = { name: "", dataType: 0, dims: [], raw: new Uint8Array(0) };
  const floats: number[] = [];
  const ints: number[] = [];
  let doubles: Float64Array | null = null;
  for (let f = r.next(); f; f = r.next()) {
    if (f.field === 1) readInts(f, t.dims);
    else if (f.field === 2) t.dataType = f.num;
    else if (f.field === 8) t.name = fieldString(f);
    else if (f.field === 9 && f.wire === WIRE_LEN) t.raw = f.data;
    else if (f.field === 4) readFloats(f, floats);
    else if (f.field === 5 || f.field === 7) readInts(f, ints);
    else if (f.field === 10 && f.wire === WIRE_LEN) {
      doubles = new Float64Array(f.data.length / 8);
      const v = new DataView(f.data.buffer, f.data.byteOffset, f.data.byteLength);
      for (let i = 0; i < doubles.length; i++) doubles[i] = v.getFloat64(i * 8, true);
    }
  }
  // Typed *_data fields are turned into raw bytes so that one reader serves both encodings.
  if (t.raw.length === 0) {
    if (doubles) t.raw = new Uint8Array(doubles.buffer);
    else if (floats.length > 0) t.raw = new Uint8Array(Float32Array.from(floats).buffer);
    else if (ints.length > 0) {
      if (t.dataType === DT_UINT8) t.raw = Uint8Array.from(ints);
      else if (t.dataType === DT_INT32) t.raw = new Uint8Array(Int32Array.from(ints).buffer);
      else t.raw = new Uint8Array(BigInt64Array.from(ints.map((x) => BigInt(x))).buffer);
    }
  }
  return t;
}

function readAttribute(data: Uint8Array): OnnxAttribute {
  const r = new ProtoReader(data);
  const a: OnnxAttribute = { name: "", type: 0 };
  for (let f = r.next(); f; f = r.next()) {
    switch (f.field) {
      case 1:
        a.name = fieldString(f);
        break;
      case 20:
        a.type = f.num;
        break;
      case 2:
        a.f = f.num;
        break;
      case 3:
        a.i = f.num;
        break;
      case 4:
        a.s = fieldString(f);
        break;
      case 5:
        a.t = readTensor(f.data);
        break;
      case 7:
        a.floats ??= [];
        readFloats(f, a.floats);
        break;
      case 8:
        a.ints ??= [];
        readInts(f, a.ints);
        break;
      case 9:
        a.strings ??= [];
        a.strings.push(fieldString(f));
        break;
    }
  }
  return a;
}

function readNode(data: Uint8Array): OnnxNode {
  const r = new ProtoReader(data);
  const n: OnnxNode = { opType: "", domain: "", name: "", inputs: [], outputs: [], attributes: [] };
  for (let f = r.next(); f; f = r.next()) {
    if (f.field === 1) n.inputs.push(fieldString(f));
    else if (f.field === 2) n.outputs.push(fieldString(f));
    else if (f.field === 3) n.name = fieldString(f);
    else if (f.field === 4) n.opType = fieldString(f);
    else if (f.field === 5) n.attributes.push(readAttribute(f.data));
    else if (f.field === 7) n.domain = fieldString(f);
  }
  return n;
}

function readValueInfo(data: Uint8Array): OnnxValueInfo {
  const v: OnnxValueInfo = { name: "", elemType: 0, dims: [] };
  const r = new ProtoReader(data);
  for (let f = r.next(); f; f = r.next()) {
    if (f.field === 1) v.name = fieldString(f);
    else if (f.field === 2) {
      const tr = new ProtoReader(f.data);
      for (let tf = tr.next(); tf; tf = tr.next()) {
        if (tf.field !== 1) continue;
        const tensor = new ProtoReader(tf.data);
        for (let x = tensor.next(); x; x = tensor.next()) {
          if (x.field === 1) v.elemType = x.num;
          else if (x.field === 2) {
            const shape = new ProtoReader(x.data);
            for (let d = shape.next(); d; d = shape.next()) {
              if (d.field !== 1) continue;
              const dim = new ProtoReader(d.data);
              let value: number | string = "?";
              for (let y = dim.next(); y; y = dim.next()) {
                if (y.field === 1) value = y.num;
                else if (y.field === 2) value = fieldString(y);
              }
              v.dims.push(value);
            }
          }
        }
      }
    }
  }
  return v;
}

/** Parse ONNX protobuf bytes; throws ProtoError on malformed input. */
export function readModel(bytes: Uint8Array): OnnxModel {
  const model: OnnxModel = {
    irVersion: 0,
    opsets: [],
    producerName: "",
    producerVersion: "",
    graphName: "",
    nodes: [],
    initializers: [],
    inputs: [],
    outputs: [],
    metadata: {},
  };
  let sawGraph = false;
  const r = new ProtoReader(bytes);
  for (let f = r.next(); f; f = r.next()) {
    if (f.field === 1) model.irVersion = f.num;
    else if (f.field === 2) model.producerName = fieldString(f);
    else if (f.field === 3) model.producerVersion = fieldString(f);
    else if (f.field === 8) {
      const o = { domain: "", version: 0 };
      const or = new ProtoReader(f.data);
      for (let x = or.next(); x; x = or.next()) {
        if (x.field === 1) o.domain = fieldString(x);
        else if (x.field === 2) o.version = x.num;
      }
      model.opsets.push(o);
    } else if (f.field === 14) {
      let key = "";
      let value = "";
      const mr = new ProtoReader(f.data);
      for (let x = mr.next(); x; x = mr.next()) {
        if (x.field === 1) key = fieldString(x);
        else if (x.field === 2) value = fieldString(x);
      }
      model.metadata[key] = value;
    } else if (f.field === 7) {
      if (f.wire !== WIRE_LEN) throw new ProtoError("graph is not a message");
      sawGraph = true;
      const g = new ProtoReader(f.data);
      for (let x = g.next(); x; x = g.next()) {
        if (x.field === 1) model.nodes.push(readNode(x.data));
        else if (x.field === 2) model.graphName = fieldString(x);
        else if (x.field === 5) model.initializers.push(readTensor(x.data));
        else if (x.field === 11) model.inputs.push(readValueInfo(x.data));
        else if (x.field === 12) model.outputs.push(readValueInfo(x.data));
      }
    }
  }
  if (!sawGraph) throw new ProtoError("no graph in the model");
  return model;
}
