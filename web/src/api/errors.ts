/**
 * Errors of the API as the app shows them: the typed `code` of the body picks the
 * message (in the app's language); the server's `detail` is never shown as such.
 */
import type { Lang } from '../i18n/messages';

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    readonly detail: unknown,
    readonly retryAfter?: number,
  ) {
    super(`${status} ${code}`);
    this.name = 'ApiError';
  }
}

/** The result of a generated client call: data, or a thrown ApiError. */
export async function unwrap<T>(
  call: Promise<{ data?: T; error?: unknown; response?: Response }>,
): Promise<T> {
  let result: { data?: T; error?: unknown; response?: Response };
  try {
    result = await call;
  } catch {
    throw new ApiError(0, 'NETWORK_ERROR', undefined);
  }
  const { data, error, response } = result;
  const status = response?.status ?? 0;
  if (error !== undefined || !response || !response.ok) {
    const body = (error ?? {}) as { code?: unknown; detail?: unknown };
    const code = typeof body.code === 'string' ? body.code : status ? `HTTP_${status}` : 'NETWORK_ERROR';
    const retry = Number(response?.headers.get('Retry-After'));
    throw new ApiError(status, code, body.detail, Number.isFinite(retry) && retry > 0 ? retry : undefined);
  }
  return data as T;
}

type Message = Record<Lang, string>;

/**
 * One message per error code, in both languages. src/api/errors.test.ts fails when a
 * code of docs/openapi.json has none.
 */
