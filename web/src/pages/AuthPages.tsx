/** Sign in, register, verify (with resend and its cooldown), forgot and reset password. */
import { Auth } from '@ocupredict/client';
import { Alert, Box, Button, Card, CardContent, FormControl, InputLabel, Link, MenuItem, Select, Stack, TextField, Typography } from '@mui/material';
import { useMutation } from '@tanstack/react-query';
import { useEffect, useId, useState } from 'react';
import type { FormEvent, ReactNode } from 'react';
import { Link as RouterLink, useLocation, useNavigate, useSearchParams } from 'react-router';

import { ApiError, isCode, unwrap } from '../api/errors';
import { useAuth } from '../auth';
import { PasswordRules, passwordOk } from '../components/PasswordRules';
import { FormError } from '../components/states';
import { useI18n } from '../i18n/i18n';
import type { Lang } from '../i18n/messages';

function AuthCard({ title, children }: { title: string; children: ReactNode }) {
  return (
    <Card variant="outlined" sx={{ maxWidth: 480, mx: 'auto' }}>
      <CardContent>
        <Typography variant="h4" component="h1" gutterBottom>
          {title}
        </Typography>
        {children}
      </CardContent>
    </Card>
  );
}

function Form({ onSubmit, children }: { onSubmit: () => void; children: ReactNode }) {
  return (
    <Box
      component="form"
      noValidate={false}
      onSubmit={(e: FormEvent) => {
        e.preventDefault();
        onSubmit();
      }}
      sx={{ display: 'grid', gap: 2 }}
    >
      {children}
    </Box>
  );
}

function LinkTo({ to, children }: { to: string; children: ReactNode }) {
  return (
    <Link component={RouterLink} to={to}>
      {children}
    </Link>
  );
}

export function SignInPage() {
  const { m } = useI18n();
  const { started } = useAuth();
  const navigate = useNavigate();
  const location = useLocation();
  const [params] = useSearchParams();
  const [email, setEmail] = useState(params.get('email') ?? '');
  const [password, setPassword] = useState('');
  const login = useMutation({
    mutationFn: () =>
      unwrap(Auth.login({ body: { username: email, password }, query: { session: 'cookie' } })),
    onSuccess: (pair) => {
      started(pair);
      const from = (location.state as { from?: string } | null)?.from;
      navigate(from && from !== '/signin' ? from : '/evaluate', { replace: true });
    },
  });
  return (
    <AuthCard title={m.signIn.title}>
      {params.get('reset') === '1' && <Alert severity="success" sx={{ mb: 2 }}>{m.signIn.resetDone}</Alert>}
      <Form onSubmit={() => login.mutate()}>
        <TextField label={m.common.email} type="email" autoComplete="email" required value={email} onChange={(e) => setEmail(e.target.value)} />
        <TextField
          label={m.common.password}
          type="password"
          autoComplete="current-password"
          required
          value={password}
          onChange={(e) => setPassword(e.target.value)}
        />
        <Button type="submit" variant="contained" size="large" disabled={login.isPending}>
          {m.signIn.submit}
        </Button>
      </Form>
      <FormError error={login.error} />
      {isCode(login.error, 'EMAIL_NOT_VERIFIED') && (
        <Box sx={{ mt: 1 }}>
          <LinkTo to={`/verify?email=${encodeURIComponent(email)}`}>{m.signIn.verifyNow}</LinkTo>
        </Box>
      )}
      <Stack spacing={1} sx={{ mt: 3 }}>
        <LinkTo to="/register">{m.signIn.noAccount}</LinkTo>
        <LinkTo to={`/forgot${email ? `?email=${encodeURIComponent(email)}` : ''}`}>{m.signIn.forgot}</LinkTo>
      </Stack>
    </AuthCard>
  );
}

