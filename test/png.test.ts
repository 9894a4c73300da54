import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { insertTextChunk, readTextChunks } from '../engine/png.js';
import { deflateSync } from 'node:zlib';

async function tinyPng(): Promise<Buffer> {
  return sharp({ create: { width: 4, height: 3, channels: 3, background: { r: 200, g: 10, b: 10 } } })
    .png()
    .toBuffer();
}

function chunkTypes(png: Buffer): string[] {
  const types: string[] = [];
  for (let at = 8; at < png.length; ) {
    const len = png.readUInt32BE(at);
    types.push(png.toString('latin1', at + 4, at + 8));
    at += 12 + len;
  }
  return types;
}

describe('insertTextChunk / readTextChunks', () => {
  const cases: [string, string, 'tEXt' | 'iTXt'][] = [
    ['ASCII', 'a fox in the snow\nNegative prompt: blurry\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1', 'tEXt'],
    // Latin-1 goes to iTXt: sharp decodes tEXt as UTF-8 and would garble é.
    ['Latin-1', 'café crème, naïve façade', 'iTXt'],
    ['Japanese', '雪の中の狐 — a fox', 'iTXt'],
    ['emoji', 'a cat 🐈 wearing a hat 🎩', 'iTXt'],
  ];

  for (const [name, text, type] of cases) {
    it(`round-trips ${name} text through sharp metadata().comments as ${type}`, async () => {
      const out = insertTextChunk(await tinyPng(), 'parameters', text);
      const meta = await sharp(out).metadata();
      expect(meta.comments).toEqual([{ keyword: 'parameters', text }]);
      expect(readTextChunks(out)).toEqual([{ keyword: 'parameters', text }]);
      // Right after IHDR: sharp does not see text placed after the image data.
      expect(chunkTypes(out).slice(0, 2)).toEqual(['IHDR', type]);
      // The image itself is untouched and still decodes.
      const { data, info } = await sharp(out).raw().toBuffer({ resolveWithObject: true });
      expect([info.width, info.height]).toEqual([4, 3]);
      expect([data[0], data[1], data[2]]).toEqual([200, 10, 10]);
    });
  }

  it('replaces an existing chunk with the same keyword and keeps the others', async () => {
    let png = insertTextChunk(await tinyPng(), 'parameters', 'old');
    png = insertTextChunk(png, 'Comment', 'keep me');
    png = insertTextChunk(png, 'parameters', 'new ✓');
    expect(readTextChunks(png).sort((a, b) => a.keyword.localeCompare(b.keyword))).toEqual([
      { keyword: 'Comment', text: 'keep me' },
      { keyword: 'parameters', text: 'new ✓' },
    ]);
  });

  it('reads zTXt chunks', async () => {
    const png = await tinyPng();
    const body = Buffer.concat([Buffer.from('parameters\0\0', 'latin1'), deflateSync(Buffer.from('zipped text', 'latin1'))]);
    const head = Buffer.alloc(8);
    head.writeUInt32BE(body.length, 0);
    head.write('zTXt', 4, 'latin1');
    const { crc32 } = await import('node:zlib');
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(body, crc32(head.subarray(4))) >>> 0, 0);
    const withZ = Buffer.concat([png.subarray(0, 33), head, body, crc, png.subarray(33)]);
    expect(readTextChunks(withZ)).toEqual([{ keyword: 'parameters', text: 'zipped text' }]);
    expect((await sharp(withZ).metadata()).comments).toEqual([{ keyword: 'parameters', text: 'zipped text' }]);
  });

  it('rejects input that is not a PNG with a clear error', async () => {
    const jpeg = await sharp({ create: { width: 2, height: 2, channels: 3, background: '#000' } }).jpeg().toBuffer();
    expect(() => insertTextChunk(jpeg, 'parameters', 'x')).toThrow(/not a PNG/);
    expect(() => readTextChunks(Buffer.from('hello'))).toThrow(/not a PNG/);
  });

  it('rejects a truncated PNG and invalid keywords', async () => {
    const png = await tinyPng();
    expect(() => readTextChunks(png.subarray(0, 30))).toThrow(/truncated|IHDR/);
    expect(() => insertTextChunk(png, '', 'x')).toThrow(/keyword/);
    expect(() => insertTextChunk(png, 'k'.repeat(80), 'x')).toThrow(/keyword/);
  });
});