export const ERROR_MESSAGES: Record<string, Message> = {
  ACCOUNT_DISABLED: {
    es: 'Un administrador ha desactivado esta cuenta.',
    en: 'An administrator has disabled this account.',
  },
  CSRF_REJECTED: {
    es: 'La sesión solo puede renovarse desde esta aplicación. Vuelva a iniciar sesión.',
    en: 'The session can only be renewed from this app. Please sign in again.',
  },
  DATABASE_UNAVAILABLE: {
    es: 'El servicio no puede acceder a sus datos en este momento. Inténtelo de nuevo.',
    en: 'The service cannot reach its data right now. Please try again.',
  },
  EMAIL_NOT_VERIFIED: {
    es: 'Primero verifique su correo con el código que le enviamos.',
    en: 'Verify your email first with the code we sent you.',
  },
  EMAIL_TAKEN: {
    es: 'Ya existe una cuenta con este correo. Inicie sesión o recupere su contraseña.',
    en: 'An account with this email already exists. Sign in or reset your password.',
  },
  FILE_TOO_LARGE: {
    es: 'El archivo es demasiado grande (máximo 15 MB).',
    en: 'The file is too large (15 MB at most).',
  },
  FORBIDDEN: { es: 'No tiene permiso para hacer esto.', en: 'You are not allowed to do this.' },
  DATASET_OVERLAP: {
    es: 'El conjunto de entrenamiento comparte imágenes o pacientes con el de prueba.',
    en: 'The training set shares images or patients with the test set.',
  },
  GATES_NOT_MET: {
    es: 'Esta versión no supera sus criterios de evaluación: no se puede activar.',
    en: 'This version does not pass its evaluation gates: it cannot be activated.',
  },
  SHADOW_INSUFFICIENT: {
    es: 'Esta versión aún no tiene suficientes casos comparados en sombra.',
    en: 'This version has not been compared on enough live cases in shadow yet.',
  },
  TRAINING_JOB_FINISHED: {
    es: 'El trabajo de entrenamiento ya terminó.',
    en: 'The training job has already finished.',
  },
  UNKNOWN_RECIPE: {
    es: 'No existe esa receta de entrenamiento.',
    en: 'There is no such training recipe.',
  },
  IDEMPOTENCY_KEY_IN_USE: {
    es: 'Este envío todavía se está procesando. Espere un momento y vuelva a intentarlo.',
    en: 'This upload is still being processed. Wait a moment and try again.',
  },
  IDEMPOTENCY_KEY_REUSED: {
    es: 'Ese reintento no corresponde al archivo enviado. Vuelva a subir la imagen.',
    en: 'That retry does not match the file sent. Upload the image again.',
  },
  INVALID_CLASS_CODE: {
    es: 'Esa clase no pertenece a esta evaluación.',
    en: 'That class is not one of this evaluation.',
  },
  INVALID_CODE: {
    es: 'El código es incorrecto, ha caducado o ya se usó.',
    en: 'The code is wrong, expired or already used.',
  },
  INVALID_CORRECT_CLASS: {
    es: 'Elija una clase distinta de la predicha.',
    en: 'Choose a class other than the predicted one.',
  },
  INVALID_CREDENTIALS: {
    es: 'Correo o contraseña incorrectos.',
    en: 'Incorrect email or password.',
  },
  INVALID_IMAGE: {
    es: 'El archivo no es una imagen legible (mínimo 64×64 píxeles).',
    en: 'The file is not a readable image (at least 64×64 pixels).',
  },
  INVALID_MODEL: { es: 'El modelo no es válido.', en: 'The model is not valid.' },
  INVALID_TOKEN: {
    es: 'Su sesión ha terminado. Inicie sesión de nuevo.',
    en: 'Your session has ended. Please sign in again.',
  },
  LAST_ADMIN: {
    es: 'No se puede desactivar al último administrador.',
    en: 'The last administrator cannot be disabled.',
  },
  PAYLOAD_TOO_LARGE: {
    es: 'La solicitud es demasiado grande.',
    en: 'The request is too large.',
  },
  MODEL_ACTIVE: {
    es: 'La versión activa del modelo no se puede retirar.',
    en: 'The active model version cannot be retired.',
  },
  MODEL_EXISTS: { es: 'Esa versión del modelo ya existe.', en: 'That model version already exists.' },
  MODEL_NOT_STAGED: {
    es: 'Solo una versión preparada puede ejecutarse en sombra.',
    en: 'Only a staged version can run in shadow.',
  },
  MODEL_RETIRED: {
    es: 'Una versión retirada no se puede activar.',
    en: 'A retired version cannot be activated.',
  },
  MODEL_UNAVAILABLE: {
    es: 'El modelo no está disponible en este momento. Inténtelo de nuevo.',
    en: 'The model is unavailable right now. Please try again.',
  },
  MODEL_VERSION_GONE: {
    es: 'El modelo que hizo esta evaluación ya no está en uso: no hay mapa de calor.',
    en: 'The model that made this evaluation is no longer in use: no heatmap.',
  },
  NOT_AUTHENTICATED: {
    es: 'Su sesión ha terminado. Inicie sesión de nuevo.',
    en: 'Your session has ended. Please sign in again.',
  },
  NOT_FOUND: { es: 'No encontrado.', en: 'Not found.' },
  RATE_LIMITED: {
    es: 'Demasiados intentos. Espere un momento e inténtelo de nuevo.',
    en: 'Too many attempts. Wait a moment and try again.',
  },
  REGISTRY_BUSY: {
    es: 'El registro de modelos cambió mientras tanto. Inténtelo de nuevo.',
    en: 'The model registry changed meanwhile. Please try again.',
  },
  SHUTTING_DOWN: {
    es: 'El servicio se está reiniciando. Inténtelo de nuevo en unos segundos.',
    en: 'The service is restarting. Try again in a few seconds.',
  },
  STORAGE_UNAVAILABLE: {
    es: 'El almacén de imágenes no está disponible. Inténtelo de nuevo.',
    en: 'The image store is unavailable. Please try again.',
  },
  UNSUPPORTED_DICOM: {
    es: 'Este archivo DICOM no es una fotografía oftálmica aceptada.',
    en: 'This DICOM file is not an accepted ophthalmic photograph.',
  },
  UNSUPPORTED_MEDIA_TYPE: {
    es: 'Solo se aceptan archivos JPEG, PNG y DICOM.',
    en: 'Only JPEG, PNG and DICOM files are accepted.',
  },
  VALIDATION_ERROR: {
    es: 'Revise los datos del formulario.',
    en: 'Please check the form.',
  },
  // Not from the API's bodies: what the browser itself can run into.
  NETWORK_ERROR: {
    es: 'No hay conexión con el servicio. Compruebe su red.',
    en: 'The service cannot be reached. Check your network.',
  },
  SERVICE_UNAVAILABLE: {
    es: 'El servicio no está disponible. Inténtelo de nuevo.',
    en: 'The service is unavailable. Please try again.',
  },
  BAD_REQUEST: { es: 'La solicitud no es válida.', en: 'The request is not valid.' },
};

const FALLBACK: Message = {
  es: 'Algo salió mal. Inténtelo de nuevo.',
  en: 'Something went wrong. Please try again.',
};

export function errorMessage(error: unknown, lang: Lang): string {
  const code = error instanceof ApiError ? error.code : 'NETWORK_ERROR';
  return (ERROR_MESSAGES[code] ?? FALLBACK)[lang];
}

export function isCode(error: unknown, code: string): boolean {
  return error instanceof ApiError && error.code === code;
}