export function RegisterPage() {
  const { m, lang } = useI18n();
  const navigate = useNavigate();
  const [name, setName] = useState('');
  const [email, setEmail] = useState('');
  const [password, setPassword] = useState('');
  const [confirm, setConfirm] = useState('');
  const [locale, setLocale] = useState<Lang>(lang);
  const langId = useId();
  const register = useMutation({
    mutationFn: () => unwrap(Auth.register({ body: { email, password, name, locale } })),
    onSuccess: () => navigate(`/verify?email=${encodeURIComponent(email)}&sent=1`),
  });
  const valid = passwordOk(password) && password === confirm && name.trim() !== '' && email !== '';
  return (
    <AuthCard title={m.register.title}>
      <Form onSubmit={() => valid && register.mutate()}>
        <TextField label={m.common.name} autoComplete="name" required value={name} onChange={(e) => setName(e.target.value)} slotProps={{ htmlInput: { maxLength: 100 } }} />
        <TextField label={m.common.email} type="email" autoComplete="email" required value={email} onChange={(e) => setEmail(e.target.value)} />
        <TextField
          label={m.common.password}
          type="password"
          autoComplete="new-password"
          required
          value={password}
          onChange={(e) => setPassword(e.target.value)}
          slotProps={{ htmlInput: { minLength: 10, maxLength: 128, 'aria-describedby': 'password-rules' } }}
        />
        <TextField
          label={m.register.confirm}
          type="password"
          autoComplete="new-password"
          required
          value={confirm}
          onChange={(e) => setConfirm(e.target.value)}
          slotProps={{ htmlInput: { 'aria-describedby': 'password-rules' } }}
        />
        <PasswordRules password={password} confirm={confirm} />
        <FormControl>
          <InputLabel id={langId}>{m.register.language}</InputLabel>
          <Select labelId={langId} label={m.register.language} value={locale} onChange={(e) => setLocale(e.target.value as Lang)}>
            <MenuItem value="es">{m.lang.es}</MenuItem>
            <MenuItem value="en">{m.lang.en}</MenuItem>
          </Select>
        </FormControl>
        <Button type="submit" variant="contained" size="large" disabled={register.isPending || !valid}>
          {m.register.submit}
        </Button>
      </Form>
      <FormError error={register.error} />
      <Box sx={{ mt: 3 }}>
        <LinkTo to="/signin">{m.register.haveAccount}</LinkTo>
      </Box>
    </AuthCard>
  );
}

/** Seconds left of a cooldown that ends at `until` (epoch ms). */
function useCountdown(until: number): number {
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => {
    if (until <= now) return;
    const timer = setInterval(() => setNow(Date.now()), 1000);
    return () => clearInterval(timer);
  }, [until, now]);
  return Math.max(0, Math.ceil((until - now) / 1000));
}

const RESEND_COOLDOWN_S = 60;

