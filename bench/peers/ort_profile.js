// Times one ONNX model in ONNX Runtime node by node (its profiler: enableProfiling) and prints
// one JSON object: {"median_ms", "runs", "nodes": [{"name", "op", "median_ms"}]}, a node's median
// over the timed runs (warm-up runs left out). Used by layers.py.
//   node ort_profile.js MODEL.onnx THREADS RUNS WARMUP [N,C,H,W]   (default 1,3,224,224)
const fs = require('fs');
const os = require('os');
const path = require('path');
const ort = require('onnxruntime-node');

function median(xs) {
  const s = xs.slice().sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

async function main() {
  const [model, threads, runs, warmup, shape] = process.argv.slice(2);
  if (!model || !(Number(runs) > 0)) throw new Error('usage: node ort_profile.js MODEL.onnx THREADS RUNS WARMUP [N,C,H,W]');
  const prefix = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'ort_profile_')), 'trace');
  const session = await ort.InferenceSession.create(model, {
    executionProviders: ['cpu'],
    intraOpNumThreads: Number(threads),
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
    enableProfiling: true,
    profileFilePrefix: prefix,
  });
  const name = session.inputNames[0];
  const dims = shape ? shape.split(',').map(Number) : [1, 3, 224, 224];
  const data = new Float32Array(dims.reduce((a, b) => a * b));
  for (let i = 0; i < data.length; ++i) data[i] = Math.random();
  const feeds = { [name]: new ort.Tensor('float32', data, dims) };
  const total = Number(warmup) + Number(runs);
  for (let i = 0; i < total; ++i) await session.run(feeds);
  session.endProfiling();
  await session.release();
  // The trace (Chrome format) is written beside the prefix: one "Node" event per node per run,
  // "<node>_kernel_time" for the kernel itself, and one "Session" "model_run" event per run.
  const dir = path.dirname(prefix);
  const file = fs.readdirSync(dir).find((f) => f.endsWith('.json'));
  if (!file) throw new Error('ONNX Runtime wrote no profile into ' + dir);
  const events = JSON.parse(fs.readFileSync(path.join(dir, file), 'utf8'));
  fs.rmSync(dir, { recursive: true, force: true });
  const runTimes = events.filter((e) => e.cat === 'Session' && e.name === 'model_run').map((e) => e.dur / 1000);
  const perNode = new Map();  // name -> {op, times}
  for (const e of events) {
    if (e.cat !== 'Node' || !e.name.endsWith('_kernel_time')) continue;
    const node = e.name.slice(0, -'_kernel_time'.length);
    if (!perNode.has(node)) perNode.set(node, { op: (e.args && e.args.op_name) || '', times: [] });
    perNode.get(node).times.push(e.dur / 1000);
  }
  const nodes = [];
  for (const [node, v] of perNode) {
    // Each node runs once a run: the last `runs` of its times are the timed ones.
    const timed = v.times.slice(-Number(runs));
    nodes.push({ name: node, op: v.op, median_ms: median(timed) });
  }
  const timedRuns = runTimes.slice(-Number(runs));
  console.log(JSON.stringify({ median_ms: timedRuns.length ? median(timedRuns) : null, runs: timedRuns.length, nodes }));
}

main().catch((e) => { console.error(String(e && e.stack || e)); process.exit(1); });
