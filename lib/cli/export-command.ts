// `clamp-native export`: a trained encoder written as an ONNX model (lib/export/onnx.ts), for runtimes
// outside Node: onnxruntime, TensorRT, a browser.
import { parseArgs } from 'node:util';
import { CHECKPOINT_FILE } from '../checkpoint/checkpoint.js';
import { IR_VERSION_OF_OPSET } from '../export/onnx-graph.js';
import { exportOnnx } from '../export/onnx.js';
import { UsageError, wholeNumberFlag } from './flags.js';

const OPSETS = [...IR_VERSION_OF_OPSET.keys()];

export const EXPORT_USAGE = `clamp-native export --checkpoint PATH --onnx FILE [options]
  --checkpoint PATH    a checkpoint file, or a run folder holding ${CHECKPOINT_FILE}
  --onnx FILE          the ONNX model to write. Input images: float32 [N, C, size, size], NCHW, values
                       in [0, 1] (the config's mean/std normalisation is inside the graph; resize to the
                       checkpoint's image size first). Output embeddings: float32 [N, dim]
  --no-fold            keep BatchNormalization nodes (default: folded into the convolutions)
  --projector          end with the projection head (default: the backbone's features, as embed gives)
  --opset N            ONNX opset, ${OPSETS[0]} to ${OPSETS[OPSETS.length - 1]} (default 17)
  The model's metadata_props declare the input, its preprocessing and the output.
`;

export async function runExport(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    strict: true,
    allowPositionals: true,
    options: {
      checkpoint: { type: 'string' },
      onnx: { type: 'string' },
      'no-fold': { type: 'boolean', default: false },
      projector: { type: 'boolean', default: false },
      opset: { type: 'string' },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(EXPORT_USAGE);
    return 0;
  }
  if (positionals.length > 0)
    throw new UsageError(
      `export takes no positional arguments, got '${positionals[0]}': name the checkpoint with --checkpoint and the model with --onnx`,
    );
  if (values.checkpoint === undefined) throw new UsageError('export needs --checkpoint (a checkpoint file or a run folder)');
  // --onnx names the format too: ONNX is the only one for now, and a bare --out would not say what it writes.
  if (values.onnx === undefined) throw new UsageError('export needs --onnx FILE, the ONNX model to write');
  const opset = wholeNumberFlag('opset', values.opset, 1);
  if (opset !== undefined && !IR_VERSION_OF_OPSET.has(opset))
    throw new UsageError(`--opset must be one of ${OPSETS.join(', ')}, got ${opset}`);
  const result = await exportOnnx(values.checkpoint, values.onnx, {
    foldBatchNorm: !values['no-fold'],
    projector: values.projector,
    ...(opset === undefined ? {} : { opset }),
  });
  process.stderr.write(
    `wrote ${result.file} (${(result.bytes / 2 ** 20).toFixed(1)} MiB, opset ${result.opset}): ${result.input.name} [${result.input.shape.join(', ')}] in [0, 1] -> ` +
      `${result.output.name} [${result.output.shape.join(', ')}]${result.projector ? ' (projector output)' : ''}, BatchNorm ${result.foldBatchNorm ? 'folded' : 'kept as nodes'}\n`,
  );
  return 0;
}
