// Request body parsing for the fake: JSON, or multipart/form-data with payload_json + files[n]
// (how @discordjs/rest uploads attachments).
import type { IncomingMessage } from 'node:http';
import busboy from 'busboy';

export interface UploadedFile {
  field: string;
  filename: string;
  contentType: string;
  data: Buffer;
}

export interface ParsedBody {
  json: unknown;
  files: UploadedFile[];
  multipart: boolean;
}

export function readBody(req: IncomingMessage): Promise<ParsedBody> {
  const type = req.headers['content-type'] ?? '';
  if (type.startsWith('multipart/form-data')) return readMultipart(req);
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('error', reject);
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      let json: unknown;
      try {
        json = text ? (JSON.parse(text) as unknown) : undefined;
      } catch {
        json = undefined;
      }
      resolve({ json, files: [], multipart: false });
    });
  });
}

function readMultipart(req: IncomingMessage): Promise<ParsedBody> {
  return new Promise((resolve, reject) => {
    const files: UploadedFile[] = [];
    let json: unknown;
    const bb = busboy({ headers: req.headers, limits: { fileSize: 64 * 1024 * 1024 } });
    bb.on('field', (name, value) => {
      if (name === 'payload_json') {
        try {
          json = JSON.parse(value) as unknown;
        } catch {
          json = undefined;
        }
      }
    });
    bb.on('file', (field, stream, info) => {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => files.push({ field, filename: info.filename ?? '', contentType: info.mimeType, data: Buffer.concat(chunks) }));
    });
    bb.on('error', reject);
    bb.on('close', () => resolve({ json, files, multipart: true }));
    req.pipe(bb);
  });
}
