// Benchmarks only: the time onnxruntime spends inside session.run on this thread, so the
// pipeline can tell it apart from its own work around each UNet call.
import * as ort from 'onnxruntime-node';

/** Wraps InferenceSession.run for every session of this thread; returns the cumulative milliseconds. */
export function timeSessionRuns(): () => number {
  let total = 0;
  // The typings export a factory interface; at run time it is a class whose prototype every session shares.
  const proto = (ort.InferenceSession as unknown as { prototype: ort.InferenceSession }).prototype;
  const original = proto.run;
  proto.run = async function timedRun(this: ort.InferenceSession, ...args: Parameters<typeof original>) {
    const t0 = performance.now();
    try {
      return await original.apply(this, args);
    } finally {
      total += performance.now() - t0;
    }
  } as typeof original;
  return () => total;
}
