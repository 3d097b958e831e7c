import { List, ListItem, Typography } from '@mui/material';

import { useI18n } from '../i18n/i18n';

export function passwordOk(password: string): boolean {
  return password.length >= 10 && password.length <= 128;
}

/** The server's password rules, shown before submit and ticked as they are met. */
export function PasswordRules({ password, confirm }: { password: string; confirm?: string }) {
  const { m } = useI18n();
  const rules = [{ ok: passwordOk(password), text: m.register.ruleLength }];
  if (confirm !== undefined) {
    rules.push({ ok: password.length > 0 && password === confirm, text: m.register.ruleMatch });
  }
  return (
    <div id="password-rules">
      <Typography variant="body2">{m.register.rules}</Typography>
      <List dense disablePadding>
        {rules.map((rule) => (
          <ListItem key={rule.text} disableGutters sx={{ color: rule.ok ? 'success.dark' : 'text.secondary' }}>
            {rule.ok ? '✓' : '○'}&nbsp;{rule.text}
          </ListItem>
        ))}
      </List>
    </div>
  );
}
