// One error type for everything that is wrong with a weights file, so the caller (CLI, model
// registry, a member's status message) can show `message` as is: it names the file's problem and,
// where there is one, what to do about it. `reason` lets code and tests tell the cases apart.

export type CheckpointProblem =
  | 'truncated'
  | 'bad-header'
  | 'bad-offsets'
  | 'bad-tensor'
  | 'unsupported-dtype'
  | 'pickle'
  | 'not-weights'
  | 'unknown-family'
  | 'unsupported-family'
  | 'missing-tensor';

export class CheckpointError extends Error {
  override readonly name = 'CheckpointError';
  constructor(
    readonly reason: CheckpointProblem,
    message: string,
  ) {
    super(message);
  }
}
