/**
 * A streamed CSV download: the export's body is read chunk by chunk as it arrives (never
 * parsed as a whole), its records counted on the way for the progress shown, then handed
 * to the browser as a file.
 */

/** Counts CSV records (RFC 4180: a newline inside quotes is part of the field) across
 * chunks; `records` excludes the header row. */
export class CsvCounter {
  private quoted = false;
  private lines = 0;
  private pendingText = false;

  /** Feed the next piece of text. */
  push(text: string): void {
    for (let i = 0; i < text.length; i += 1) {
      const ch = text.charCodeAt(i);
      if (ch === 34 /* " */) {
        // An escaped quote ("") toggles twice: no net change.
        this.quoted = !this.quoted;
        this.pendingText = true;
      } else if (ch === 10 /* \n */ && !this.quoted) {
        this.lines += 1;
        this.pendingText = false;
      } else if (ch !== 13 /* \r */) {
        this.pendingText = true;
      }
    }
  }

  /** Records seen so far after the header (a last line without its newline counts). */
  get records(): number {
    return Math.max(0, this.lines + (this.pendingText ? 1 : 0) - 1);
  }
}

/** Reads `stream` to the end, calling `onRecords` as records arrive; the bytes as a Blob. */
export async function readCsv(
  stream: ReadableStream<Uint8Array>,
  onRecords?: (records: number) => void,
  type = 'text/csv;charset=utf-8',
): Promise<{ blob: Blob; records: number }> {
  const reader = stream.getReader();
  const decoder = new TextDecoder();
  const counter = new CsvCounter();
  const parts: Uint8Array[] = [];
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    parts.push(value);
    counter.push(decoder.decode(value, { stream: true }));
    onRecords?.(counter.records);
  }
  counter.push(decoder.decode());
  return { blob: new Blob(parts as BlobPart[], { type }), records: counter.records };
}

/** The file name of a Content-Disposition header, else `fallback`. */
export function attachmentName(header: string | null | undefined, fallback: string): string {
  const match = /filename="?([^";]+)"?/i.exec(header ?? '');
  const name = match?.[1]?.trim();
  return name && /^[\w.-]+$/.test(name) ? name : fallback;
}

/** Hands a Blob to the browser as a download. */
export function saveBlob(blob: Blob, name: string): void {
  const url = URL.createObjectURL(blob);
  const link = document.createElement('a');
  link.href = url;
  link.download = name;
  link.rel = 'noopener';
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}
