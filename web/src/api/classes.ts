import { Home } from '@ocupredict/client';
import { useQuery } from '@tanstack/react-query';

import { unwrap } from './errors';

/** The model's classes with their labels in the user's language, from the API (never a
 * list kept here): the dashboard's `labels` for every class code. */
export function useClassLabels(): Record<string, string> {
  const stats = useQuery({
    queryKey: ['stats', 'labels'],
    queryFn: () => unwrap(Home.stats({ query: { range: 'all', tz: browserTimeZone() } })),
    staleTime: 10 * 60_000,
  });
  return stats.data?.labels ?? {};
}

export function browserTimeZone(): string {
  try {
    return Intl.DateTimeFormat().resolvedOptions().timeZone || 'America/Lima';
  } catch {
    return 'America/Lima';
  }
}
