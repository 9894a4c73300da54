// PNG text chunks (the AUTOMATIC1111 `parameters` chunk) written and read by hand:
// sharp can read PNG text blocks but cannot write them (lovell/sharp#3549).
import { crc32, inflateSync } from 'node:zlib';

const SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
const TEXT_TYPES = new Set(['tEXt', 'iTXt', 'zTXt']);

interface RawChunk {
  type: string;
  /** Offset of the chunk's length field. */
  start: number;
  /** Offset just past the chunk's CRC. */
  end: number;
  data: Buffer;
}

export interface PngTextChunk {
  keyword: string;
  text: string;
}

function assertPng(png: Buffer): void {
  if (png.length < SIGNATURE.length + 12 || !png.subarray(0, SIGNATURE.length).equals(SIGNATURE)) {
    throw new Error('not a PNG file (the 8-byte PNG signature is missing)');
  }
}

function chunksOf(png: Buffer): RawChunk[] {
  assertPng(png);
  const chunks: RawChunk[] = [];
  let at = SIGNATURE.length;
  while (at + 12 <= png.length) {
    const length = png.readUInt32BE(at);
    const type = png.toString('latin1', at + 4, at + 8);
    const end = at + 12 + length;
    if (end > png.length) throw new Error(`truncated PNG: chunk ${type} runs past the end of the file`);
    chunks.push({ type, start: at, end, data: png.subarray(at + 8, at + 8 + length) });
    at = end;
    if (type === 'IEND') break;
  }
  if (chunks[0]?.type !== 'IHDR') throw new Error('malformed PNG: the first chunk is not IHDR');
  return chunks;
}

function encodeChunk(type: string, data: Buffer): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.length, 0);
  head.write(type, 4, 'latin1');
  const crc = Buffer.alloc(4);
  // The CRC covers the type and the data, not the length.
  crc.writeUInt32BE(crc32(data, crc32(head.subarray(4))) >>> 0, 0);
  return Buffer.concat([head, data, crc]);
}

function validKeyword(keyword: string): boolean {
  // PNG keywords: 1–79 Latin-1 printable characters, no leading/trailing/double spaces.
  return /^[\x20-\x7e\xa1-\xff]{1,79}$/.test(keyword) && !/^ | $| {2}/.test(keyword);
}

/** The keyword a text chunk's data starts with (up to its NUL separator). */
function keywordOf(data: Buffer): string {
  const nul = data.indexOf(0);
  return data.toString('latin1', 0, nul < 0 ? data.length : nul);
}

function textChunk(keyword: string, text: string): Buffer {
  const key = Buffer.from(`${keyword}\0`, 'latin1');
  // Pillow (and so AUTOMATIC1111) writes tEXt for any Latin-1 text, but libvips (sharp) decodes
  // tEXt bytes as UTF-8, so é in a tEXt chunk reads back as U+FFFD there. ASCII reads the same
  // everywhere; everything else goes to iTXt, which every reader decodes as UTF-8.
  if (/^[\x01-\x7f]*$/.test(text)) return encodeChunk('tEXt', Buffer.concat([key, Buffer.from(text, 'latin1')]));
  // iTXt: keyword, compression flag 0, method 0, empty language tag, empty translated keyword, UTF-8 text.
  return encodeChunk('iTXt', Buffer.concat([key, Buffer.from([0, 0, 0, 0]), Buffer.from(text, 'utf8')]));
}

/**
 * Returns a copy of `png` with a text chunk placed right after IHDR (sharp reads text only
 * before IDAT). Any existing text chunk with the same keyword is dropped, so it is replaced.
 */
export function insertTextChunk(png: Buffer, keyword: string, text: string): Buffer {
  if (!validKeyword(keyword)) throw new Error(`invalid PNG text keyword: ${JSON.stringify(keyword)}`);
  const chunks = chunksOf(png);
  const parts: Buffer[] = [SIGNATURE];
  for (const chunk of chunks) {
    if (TEXT_TYPES.has(chunk.type) && keywordOf(chunk.data) === keyword) continue;
    parts.push(png.subarray(chunk.start, chunk.end));
    if (chunk.type === 'IHDR') parts.push(textChunk(keyword, text));
  }
  return Buffer.concat(parts);
}

function decodeTextChunk(type: string, data: Buffer): PngTextChunk | undefined {
  const nul = data.indexOf(0);
  if (nul < 1) return undefined;
  const keyword = data.toString('latin1', 0, nul);
  if (type === 'tEXt') return { keyword, text: data.toString('latin1', nul + 1) };
  if (type === 'zTXt') {
    // Byte after the NUL is the compression method (0 = zlib).
    return { keyword, text: inflateSync(data.subarray(nul + 2)).toString('latin1') };
  }
  // iTXt
  const compressed = data[nul + 1] === 1;
  const langEnd = data.indexOf(0, nul + 3);
  if (langEnd < 0) return undefined;
  const translatedEnd = data.indexOf(0, langEnd + 1);
  if (translatedEnd < 0) return undefined;
  const body = data.subarray(translatedEnd + 1);
  return { keyword, text: (compressed ? inflateSync(body) : body).toString('utf8') };
}

/** Every tEXt, zTXt and iTXt chunk, in file order. Unreadable chunks are skipped. */
export function readTextChunks(png: Buffer): PngTextChunk[] {
  const out: PngTextChunk[] = [];
  for (const chunk of chunksOf(png)) {
    if (!TEXT_TYPES.has(chunk.type)) continue;
    try {
      const decoded = decodeTextChunk(chunk.type, chunk.data);
      if (decoded) out.push(decoded);
    } catch {
      // A corrupt compressed chunk should not hide the others.
    }
  }
  return out;
}