export function VerifyPage() {
  const { m, f } = useI18n();
  const { started } = useAuth();
  const navigate = useNavigate();
  const [params] = useSearchParams();
  const [email, setEmail] = useState(params.get('email') ?? '');
  const [code, setCode] = useState('');
  const [cooldownUntil, setCooldownUntil] = useState(() => (params.get('sent') ? Date.now() + RESEND_COOLDOWN_S * 1000 : 0));
  const left = useCountdown(cooldownUntil);
  const verify = useMutation({
    mutationFn: () => unwrap(Auth.verify({ body: { email, code }, query: { session: 'cookie' } })),
    onSuccess: (pair) => {
      started(pair);
      navigate('/evaluate', { replace: true });
    },
  });
  const resend = useMutation({
    mutationFn: () => unwrap(Auth.resendVerification({ body: { email } })),
    onSuccess: () => setCooldownUntil(Date.now() + RESEND_COOLDOWN_S * 1000),
    onError: (error) => {
      // The server's cooldown (429 Retry-After) decides when the button comes back.
      if (error instanceof ApiError && error.retryAfter) setCooldownUntil(Date.now() + error.retryAfter * 1000);
    },
  });
  return (
    <AuthCard title={m.verify.title}>
      <Typography sx={{ mb: 2 }}>{m.verify.intro}</Typography>
      <Form onSubmit={() => verify.mutate()}>
        <TextField label={m.common.email} type="email" autoComplete="email" required value={email} onChange={(e) => setEmail(e.target.value)} />
        <TextField
          label={m.common.code}
          required
          value={code}
          onChange={(e) => setCode(e.target.value)}
          autoComplete="one-time-code"
          slotProps={{ htmlInput: { inputMode: 'numeric', maxLength: 16 } }}
        />
        <Button type="submit" variant="contained" size="large" disabled={verify.isPending}>
          {m.verify.submit}
        </Button>
      </Form>
      <FormError error={verify.error} />
      <Box sx={{ mt: 3 }}>
        <Button variant="outlined" disabled={left > 0 || resend.isPending || !email} onClick={() => resend.mutate()}>
          {left > 0 ? f(m.verify.resendIn, { s: left }) : m.verify.resend}
        </Button>
        {resend.isSuccess && <Alert severity="info" sx={{ mt: 2 }}>{m.verify.resent}</Alert>}
        <FormError error={resend.error} />
      </Box>
    </AuthCard>
  );
}

export function ForgotPage() {
  const { m } = useI18n();
  const navigate = useNavigate();
  const [params] = useSearchParams();
  const [email, setEmail] = useState(params.get('email') ?? '');
  const forgot = useMutation({
    mutationFn: () => unwrap(Auth.forgotPassword({ body: { email } })),
    onSuccess: () => navigate(`/reset?email=${encodeURIComponent(email)}`),
  });
  return (
    <AuthCard title={m.forgot.title}>
      <Typography sx={{ mb: 2 }}>{m.forgot.intro}</Typography>
      <Form onSubmit={() => forgot.mutate()}>
        <TextField label={m.common.email} type="email" autoComplete="email" required value={email} onChange={(e) => setEmail(e.target.value)} />
        <Button type="submit" variant="contained" size="large" disabled={forgot.isPending}>
          {m.forgot.submit}
        </Button>
      </Form>
      <FormError error={forgot.error} />
      <Box sx={{ mt: 3 }}>
        <LinkTo to="/signin">{m.register.haveAccount}</LinkTo>
      </Box>
    </AuthCard>
  );
}

export function ResetPage() {
  const { m } = useI18n();
  const navigate = useNavigate();
  const [params] = useSearchParams();
  const [email, setEmail] = useState(params.get('email') ?? '');
  const [code, setCode] = useState('');
  const [password, setPassword] = useState('');
  const reset = useMutation({
    mutationFn: () => unwrap(Auth.resetPassword({ body: { email, code, new_password: password } })),
    onSuccess: () => navigate(`/signin?reset=1&email=${encodeURIComponent(email)}`),
  });
  return (
    <AuthCard title={m.reset.title}>
      <Form onSubmit={() => passwordOk(password) && reset.mutate()}>
        <TextField label={m.common.email} type="email" autoComplete="email" required value={email} onChange={(e) => setEmail(e.target.value)} />
        <TextField label={m.common.code} required value={code} onChange={(e) => setCode(e.target.value)} autoComplete="one-time-code" slotProps={{ htmlInput: { inputMode: 'numeric', maxLength: 16 } }} />
        <TextField
          label={m.reset.newPassword}
          type="password"
          autoComplete="new-password"
          required
          value={password}
          onChange={(e) => setPassword(e.target.value)}
          slotProps={{ htmlInput: { 'aria-describedby': 'password-rules' } }}
        />
        <PasswordRules password={password} />
        <Button type="submit" variant="contained" size="large" disabled={reset.isPending || !passwordOk(password)}>
          {m.reset.submit}
        </Button>
      </Form>
      <FormError error={reset.error} />
    </AuthCard>
  );
}
