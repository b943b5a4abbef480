// Times one ONNX model in ONNX Runtime (onnxruntime-node, CPU execution provider) and prints
// one JSON line: {"median_ms": ..., "runs": ...}. Used by compare.py.
//   node ort_bench.js MODEL.onnx THREADS RUNS WARMUP [N,C,H,W]   (default 1,3,224,224)
const ort = require('onnxruntime-node');

async function main() {
  const [path, threads, runs, warmup, shape] = process.argv.slice(2);
  const session = await ort.InferenceSession.create(path, {
    executionProviders: ['cpu'],
    intraOpNumThreads: Number(threads),
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
  });
  const name = session.inputNames[0];
  const meta = shape ? shape.split(',').map(Number) : [1, 3, 224, 224];
  const data = new Float32Array(meta.reduce((a, b) => a * b));
  for (let i = 0; i < data.length; ++i) data[i] = Math.random();
  const feeds = { [name]: new ort.Tensor('float32', data, meta) };
  for (let i = 0; i < Number(warmup); ++i) await session.run(feeds);
  const times = [];
  for (let i = 0; i < Number(runs); ++i) {
    const t0 = process.hrtime.bigint();
    await session.run(feeds);
    times.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  times.sort((a, b) => a - b);
  console.log(JSON.stringify({ median_ms: times[Math.floor(times.length / 2)], runs: times.length }));
}

main().catch((e) => { console.error(e); process.exit(1); });
