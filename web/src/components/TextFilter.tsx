import { TextField } from '@mui/material';
import type { SxProps, Theme } from '@mui/material';
import { useEffect, useState } from 'react';

/** A text filter applied when the user stops typing (400 ms) or presses Enter, so a list is
 * not asked for again at each key. */
export function TextFilter({
  label,
  value,
  onChange,
  max,
  testId,
  type,
  sx,
}: {
  label: string;
  value: string;
  onChange: (v: string) => void;
  max: number;
  testId?: string;
  type?: 'search';
  sx?: SxProps<Theme>;
}) {
  const [draft, setDraft] = useState(value);
  useEffect(() => setDraft(value), [value]);
  useEffect(() => {
    if (draft === value) return;
    const timer = setTimeout(() => onChange(draft), 400);
    return () => clearTimeout(timer);
  }, [draft, value, onChange]);
  return (
    <TextField
      size="small"
      type={type}
      label={label}
      value={draft}
      onChange={(e) => setDraft(e.target.value)}
      onKeyDown={(e) => {
        if (e.key === 'Enter') onChange(draft);
      }}
      slotProps={{ htmlInput: { maxLength: max, 'data-testid': testId } }}
      sx={sx}
    />
  );
}
