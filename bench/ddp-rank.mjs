// One rank of bench/ddp.mjs: the fashion-mnist preset's network and step (4 views x global batch 128,
// rs 3, LARS), this rank's share of the batch, warm-up then timed steps. Rank 0 prints one JSON line.
import { Trainer } from '../dist/index.js';
import { setNumThreads } from '../dist/runtime/native.js';

const rank = Number(process.env.RANK ?? 0),
  worldSize = Number(process.env.WORLD_SIZE ?? 1);
const reps = Number(process.env.REPS ?? 5),
  views = 4,
  batch = 128;
setNumThreads(Number(process.env.THREADS ?? 1));
const trainer = await Trainer.create({
  backbone: 'small',
  widths: [16, 32, 64],
  blocks: [2, 2, 2],
  inChannels: 1,
  projectorHidden: [2048],
  projectorOut: 128,
  views,
  loss: { rs: 3 },
  optimiser: { name: 'lars', weightDecay: 1e-5 },
  schedule: { peakLr: 0.1, totalSteps: 1000 },
});
if (worldSize > 1) await trainer.distribute({ rank, worldSize, masterPort: Number(process.env.MASTER_PORT), timeoutMs: 120_000 });
const share = (views * batch) / worldSize;
const images = Float32Array.from({ length: share * 28 * 28 }, () => Math.random());
const times = [];
for (let rep = 0; rep <= reps; rep++) {
  const start = performance.now();
  await trainer.step(images, [share, 1, 28, 28]);
  if (rep > 0) times.push((performance.now() - start) / 1000);
}
const parameters = (await trainer.state()).filter(
  (e) => !e.name.startsWith('optimizer.') && !/running_|num_batches|^trainer\./.test(e.name),
);
if (rank === 0) {
  console.log(
    JSON.stringify({
      secondsPerStep: times.sort((a, b) => a - b)[Math.floor(times.length / 2)],
      parameters: parameters.reduce((n, e) => n + e.data.length, 0),
    }),
  );
}
