// The real SD 1.5 tokenizer files live beside the repository (../shared/fixtures), never in it.
import { existsSync } from 'node:fs';
import path from 'node:path';

const BESIDE_REPO = path.resolve(import.meta.dirname, '../../../shared/fixtures/sd15-onnx-layout/tokenizer');

/** Where the real CLIP tokenizer files are: $SD_TOKENIZER_DIR, else ../shared beside the repo. */
export function sharedTokenizerDir(): string {
  return process.env['SD_TOKENIZER_DIR'] ?? BESIDE_REPO;
}

export function hasSharedTokenizer(): boolean {
  return existsSync(path.join(sharedTokenizerDir(), 'vocab.json'));
}
