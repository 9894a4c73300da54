// Which known names a mistyped one probably meant (config keys, LoRA names): edit distance on
// lower-cased text, near enough to be a likely meaning.

export function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      cur[j] = Math.min((prev[j] ?? 0) + 1, (cur[j - 1] ?? 0) + 1, (prev[j - 1] ?? 0) + cost);
    }
    prev = cur;
  }
  return prev[b.length] ?? 0;
}

/** Up to `limit` candidates near `word`, nearest first: within a third of its length (at least 2), or containing it. */
export function nearNames(word: string, candidates: readonly string[], limit = 3): string[] {
  const w = word.toLowerCase();
  const threshold = Math.max(2, Math.floor(word.length / 3));
  return candidates
    .map((c) => ({ c, d: editDistance(w, c.toLowerCase()), contains: w.length >= 3 && c.toLowerCase().includes(w) }))
    .filter((x) => x.d <= threshold || x.contains)
    .sort((a, b) => a.d - b.d || a.c.localeCompare(b.c))
    .slice(0, limit)
    .map((x) => x.c);
}
