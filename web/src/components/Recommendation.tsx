import { Box, Chip, Typography } from '@mui/material';

import { useI18n } from '../i18n/i18n';

export type RecommendationCode = 'refer' | 'routine' | 'inconclusive' | 'retake_image';

const COLOUR = {
  refer: 'error',
  routine: 'success',
  inconclusive: 'warning',
  retake_image: 'warning',
  none: 'default',
} as const;

const SYMBOL = { refer: '!', routine: '✓', inconclusive: '?', retake_image: '↻', none: '–' } as const;

/** The recommendation as a word (and a symbol); colour is only a third carrier. */
export function RecommendationBadge({ value, size = 'small' }: { value: RecommendationCode | null | undefined; size?: 'small' | 'medium' }) {
  const { m } = useI18n();
  const key = value ?? 'none';
  return (
    <Chip
      size={size}
      color={COLOUR[key]}
      variant={key === 'none' ? 'outlined' : 'filled'}
      label={`${SYMBOL[key]} ${m.recommendation[key]}`}
      data-recommendation={key}
    />
  );
}

export function RecommendationExplained({ value }: { value: RecommendationCode | null | undefined }) {
  const { m } = useI18n();
  const key = value ?? 'none';
  return (
    <Box sx={{ display: 'flex', flexWrap: 'wrap', gap: 1, alignItems: 'center' }}>
      <RecommendationBadge value={value} size="medium" />
      <Typography>{m.recommendationHelp[key]}</Typography>
    </Box>
  );
}
