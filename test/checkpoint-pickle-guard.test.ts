import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CheckpointError } from '../engine/checkpoint/errors.js';
import { openWeightsFile, sniffWeightsFormat } from '../engine/checkpoint/pickle-guard.js';
import { bytesOf, writeSafetensors } from '../engine/checkpoint/safetensors-write.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'ckpt-pickle-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

// A protocol-2 pickle that, if unpickled, would call os.system("touch PWNED"): GLOBAL 'os system',
// a string, TUPLE1, REDUCE, STOP.
const MALICIOUS_PICKLE = Buffer.concat([
  Buffer.from([0x80, 0x02]),
  Buffer.from('cos\nsystem\n', 'latin1'),
  Buffer.from([0x58, 11, 0, 0, 0]),
  Buffer.from('touch PWNED', 'latin1'),
  Buffer.from([0x85, 0x52, 0x2e]),
]);

/** The first local header of a zip whose first entry is `name` (what torch.save writes: archive/data.pkl). */
function zipWithEntry(name: string, body: Buffer): Buffer {
  const header = Buffer.alloc(30);
  header.write('PK\x03\x04', 0, 'latin1');
  header.writeUInt16LE(20, 4);
  header.writeUInt32LE(body.length, 18);
  header.writeUInt32LE(body.length, 22);
  header.writeUInt16LE(name.length, 26);
  return Buffer.concat([header, Buffer.from(name, 'latin1'), body]);
}

async function refusedWith(name: string, content: Buffer): Promise<CheckpointError> {
  const file = path.join(dir, name);
  await writeFile(file, content);
  const err = await openWeightsFile(file).then(
    async (f) => {
      await f.close();
      return undefined;
    },
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(CheckpointError);
  return err as CheckpointError;
}

async function validSafetensors(name: string): Promise<string> {
  const file = path.join(dir, name);
  await writeSafetensors(file, [{ name: 'w', dtype: 'F32', shape: [2], data: () => bytesOf(Float32Array.of(1, 2)) }]);
  return file;
}

describe('pickle refusal', () => {
  it('refuses a pickle with the reason and the remedy', async () => {
    const err = await refusedWith('model.ckpt', MALICIOUS_PICKLE);
    expect(err.reason).toBe('pickle');
    expect(err.message).toMatch(/model\.ckpt is a Python pickle \(protocol 2\)/);
    expect(err.message).toMatch(/can run any code/);
    expect(err.message).toMatch(/\.safetensors version/);
  });

  it('refuses a pickle renamed to .safetensors by its bytes', async () => {
    for (const protocol of [2, 3, 4, 5]) {
      const bytes = Buffer.from(MALICIOUS_PICKLE);
      bytes[1] = protocol;
      const err = await refusedWith(`renamed${protocol}.safetensors`, bytes);
      expect(err).toMatchObject({ reason: 'pickle', message: new RegExp(`protocol ${protocol}`) });
    }
  });

  it('refuses a PyTorch zip checkpoint (data.pkl inside), whatever its name', async () => {
    const zip = zipWithEntry('archive/data.pkl', MALICIOUS_PICKLE);
    expect(await refusedWith('model.pt', zip)).toMatchObject({ reason: 'pickle', message: /PyTorch zip checkpoint/ });
    expect(await refusedWith('zip-renamed.safetensors', zip)).toMatchObject({ reason: 'pickle' });
    // data.pkl listed only in the central directory at the end (not the first entry) is found too.
    const later = Buffer.concat([zipWithEntry('archive/version', Buffer.from('3\n')), Buffer.alloc(8192), Buffer.from('archive/data.pkl')]);
    expect(await refusedWith('later.safetensors', later)).toMatchObject({ reason: 'pickle' });
  });

  it('refuses pickle extensions even when the bytes are something else', async () => {
    for (const ext of ['.ckpt', '.pt', '.pth', '.bin']) {
      const file = await validSafetensors(`real${ext}`);
      const err = await openWeightsFile(file).catch((e: unknown) => e);
      expect(err).toMatchObject({ reason: 'pickle', message: new RegExp(`PyTorch \\${ext} file`) });
    }
  });

  it('explains the other files people drop into the models folder', async () => {
    expect(await refusedWith('page.safetensors', Buffer.from('<!DOCTYPE html><html>login</html>'))).toMatchObject({
      reason: 'not-weights',
      message: /web page/,
    });
    expect(await refusedWith('lfs.safetensors', Buffer.from('version https://git-lfs.github.com/spec/v1\noid sha256:'))).toMatchObject({
      message: /Git LFS pointer/,
    });
    expect(await refusedWith('plain.safetensors', zipWithEntry('readme.txt', Buffer.from('hi')))).toMatchObject({
      reason: 'not-weights',
      message: /zip archive/,
    });
    expect(await refusedWith('model.gguf', Buffer.from('GGUF\x03\x00\x00\x00....'))).toMatchObject({ message: /GGUF/ });
    expect(await refusedWith('tiny.safetensors', Buffer.from([1, 2]))).toMatchObject({ reason: 'truncated' });
  });

  it('opens a real .safetensors file', async () => {
    const f = await openWeightsFile(await validSafetensors('ok.safetensors'));
    expect([...(await f.readFloat32('w'))]).toEqual([1, 2]);
    await f.close();
    expect(sniffWeightsFormat(new Uint8Array([8, 0, 0, 0, 0, 0, 0, 0, 0x7b]))).toEqual({ kind: 'safetensors' });
  });
});
