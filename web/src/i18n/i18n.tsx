import { createContext, useCallback, useContext, useEffect, useMemo, useState } from 'react';
import type { ReactNode } from 'react';

import { setApiLanguage } from '../api/client';
import { LANGS, MESSAGES, format } from './messages';
import type { Lang, Messages } from './messages';

const STORAGE_KEY = 'ocupredict.lang'; // the language before sign-in (not a secret)

interface I18n {
  lang: Lang;
  m: Messages;
  setLang: (lang: Lang) => void;
  f: (template: string, vars?: Record<string, string | number>) => string;
  dateTime: (iso: string) => string;
  date: (iso: string) => string;
  percent: (value: number, digits?: number) => string;
}

const I18nContext = createContext<I18n | undefined>(undefined);

function initialLang(): Lang {
  try {
    const saved = globalThis.localStorage?.getItem(STORAGE_KEY);
    if (saved && (LANGS as string[]).includes(saved)) {
      return saved as Lang;
    }
  } catch {
    // storage blocked: the default
  }
  return 'es';
}

export function I18nProvider({ children }: { children: ReactNode }) {
  const [lang, setLangState] = useState<Lang>(initialLang);
  const setLang = useCallback((next: Lang) => {
    setLangState(next);
    try {
      globalThis.localStorage?.setItem(STORAGE_KEY, next);
    } catch {
      // storage blocked: only this page remembers
    }
  }, []);
  useEffect(() => {
    document.documentElement.lang = lang;
    setApiLanguage(lang);
  }, [lang]);
  const value = useMemo<I18n>(() => {
    const locale = lang === 'es' ? 'es-PE' : 'en-US';
    const dateTimeFormat = new Intl.DateTimeFormat(locale, { dateStyle: 'medium', timeStyle: 'short' });
    const dateFormat = new Intl.DateTimeFormat(locale, { dateStyle: 'medium' });
    return {
      lang,
      m: MESSAGES[lang],
      setLang,
      f: format,
      dateTime: (iso) => dateTimeFormat.format(new Date(iso)),
      date: (iso) => dateFormat.format(new Date(`${iso}T12:00:00`)),
      percent: (value, digits = 1) =>
        new Intl.NumberFormat(locale, {
          style: 'percent',
          maximumFractionDigits: digits,
          minimumFractionDigits: digits,
        }).format(value),
    };
  }, [lang, setLang]);
  return <I18nContext.Provider value={value}>{children}</I18nContext.Provider>;
}

export function useI18n(): I18n {
  const value = useContext(I18nContext);
  if (!value) {
    throw new Error('useI18n outside I18nProvider');
  }
  return value;
}
