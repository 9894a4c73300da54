// The local engine keeps models loaded (engine/model-cache.ts); the run loop avoids a model switch
// when fairness allows: among the jobs of the same fair round, one whose model is loaded goes
// first. A job of a later round never overtakes for it. A job with LoRAs draws with its model's
// LoRA variant: only that variant being loaded counts for it.
import { afterEach, describe, expect, it } from 'vitest';
import { requestLoadKey } from '../engine/job-loras.js';
import type { GenerateOptions, GenerateRequest, GenerateResult } from '../engine/types.js';
import { ScriptedEngine } from './fixtures/durability-engine.js';
import { imagineInput, startJobService, type ServiceUnderTest } from './helpers/job-service.js';

/** Holds one model at a time, like an engine whose memory budget fits one: the last one drawn,
 * reported by load key as the real engine reports it (a LoRA job's variant is its own model). */
class OneModelEngine extends ScriptedEngine {
  private loaded: string[] = [];
  loadedModels(): readonly string[] {
    return this.loaded;
  }
  override generate(request: GenerateRequest, options?: GenerateOptions): Promise<GenerateResult> {
    this.loaded = [requestLoadKey(request)];
    return super.generate(request, options);
  }
}

let open: ServiceUnderTest | undefined;

afterEach(async () => {
  await open?.close();
  open = undefined;
});

async function runOrder(engine: ScriptedEngine, jobs: [prompt: string, member: string, model: string][]): Promise<string[]> {
  const service = await startJobService(engine);
  open = service;
  const submit = async ([prompt, member, model]: [string, string, string]) =>
    expect((await service.jobs.submit(imagineInput(prompt, member, { model }))).ok).toBe(true);
  const [first, ...rest] = jobs;
  await submit(first!);
  await engine.whenHeld(); // the first job is drawing: its model is the loaded one
  for (const job of rest) await submit(job);
  const order: string[] = [];
  for (let i = 0; i < jobs.length; i++) order.push(await engine.release());
  return order;
}

const QUEUE: [string, string, string][] = [
  ['x0', 'X', 'alpha'],
  // One round: A, B and C each have their first job waiting.
  ['a1', 'A', 'beta'],
  ['b1', 'B', 'alpha'],
  ['c1', 'C', 'beta'],
  // A's second job belongs to the next round, although its model is loaded after b1.
  ['a2', 'A', 'alpha'],
];

describe('the local run loop and loaded models', () => {
  it('among jobs of the same fair round, starts one whose model is loaded first', async () => {
    expect(await runOrder(new OneModelEngine({ hold: true }), QUEUE)).toEqual(['x0', 'b1', 'a1', 'c1', 'a2']);
  });

  it('keeps the plain fair order when the engine reports no loaded models', async () => {
    expect(await runOrder(new ScriptedEngine({ hold: true }), QUEUE)).toEqual(['x0', 'a1', 'b1', 'c1', 'a2']);
  });

  it('does not count a job with LoRAs as loaded when only its plain model is', async () => {
    const order = await runOrder(new OneModelEngine({ hold: true }), [
      ['x0', 'X', 'beta'],
      ['a1 <lora:ink:1>', 'A', 'beta'],
      ['b1', 'B', 'beta'],
    ]);
    expect(order).toEqual(['x0', 'b1', 'a1 <lora:ink:1>']);
  });

  it('counts a job as loaded when its very LoRA variant is, tags in any order and case', async () => {
    const order = await runOrder(new OneModelEngine({ hold: true }), [
      ['x0 <lora:ink:1> <lora:fox:0.5>', 'X', 'beta'],
      ['a1', 'A', 'beta'],
      ['b1 <lora:ink:0.5> <lora:fox:1>', 'B', 'beta'], // the same LoRAs at other weights: another variant
      ['c1 <lora:Fox:0.5> <lora:INK:1>', 'C', 'beta'],
    ]);
    expect(order).toEqual(['x0 <lora:ink:1> <lora:fox:0.5>', 'c1 <lora:Fox:0.5> <lora:INK:1>', 'a1', 'b1 <lora:ink:0.5> <lora:fox:1>']);
  });

  it('never lets a later round overtake for a loaded model', async () => {
    // A has two jobs: a1 (beta, this round) and a2 (alpha, next round); alpha is loaded.
    const order = await runOrder(new OneModelEngine({ hold: true }), [
      ['x0', 'X', 'alpha'],
      ['a1', 'A', 'beta'],
      ['a2', 'A', 'alpha'],
    ]);
    expect(order).toEqual(['x0', 'a1', 'a2']);
  });
});
