import { describe, expect, it } from 'vitest';

import { CsvCounter, attachmentName, readCsv } from './csv';

function streamOf(chunks: string[]): ReadableStream<Uint8Array> {
  const encoder = new TextEncoder();
  return new ReadableStream({
    start(controller) {
      for (const chunk of chunks) controller.enqueue(encoder.encode(chunk));
      controller.close();
    },
  });
}

describe('streamed CSV', () => {
  it('counts records, not lines: quoted newlines and quotes are part of a field', () => {
    const counter = new CsvCounter();
    counter.push('id,old,new\r\n1,"{""a"": 1}","line\r\nbreak"\r\n2,,x\r\n');
    expect(counter.records).toBe(2);
    const noTrailing = new CsvCounter();
    noTrailing.push('h\n1\n2');
    expect(noTrailing.records).toBe(2);
    const headerOnly = new CsvCounter();
    headerOnly.push('id,at\r\n');
    expect(headerOnly.records).toBe(0);
    expect(new CsvCounter().records).toBe(0);
  });

  it('reads the stream chunk by chunk (records cut anywhere) into the same bytes', async () => {
    const text = 'id,action\r\n1,"a\nb"\r\n2,"x,""y"""\r\n3,é\r\n';
    const cuts = ['id,ac', 'tion\r', '\n1,"a', '\nb"\r\n2,"x,""', 'y"""\r\n3,', 'é\r\n'];
    const seen: number[] = [];
    const { blob, records } = await readCsv(streamOf(cuts), (n) => seen.push(n));
    expect(records).toBe(3);
    expect(await blob.text()).toBe(text);
    expect(seen.length).toBe(cuts.length);
    expect(seen).toEqual([...seen].sort((x, y) => x - y));
  });

  it('a multi-byte character split across chunks is decoded once', async () => {
    const bytes = new TextEncoder().encode('h\nñ\n');
    const stream = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(bytes.slice(0, 3));
        controller.enqueue(bytes.slice(3));
        controller.close();
      },
    });
    const { blob, records } = await readCsv(stream);
    expect(records).toBe(1);
    expect(await blob.text()).toBe('h\nñ\n');
  });

  it('the file name of Content-Disposition, never a path', () => {
    expect(attachmentName('attachment; filename="audit-20260301T101010.csv"', 'x.csv')).toBe('audit-20260301T101010.csv');
    expect(attachmentName('attachment; filename="../../etc/passwd"', 'x.csv')).toBe('x.csv');
    expect(attachmentName(null, 'x.csv')).toBe('x.csv');
  });
});
