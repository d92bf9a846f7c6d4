import type { FieldPolicy, FieldType } from '../../policy/index.ts';

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
  /** Hints for a value the gateway rejected, by field type; `invalid` covers the other types. */
  invalidByType: Partial<Record<FieldType, string>>;
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
    invalidByType: {
      email: "Enter an email address such as name@example.com.",
      phone: "Enter a phone number; add the country code, such as +49, for a number from another country.",
      date: "Enter a valid date.",
      postalCode: "Enter a valid postal code.",
      country: "Choose a country from the list.",
      nationalId: "Enter the number as it appears on the document.",
      number: "Enter a number.",
    },
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
    invalidByType: {
      email: "Geben Sie eine E-Mail-Adresse wie name@example.com ein.",
      phone: "Geben Sie eine Telefonnummer ein; für eine Nummer aus einem anderen Land mit Ländervorwahl, etwa +49.",
      date: "Geben Sie ein gültiges Datum ein.",
      postalCode: "Geben Sie eine gültige Postleitzahl ein.",
      country: "Wählen Sie ein Land aus der Liste.",
      nationalId: "Geben Sie die Nummer so ein, wie sie auf dem Dokument steht.",
      number: "Geben Sie eine Zahl ein.",
    },
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
    invalidByType: {
      email: "Saisissez une adresse e-mail comme nom@example.com.",
      phone: "Saisissez un numéro de téléphone ; pour un numéro d'un autre pays, ajoutez l'indicatif, par exemple +33.",
      date: "Saisissez une date valide.",
      postalCode: "Saisissez un code postal valide.",
      country: "Choisissez un pays dans la liste.",
      nationalId: "Saisissez le numéro tel qu’il figure sur le document.",
      number: "Saisissez un nombre.",
    },
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
    invalidByType: {
      email: "Introduzca un correo electrónico como nombre@example.com.",
      phone: "Introduzca un número de teléfono; para un número de otro país, añada el prefijo, por ejemplo +34.",
      date: "Introduzca una fecha válida.",
      postalCode: "Introduzca un código postal válido.",
      country: "Elija un país de la lista.",
      nationalId: "Introduzca el número tal como aparece en el documento.",
      number: "Introduzca un número.",
    },
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
