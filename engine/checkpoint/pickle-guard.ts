// Decides whether a weights file may be opened at all. PyTorch's .ckpt/.pt/.pth/.bin files are
// Python pickles, and unpickling runs whatever code the file names — a checkpoint from a stranger
// can take over the machine. The engine therefore never unpickles: such files are refused with a
// message that says why and what to get instead. The check looks at the bytes as well as the
// extension, so a pickle renamed to .safetensors is refused too, and it explains the other things
// people find in their models folder by mistake (an HTML error page, a Git LFS pointer, GGUF).
import { basename, extname } from 'node:path';
import { CheckpointError } from './errors.js';
import { SafetensorsFile, openFileSource } from './safetensors.js';

export type SniffedFormat =
  | { kind: 'safetensors' }
  | { kind: 'pickle'; what: string }
  | { kind: 'not-weights'; what: string };

const PICKLE_EXTENSIONS = new Set(['.ckpt', '.pt', '.pth', '.bin', '.pkl', '.pickle']);
/** Enough of the start to see a zip's first entry name or a safetensors length + '{'. */
export const SNIFF_HEAD_BYTES = 4096;
/** A zip's central directory (listing every entry name) sits at the end. */
export const SNIFF_TAIL_BYTES = 65536;

const ascii = (bytes: Uint8Array): string => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1');

function startsWith(bytes: Uint8Array, text: string): boolean {
  return ascii(bytes.subarray(0, text.length)) === text;
}

/**
 * What the file is, judged from its first bytes (and, for zips, its last ones). The extension
 * only sharpens the wording; the bytes decide.
 */
export function sniffWeightsFormat(head: Uint8Array, tail: Uint8Array = new Uint8Array(0)): SniffedFormat {
  if (head.length >= 2 && head[0] === 0x80 && head[1]! >= 2 && head[1]! <= 5) {
    return { kind: 'pickle', what: `a Python pickle (protocol ${head[1]})` };
  }
  if (startsWith(head, 'PK\x03\x04') || startsWith(head, 'PK\x05\x06')) {
    if (ascii(head).includes('data.pkl') || ascii(tail).includes('data.pkl')) {
      return { kind: 'pickle', what: 'a PyTorch zip checkpoint (its data.pkl is a Python pickle)' };
    }
    return { kind: 'not-weights', what: 'a zip archive; unpack it first' };
  }
  if (startsWith(head, 'GGUF')) return { kind: 'not-weights', what: 'a GGUF file, which this engine does not read' };
  if (startsWith(head, 'version https://git-lfs')) {
    return { kind: 'not-weights', what: 'a Git LFS pointer, not the weights (fetch the real file with `git lfs pull`)' };
  }
  const text = ascii(head.subarray(0, 256)).trimStart().toLowerCase();
  if (text.startsWith('<!doctype html') || text.startsWith('<html')) {
    return { kind: 'not-weights', what: 'a web page, not weights (the download probably needed a login)' };
  }
  // safetensors: a little-endian u64 header length, then the JSON object's '{'. A file too short
  // to tell goes on to the reader, which reports it as cut short.
  if (head.length < 9 || head[8] === 0x7b) return { kind: 'safetensors' };
  return { kind: 'not-weights', what: 'not a .safetensors file' };
}

function pickleRefusal(label: string, what: string): CheckpointError {
  return new CheckpointError(
    'pickle',
    `${label} is ${what}. The engine never loads pickles: opening one can run any code hidden in it. ` +
      'Download the .safetensors version of the same model instead (model pages usually offer one).',
  );
}

/** Throws a CheckpointError unless `head`/`tail` look like a safetensors file named `fileName`. */
export function assertNotPickle(fileName: string, head: Uint8Array, tail?: Uint8Array): void {
  const label = basename(fileName);
  const sniffed = sniffWeightsFormat(head, tail);
  if (sniffed.kind === 'pickle') throw pickleRefusal(label, sniffed.what);
  const ext = extname(fileName).toLowerCase();
  if (PICKLE_EXTENSIONS.has(ext)) {
    // A pickle extension is refused whatever the bytes say: the name promises a pickle, and a
    // file we cannot classify is not worth the risk.
    throw pickleRefusal(label, `a PyTorch ${ext} file (a Python pickle)`);
  }
  if (sniffed.kind === 'not-weights') {
    throw new CheckpointError('not-weights', `${label} is ${sniffed.what}.`);
  }
}

/** Opens a weights file for reading after the checks above; the only way the engine opens one. */
export async function openWeightsFile(path: string): Promise<SafetensorsFile> {
  const source = await openFileSource(path);
  try {
    const head = new Uint8Array(Math.min(SNIFF_HEAD_BYTES, source.size));
    await source.read(head, 0);
    const tail = new Uint8Array(Math.min(SNIFF_TAIL_BYTES, source.size));
    if (head[0] === 0x50) await source.read(tail, source.size - tail.length); // 'P': maybe a zip
    assertNotPickle(path, head, tail);
  } catch (err) {
    await source.close();
    throw err;
  }
  return SafetensorsFile.open(source, basename(path));
}
