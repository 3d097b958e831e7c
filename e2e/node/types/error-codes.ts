/**
 * Type-level tests of the installed @ocupredict/client (`npm run typecheck`, tsc --strict;
 * nothing here runs). Each operation's error type lists only the codes it can return:
 * a `case` for one of its codes compiles, and a `case` for a code it never returns must
 * not (each `// @ts-expect-error` line below has to be an error, or tsc fails with
 * "Unused '@ts-expect-error' directive": the test fails if the codes widen to string).
 */
import type {
  Auth,
  HistoryReadError,
  PredictCreateError,
  PredictCreateErrors,
} from '@ocupredict/client';

// The error of a call, as a front-end gets it: `const { error } = await Auth.login(...)`.
type LoginOutcome = Extract<Awaited<ReturnType<typeof Auth.login>>, { error: unknown }>;
type LoginError = NonNullable<LoginOutcome['error']>;

export function loginMessage(error: LoginError): string {
  switch (error.code) {
    case 'INVALID_CREDENTIALS':
      return 'Wrong email or password';
    case 'EMAIL_NOT_VERIFIED':
      return 'Verify your email first';
    case 'RATE_LIMITED':
      return 'Too many tries; wait a moment';
    case 'VALIDATION_ERROR':
      return 'Fill in both fields';
    // @ts-expect-error login never answers NOT_FOUND
    case 'NOT_FOUND':
      return 'unreachable';
    // @ts-expect-error INVALID_TOKEN belongs to auth.refresh, not to login
    case 'INVALID_TOKEN':
      return 'unreachable';
    default:
      return 'unexpected';
  }
}

export function uploadMessage(error: PredictCreateError): string {
  switch (error.code) {
    case 'NOT_AUTHENTICATED':
      return 'Log in again';
    case 'FILE_TOO_LARGE':
      return 'The photograph is too large';
    case 'UNSUPPORTED_MEDIA_TYPE':
      return 'Send a JPEG or PNG';
    case 'INVALID_IMAGE':
      return 'The file is not a readable image';
    case 'VALIDATION_ERROR':
      return 'Check the form';
    case 'MODEL_UNAVAILABLE':
    case 'STORAGE_UNAVAILABLE':
      return 'Try again in a moment';
    // @ts-expect-error predict.create never answers INVALID_CODE
    case 'INVALID_CODE':
      return 'unreachable';
    default:
      return 'unexpected';
  }
}

export function detailMessage(error: HistoryReadError): string {
  switch (error.code) {
    case 'NOT_AUTHENTICATED':
      return 'Log in again';
    case 'NOT_FOUND':
      return 'No such prediction';
    case 'VALIDATION_ERROR':
      return 'Bad id';
    case 'STORAGE_UNAVAILABLE':
      return 'Try again in a moment';
    // @ts-expect-error history.read never answers EMAIL_TAKEN
    case 'EMAIL_TAKEN':
      return 'unreachable';
    default:
      return 'unexpected';
  }
}

// Per status, too: the codes of predict.create's 422.
export const invalidImage: PredictCreateErrors[422]['code'] = 'INVALID_IMAGE';
export const badForm: PredictCreateErrors[422]['code'] = 'VALIDATION_ERROR';
// @ts-expect-error FILE_TOO_LARGE is the 413, not a 422
export const tooLarge: PredictCreateErrors[422]['code'] = 'FILE_TOO_LARGE';
