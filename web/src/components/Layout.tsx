import { Auth } from '@ocupredict/client';
import {
  AppBar,
  Box,
  Button,
  Container,
  FormControl,
  InputLabel,
  MenuItem,
  Select,
  Toolbar,
  Typography,
} from '@mui/material';
import { useQueryClient } from '@tanstack/react-query';
import { useId } from 'react';
import type { ReactNode } from 'react';
import { NavLink, Link as RouterLink, useNavigate } from 'react-router';

import { unwrap } from '../api/errors';
import { ME_KEY, useAuth } from '../auth';
import { Loading } from './states';
import { useI18n } from '../i18n/i18n';
import { LANGS } from '../i18n/messages';
import type { Lang } from '../i18n/messages';

export function LanguageSelect() {
  const { m, lang, setLang } = useI18n();
  const { user } = useAuth();
  const queryClient = useQueryClient();
  const id = useId();
  const change = async (next: Lang) => {
    setLang(next);
    if (user && user.locale !== next) {
      // Saved as the account's locale: emails and the API's labels follow it.
      const updated = await unwrap(Auth.updateMe({ body: { locale: next } })).catch(() => undefined);
      if (updated) {
        queryClient.setQueryData(ME_KEY, updated);
        await queryClient.invalidateQueries({ predicate: (q) => q.queryKey[0] !== ME_KEY[0] });
      }
    }
  };
  return (
    <FormControl size="small" sx={{ minWidth: 120 }}>
      <InputLabel id={`${id}-label`} sx={{ color: 'inherit' }}>
        {m.nav.language}
      </InputLabel>
      <Select
        labelId={`${id}-label`}
        label={m.nav.language}
        value={lang}
        onChange={(e) => void change(e.target.value as Lang)}
        data-testid="language"
        sx={{ color: 'inherit', '.MuiOutlinedInput-notchedOutline': { borderColor: 'currentColor' }, '.MuiSvgIcon-root': { color: 'inherit' } }}
      >
        {LANGS.map((l) => (
          <MenuItem key={l} value={l} lang={l}>
            {m.lang[l]}
          </MenuItem>
        ))}
      </Select>
    </FormControl>
  );
}

const linkSx = {
  color: 'inherit',
  textDecoration: 'none',
  px: 1,
  py: 0.5,
  borderRadius: 1,
  borderBottom: '2px solid transparent',
  '&.active': { borderBottomColor: 'currentColor', fontWeight: 700 },
  '&:focus-visible': { outline: '2px solid #fff', outlineOffset: 2 },
} as const;

export function Layout({ children }: { children: ReactNode }) {
  const { m } = useI18n();
  const { status, signOut, user } = useAuth();
  const navigate = useNavigate();
  const signedIn = status === 'signed-in';
  // While the session is being restored nobody knows yet whether the signed-in header (two
  // or three rows at phone width) or the signed-out one (one row) is coming: the header shows
  // only the name and the page only a loading line outside the flow (the page's <main> comes
  // with the answer), so nothing on screen moves when the answer comes (no layout shift).
  const restoring = status === 'restoring';
  const doctorLinks = [
    ['/evaluate', m.nav.evaluate],
    ['/history', m.nav.history],
    ['/dashboard', m.nav.dashboard],
    ['/profile', m.nav.profile],
  ] as const;
  const adminLinks = [
    ['/admin/users', m.nav.users],
    ['/admin/models', m.nav.models],
    ['/admin/datasets', m.nav.datasets],
    ['/admin/training', m.nav.training],
    ['/admin/audit', m.nav.audit],
  ] as const;
  return (
    <>
      <Box
        component="a"
        href="#main"
        sx={{
          position: 'absolute',
          left: -9999,
          '&:focus': { left: 8, top: 8, zIndex: 2000, bgcolor: 'background.paper', p: 1 },
        }}
      >
        {m.skipToContent}
      </Box>
      <AppBar position="static" component="header">
        <Toolbar sx={{ flexWrap: 'wrap', gap: 1, py: 1 }}>
          <Typography variant="h6" component={RouterLink} to="/" sx={{ color: 'inherit', textDecoration: 'none', mr: 2 }}>
            {m.appName}
          </Typography>
          {signedIn && (
            <Box component="nav" aria-label={m.nav.menu} sx={{ display: 'flex', flexWrap: 'wrap', gap: 0.5, flexGrow: 1 }}>
              {(user?.role === 'admin' ? [...doctorLinks, ...adminLinks] : doctorLinks).map(([to, label]) => (
                <Box key={to} component={NavLink} to={to} sx={linkSx} data-testid={to === '/admin/users' ? 'nav-admin' : undefined}>
                  {label}
                </Box>
              ))}
            </Box>
          )}
          {!signedIn && <Box sx={{ flexGrow: 1 }} />}
          {!restoring && <LanguageSelect />}
          {signedIn && (
            <Button
              color="inherit"
              variant="outlined"
              onClick={() => void signOut().finally(() => navigate('/signin'))}
            >
              {m.nav.signOut}
            </Button>
          )}
        </Toolbar>
      </AppBar>
      {restoring ? (
        <Box sx={{ position: 'fixed', top: { xs: 80, sm: 96 }, left: 0, right: 0, px: 3 }}>
          <Loading />
        </Box>
      ) : (
        <Container component="main" id="main" tabIndex={-1} maxWidth="lg" sx={{ py: 3, outline: 'none' }}>
          {children}
        </Container>
      )}
    </>
  );
}
