import type { FieldPolicy } from '../../policy/index.ts';

export const LOCALES = ['en', 'de', 'fr', 'es'] as const;
export type Locale = (typeof LOCALES)[number];

/** Interface text of the collect widget; field labels come from the data policy. */
export interface UiStrings {
  title: string;
  submit: string;
  submitting: string;
  saved: string;
  required: string;
  invalid: string;
  expired: string;
  failed: string;
  yes: string;
  chooseCountry: string;
}

export const UI_STRINGS: Record<Locale, UiStrings> = {
  en: {
    title: 'Your details',
    submit: 'Save',
    submitting: 'Saving…',
    saved: 'Saved.',
    required: 'This field is required.',
    invalid: 'Please check this value.',
    expired: 'This form has expired. Please reload the page.',
    failed: 'Saving failed. Please try again.',
    yes: 'Yes',
    chooseCountry: 'Choose a country',
  },
  de: {
    title: 'Ihre Angaben',
    submit: 'Speichern',
    submitting: 'Wird gespeichert…',
    saved: 'Gespeichert.',
    required: 'Dieses Feld ist erforderlich.',
    invalid: 'Bitte prüfen Sie diesen Wert.',
    expired: 'Dieses Formular ist abgelaufen. Bitte laden Sie die Seite neu.',
    failed: 'Speichern fehlgeschlagen. Bitte versuchen Sie es erneut.',
    yes: 'Ja',
    chooseCountry: 'Land auswählen',
  },
  fr: {
    title: 'Vos informations',
    submit: 'Enregistrer',
    submitting: 'Enregistrement…',
    saved: 'Enregistré.',
    required: 'Ce champ est obligatoire.',
    invalid: 'Veuillez vérifier cette valeur.',
    expired: 'Ce formulaire a expiré. Veuillez recharger la page.',
    failed: "L'enregistrement a échoué. Veuillez réessayer.",
    yes: 'Oui',
    chooseCountry: 'Choisissez un pays',
  },
  es: {
    title: 'Sus datos',
    submit: 'Guardar',
    submitting: 'Guardando…',
    saved: 'Guardado.',
    required: 'Este campo es obligatorio.',
    invalid: 'Revise este valor.',
    expired: 'Este formulario ha caducado. Vuelva a cargar la página.',
    failed: 'No se pudo guardar. Inténtelo de nuevo.',
    yes: 'Sí',
    chooseCountry: 'Elija un país',
  },
};

export function isLocale(value: unknown): value is Locale {
  return typeof value === 'string' && (LOCALES as readonly string[]).includes(value);
}

/**
 * Picks the locale: an explicit `?locale=` if supported (`de-AT` counts as
 * `de`), else the best match of Accept-Language, else English.
 */
export function chooseLocale(requested: unknown, acceptLanguage: (...locales: string[]) => string | false): Locale {
  if (typeof requested === 'string') {
    const base = requested.toLowerCase().split(/[-_]/, 1)[0];
    if (isLocale(base)) {
      return base;
    }
  }
  const accepted = acceptLanguage(...LOCALES);
  return isLocale(accepted) ? accepted : 'en';
}

/** Label of a field in the locale, falling back to English, then to the field name. */
export function fieldLabel(fieldName: string, field: FieldPolicy, locale: Locale): string {
  return field.label?.[locale] ?? field.label?.['en'] ?? fieldName;
}
