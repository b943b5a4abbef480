// Runs one ONNX model once in ONNX Runtime (onnxruntime-node, CPU execution provider, one
// thread) on an input read from a .npy file and writes its first output as a .npy file: the
// reference outputs for tests/onnx_import_test.py.
//   node ort_run.js MODEL.onnx INPUT.npy OUTPUT.npy [--opt disabled|basic|extended|all]
// INPUT.npy: little-endian float32 ('<f4'), C order, the shape the model's first input takes
// (NCHW for an image model). OUTPUT.npy: '<f4', C order, the first output's shape.
// --opt: ONNX Runtime's graph optimisation level (default disabled: every node as written, no
// fusions). Exits 2 on bad usage, 1 on any other error (message on stderr).
const fs = require('fs');
const ort = require('onnxruntime-node');

function readNpy(path) {
  const buf = fs.readFileSync(path);
  if (buf.toString('latin1', 0, 6) !== '\x93NUMPY') throw new Error(`${path}: not a .npy file`);
  const major = buf[6];
  const headerLen = major === 1 ? buf.readUInt16LE(8) : buf.readUInt32LE(8);
  const start = (major === 1 ? 10 : 12) + headerLen;
  const header = buf.toString('latin1', major === 1 ? 10 : 12, start);
  const descr = /'descr':\s*'([^']*)'/.exec(header);
  const order = /'fortran_order':\s*(True|False)/.exec(header);
  const shape = /'shape':\s*\(([^)]*)\)/.exec(header);
  if (!descr || !order || !shape) throw new Error(`${path}: cannot parse the header ${header}`);
  if (descr[1] !== '<f4') throw new Error(`${path}: dtype ${descr[1]}, want '<f4' (float32)`);
  if (order[1] !== 'False') throw new Error(`${path}: Fortran order, want C order`);
  const dims = shape[1].split(',').map((s) => s.trim()).filter((s) => s !== '').map(Number);
  const count = dims.reduce((a, b) => a * b, 1);
  if (buf.length - start !== 4 * count) {
    const got = buf.length - start;
    throw new Error(`${path}: ${got} data bytes for shape (${dims}), want ${4 * count}`);
  }
  // Copy: the data offset in the file need not be 4-byte aligned.
  const data = new Float32Array(count);
  for (let i = 0; i < count; ++i) data[i] = buf.readFloatLE(start + 4 * i);
  return { data, dims };
}

function writeNpy(path, data, dims) {
  const shape = dims.length === 1 ? `(${dims[0]},)` : `(${dims.join(', ')})`;
  let header = `{'descr': '<f4', 'fortran_order': False, 'shape': ${shape}, }`;
  header += ' '.repeat(63 - ((10 + header.length) % 64)) + '\n';  // 64-byte aligned data
  const head = Buffer.alloc(10);
  Buffer.from('\x93NUMPY', 'latin1').copy(head, 0);
  head[6] = 1;
  head[7] = 0;
  head.writeUInt16LE(header.length, 8);
  const body = Buffer.alloc(4 * data.length);
  for (let i = 0; i < data.length; ++i) body.writeFloatLE(data[i], 4 * i);
  fs.writeFileSync(path, Buffer.concat([head, Buffer.from(header, 'latin1'), body]));
}

async function main() {
  const args = process.argv.slice(2);
  let opt = 'disabled';
  const optAt = args.indexOf('--opt');
  if (optAt >= 0) {
    opt = args[optAt + 1];
    args.splice(optAt, 2);
  }
  if (args.length !== 3 || !['disabled', 'basic', 'extended', 'all'].includes(opt)) {
    console.error('usage: node ort_run.js MODEL.onnx INPUT.npy OUTPUT.npy '
      + '[--opt disabled|basic|extended|all]');
    process.exit(2);
  }
  const [model, input, output] = args;
  const session = await ort.InferenceSession.create(model, {
    executionProviders: ['cpu'],
    intraOpNumThreads: 1,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: opt,
  });
  const x = readNpy(input);
  const feeds = { [session.inputNames[0]]: new ort.Tensor('float32', x.data, x.dims) };
  const results = await session.run(feeds);
  const y = results[session.outputNames[0]];
  if (y.type !== 'float32') {
    throw new Error(`output '${session.outputNames[0]}' is ${y.type}, want float32`);
  }
  writeNpy(output, y.data, y.dims);
}

main().catch((e) => { console.error(`ort_run.js: ${e.message || e}`); process.exit(1); });
