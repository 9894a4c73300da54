import { describe, expect, it } from 'vitest';
import { formatInfoText, parseInfoText, type InfoTextParams } from '../engine/infotext.js';

const base: InfoTextParams = {
  prompt: 'a fox in the snow',
  negativePrompt: 'blurry',
  steps: 20,
  sampler: 'Euler a',
  guidance: 7,
  seed: 1,
  width: 512,
  height: 768,
  model: 'sd15',
};

describe('formatInfoText', () => {
  it('writes A1111 layout with integers unpadded and RNG: CPU last', () => {
    expect(formatInfoText(base)).toBe(
      'a fox in the snow\nNegative prompt: blurry\n' +
        'Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 512x768, Model: sd15, RNG: CPU',
    );
  });

  it('omits the negative line when empty and adds optional keys in A1111 order', () => {
    const text = formatInfoText({
      ...base,
      negativePrompt: '',
      guidance: 7.5,
      variation: { seed: 4242, strength: 0.1 },
      denoisingStrength: 0.35,
    });
    expect(text).toBe(
      'a fox in the snow\n' +
        'Steps: 20, Sampler: Euler a, CFG scale: 7.5, Seed: 1, Size: 512x768, Model: sd15, ' +
        'Variation seed: 4242, Variation seed strength: 0.1, Denoising strength: 0.35, RNG: CPU',
    );
  });

  it('writes Model hash (10 hex), Lora hashes and TI hashes as A1111 does, names without ":" or ","', () => {
    const text = formatInfoText({
      ...base,
      prompt: 'a fox <lora:ink:0.7> in the snow',
      modelSha256: '6ce0161689b3853acaa03779ec93eafe75a02f4ced659bee03f50797806fa2fa',
      loraHashes: { ink: '0123456789ab', 'odd:name,x': 'ba9876543210' },
      tiHashes: { sparkle: 'fedcba987654' },
    });
    expect(text).toBe(
      'a fox <lora:ink:0.7> in the snow\nNegative prompt: blurry\n' +
        'Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 512x768, Model hash: 6ce0161689, Model: sd15, ' +
        'Lora hashes: "ink: 0123456789ab, oddnamex: ba9876543210", TI hashes: "sparkle: fedcba987654", RNG: CPU',
    );
    const back = parseInfoText(text)!;
    expect(back.prompt).toBe('a fox <lora:ink:0.7> in the snow');
    expect(back.params['Lora hashes']).toBe('ink: 0123456789ab, oddnamex: ba9876543210');
    expect(back.params['Model hash']).toBe('6ce0161689');
  });

  it('quotes values containing a comma or colon', () => {
    const text = formatInfoText({ ...base, model: 'my, model: v2' });
    expect(text).toContain('Model: "my, model: v2", RNG: CPU');
  });
});

describe('parseInfoText', () => {
  it('reads a real-looking A1111 infotext with a multi-line prompt and extra keys', () => {
    const text = [
      'masterpiece, a castle',
      'on a hill, (sunset:1.2)',
      'Negative prompt: lowres, bad anatomy',
      'Steps: 28, Sampler: DPM++ 2M Karras, CFG scale: 6.5, Seed: 3735928559, Size: 640x448, ' +
        'Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Lora hashes: "add_detail: 7c6bad76eb54", Version: v1.9.4',
    ].join('\n');
    const parsed = parseInfoText(text);
    expect(parsed).toEqual({
      prompt: 'masterpiece, a castle\non a hill, (sunset:1.2)',
      negativePrompt: 'lowres, bad anatomy',
      params: {
        Steps: '28',
        Sampler: 'DPM++ 2M Karras',
        'CFG scale': '6.5',
        Seed: '3735928559',
        Size: '640x448',
        'Model hash': '6ce0161689',
        Model: 'v1-5-pruned-emaonly',
        'Lora hashes': 'add_detail: 7c6bad76eb54',
        Version: 'v1.9.4',
      },
    });
  });

  it('handles CRLF line ends and a missing negative prompt', () => {
    const parsed = parseInfoText('a cat\r\nSteps: 4, Sampler: Turbo, CFG scale: 1, Seed: 9, Size: 512x512\r\n');
    expect(parsed?.prompt).toBe('a cat');
    expect(parsed?.negativePrompt).toBe('');
    expect(parsed?.params.Sampler).toBe('Turbo');
  });

  it('returns undefined for text that is only a prompt', () => {
    expect(parseInfoText('a photo of a cat, 35mm')).toBeUndefined();
    expect(parseInfoText('portrait\nstyle: oil, light: soft')).toBeUndefined();
    expect(parseInfoText('')).toBeUndefined();
  });

  it('keeps a quoted value with escaped quotes intact', () => {
    const parsed = parseInfoText('x\nSteps: 1, Sampler: Euler, CFG scale: 1, Model: "say \\"hi\\", ok"');
    expect(parsed?.params.Model).toBe('say "hi", ok');
  });

  it('round-trips everything formatInfoText writes', () => {
    const p: InfoTextParams = {
      prompt: 'line one, with: colon\nline two 🦊 ünïcödé',
      negativePrompt: 'ugly, "quoted"',
      steps: 30,
      sampler: 'DPM++ 2M Karras',
      guidance: 4.5,
      seed: 4294967295,
      width: 768,
      height: 512,
      model: 'club, model',
      variation: { seed: 12, strength: 0.25 },
      denoisingStrength: 0.6,
    };
    const parsed = parseInfoText(formatInfoText(p));
    expect(parsed).toEqual({
      prompt: p.prompt,
      negativePrompt: p.negativePrompt,
      params: {
        Steps: '30',
        Sampler: 'DPM++ 2M Karras',
        'CFG scale': '4.5',
        Seed: '4294967295',
        Size: '768x512',
        Model: 'club, model',
        'Variation seed': '12',
        'Variation seed strength': '0.25',
        'Denoising strength': '0.6',
        RNG: 'CPU',
      },
    });
  });
});
