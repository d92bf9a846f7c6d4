let segmenter: Intl.Segmenter | undefined;

/** Splits text into grapheme clusters (user-perceived characters), so emoji sequences stay whole. */
export function graphemes(text: string): string[] {
  segmenter ??= new Intl.Segmenter('und', { granularity: 'grapheme' });
  return Array.from(segmenter.segment(text), (part) => part.segment);
}
