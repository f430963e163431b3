// An ONNX graph built from TypeScript: float32 initializers, nodes with integer and float attributes,
// typed inputs and outputs, and the model around them, as messages of ONNX's own schema
// (proto/onnx.proto, compiled to proto/onnx_pb.ts by protoc-gen-es) serialised by @bufbuild/protobuf.
import os from 'node:os';
import { create, toBinary } from '@bufbuild/protobuf';
import {
  AttributeProto_AttributeType,
  AttributeProtoSchema,
  GraphProtoSchema,
  ModelProtoSchema,
  NodeProtoSchema,
  OperatorSetIdProtoSchema,
  StringStringEntryProtoSchema,
  TensorProto_DataType,
  TensorProtoSchema,
  TensorShapeProto_DimensionSchema,
  TensorShapeProtoSchema,
  TypeProto_TensorSchema,
  TypeProtoSchema,
  ValueInfoProtoSchema,
  type AttributeProto,
  type NodeProto,
  type TensorProto,
  type ValueInfoProto,
} from './proto/onnx_pb.js';

/** An attribute's value, tagged with its ONNX type: a JavaScript number alone cannot say INT or FLOAT. */
export type Attribute = { int: number } | { ints: readonly number[] } | { float: number };

/** A dimension: a fixed size, or a name for one the caller chooses at run time (a dynamic batch). */
export type Dimension = number | string;

/** A float32 value at the graph's edge: its name, shape and what it holds. */
export interface GraphValue {
  name: string;
  dims: readonly Dimension[];
  docString: string;
}

/** ONNX opsets this writer targets, each with the IR version it came with (onnx.helper.VERSION_TABLE). */
export const IR_VERSION_OF_OPSET: ReadonlyMap<number, number> = new Map([
  [13, 7],
  [14, 7],
  [15, 8],
  [16, 8],
  [17, 8],
  [18, 8],
  [19, 9],
  [20, 9],
  [21, 10],
  [22, 10],
]);

/**
 * A protobuf message cannot exceed 2 GiB (its lengths are signed 32-bit), and ONNX runtimes refuse
 * larger models unless the weights live in external files, which this writer does not produce.
 */
const MAX_MODEL_BYTES = 2 ** 31 - 1;

function attribute(name: string, value: Attribute): AttributeProto {
  if ('int' in value) return create(AttributeProtoSchema, { name, type: AttributeProto_AttributeType.INT, i: BigInt(value.int) });
  if ('ints' in value) return create(AttributeProtoSchema, { name, type: AttributeProto_AttributeType.INTS, ints: value.ints.map(BigInt) });
  return create(AttributeProtoSchema, { name, type: AttributeProto_AttributeType.FLOAT, f: value.float });
}

/** A float32 tensor value: [dims...], with named dimensions left symbolic. */
function floatValue({ name, dims, docString }: GraphValue): ValueInfoProto {
  const dim = dims.map((d) =>
    create(TensorShapeProto_DimensionSchema, {
      value: typeof d === 'number' ? { case: 'dimValue', value: BigInt(d) } : { case: 'dimParam', value: d },
    }),
  );
  const tensorType = create(TypeProto_TensorSchema, {
    elemType: TensorProto_DataType.FLOAT,
    shape: create(TensorShapeProtoSchema, { dim }),
  });
  return create(ValueInfoProtoSchema, {
    name,
    docString,
    type: create(TypeProtoSchema, { value: { case: 'tensorType', value: tensorType } }),
  });
}

export class OnnxGraph {
  private readonly nodes: NodeProto[] = [];
  private readonly initializers: TensorProto[] = [];
  private readonly names = new Set<string>();
  /** Bytes of the initializers so far: the bulk of the model. */
  private weightBytes = 0;

  /** A graph whose one input is `input`: nodes read it by its name. */
  constructor(readonly input: GraphValue) {
    this.claim(input.name);
  }

  /** Adds a float32 constant; returns its name. Values are stored as little-endian raw_data, ONNX's layout. */
  initializer(name: string, dims: readonly number[], values: Float32Array): string {
    const count = dims.reduce((a, b) => a * b, 1);
    if (count !== values.length)
      throw new RangeError(`initializer ${name}: dims [${dims.join(', ')}] hold ${count} values, the data ${values.length}`);
    this.claim(name);
    // raw_data is little-endian by ONNX's definition; a Float32Array is in the machine's order.
    if (os.endianness() !== 'LE') throw new RangeError('ONNX raw tensor data is little-endian; this machine is big-endian');
    const rawData = new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
    this.initializers.push(create(TensorProtoSchema, { name, dims: dims.map(BigInt), dataType: TensorProto_DataType.FLOAT, rawData }));
    this.weightBytes += values.byteLength;
    return name;
  }

  /** Adds one operator node reading `inputs` and writing the value `output` (also the node's name); returns `output`. */
  node(opType: string, inputs: readonly string[], output: string, attributes: Record<string, Attribute> = {}): string {
    this.claim(output);
    this.nodes.push(
      create(NodeProtoSchema, {
        name: output,
        opType,
        input: [...inputs],
        output: [output],
        attribute: Object.entries(attributes).map(([name, value]) => attribute(name, value)),
      }),
    );
    return output;
  }

  /**
   * The model: this graph with its input, `output` (a value a node wrote) as its one output, the
   * default-domain opset, and string metadata. Throws when the model would be over protobuf's 2 GiB.
   */
  encode(model: {
    name: string;
    opset: number;
    output: GraphValue;
    producerName: string;
    producerVersion: string;
    docString: string;
    metadata: Record<string, string>;
  }): Uint8Array {
    const irVersion = IR_VERSION_OF_OPSET.get(model.opset);
    if (irVersion === undefined)
      throw new RangeError(`opset ${model.opset} is not one this writer targets (${[...IR_VERSION_OF_OPSET.keys()].join(', ')})`);
    if (this.weightBytes > MAX_MODEL_BYTES) {
      throw new RangeError(
        `the weights take ${this.weightBytes} bytes, over the 2 GiB one ONNX protobuf file can hold; this writer does not split weights into external data files`,
      );
    }
    if (!this.nodes.some((node) => node.output.includes(model.output.name)))
      throw new Error(`no node of the ONNX graph writes ${model.output.name}, its output`);
    const graph = create(GraphProtoSchema, {
      name: model.name,
      node: this.nodes,
      initializer: this.initializers,
      input: [floatValue(this.input)],
      output: [floatValue(model.output)],
    });
    return toBinary(
      ModelProtoSchema,
      create(ModelProtoSchema, {
        irVersion: BigInt(irVersion),
        opsetImport: [create(OperatorSetIdProtoSchema, { domain: '', version: BigInt(model.opset) })],
        producerName: model.producerName,
        producerVersion: model.producerVersion,
        docString: model.docString,
        graph,
        metadataProps: Object.entries(model.metadata).map(([key, value]) => create(StringStringEntryProtoSchema, { key, value })),
      }),
    );
  }

  /** Every value in a graph has one producer; a second use of a name is a bug in the caller's graph. */
  private claim(name: string): void {
    if (this.names.has(name)) throw new Error(`the ONNX graph already has a value named ${name}`);
    this.names.add(name);
  }
}
