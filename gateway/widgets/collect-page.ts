import type { FieldPolicy, FieldType, RecordTypePolicy } from '../../policy/index.ts';
import { COUNTRY_CODES } from '../../tokenizer/countries.ts';
import { fieldLabel, UI_STRINGS, type Locale } from './i18n.ts';

/** Escapes text for HTML content and double-quoted attribute values. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (char) => `&#${char.charCodeAt(0)};`);
}

const INPUT_TYPES: Record<Exclude<FieldType, 'country' | 'boolean'>, { type: string; autocomplete?: string; inputmode?: string }> = {
  string: { type: 'text' },
  email: { type: 'email', autocomplete: 'email' },
  phone: { type: 'tel', autocomplete: 'tel' },
  date: { type: 'date' },
  postalCode: { type: 'text', autocomplete: 'postal-code' },
  nationalId: { type: 'text', autocomplete: 'off' },
  number: { type: 'number', inputmode: 'decimal' },
};

function attributes(pairs: Record<string, string | number | boolean | undefined>): string {
  return Object.entries(pairs)
    .filter(([, value]) => value !== undefined && value !== false)
    .map(([name, value]) => (value === true ? ` ${name}` : ` ${name}="${escapeHtml(String(value))}"`))
    .join('');
}

function countrySelect(id: string, name: string, field: FieldPolicy, locale: Locale, common: Record<string, string | boolean>): string {
  const names = new Intl.DisplayNames([locale], { type: 'region' });
  const options = [...COUNTRY_CODES]
    .map((code) => ({ code, label: names.of(code) ?? code }))
    .sort((a, b) => a.label.localeCompare(b.label, locale))
    .map(({ code, label }) => `<option value="${code}">${escapeHtml(label)}</option>`)
    .join('');
  const placeholder = `<option value="">${escapeHtml(UI_STRINGS[locale].chooseCountry)}</option>`;
  return `<select${attributes({ id, name, autocomplete: 'country', required: field.required, ...common })}>${placeholder}${options}</select>`;
}

function fieldControl(name: string, field: FieldPolicy, locale: Locale): string {
  const id = `field-${name}`;
  const common = { 'data-type': field.type, 'aria-describedby': `error-${name}` };
  if (field.type === 'country') {
    return countrySelect(id, name, field, locale, common);
  }
  if (field.type === 'boolean') {
    return `<input${attributes({ id, name, type: 'checkbox', value: 'true', ...common })}>`;
  }
  const input = INPUT_TYPES[field.type];
  return `<input${attributes({
    id,
    name,
    type: input.type,
    autocomplete: input.autocomplete,
    inputmode: input.inputmode,
    step: field.type === 'number' ? 'any' : undefined,
    maxlength: field.type === 'number' || field.type === 'date' ? undefined : field.maxLength,
    required: field.required,
    ...common,
  })}>`;
}

function fieldBlock(name: string, field: FieldPolicy, locale: Locale): string {
  const label = escapeHtml(fieldLabel(name, field, locale));
  const marker = field.required ? ' <span class="required" aria-hidden="true">*</span>' : '';
  return [
    `<div class="field field-${field.type}" data-field="${escapeHtml(name)}">`,
    `<label for="field-${escapeHtml(name)}">${label}${marker}</label>`,
    fieldControl(name, field, locale),
    `<p class="error" id="error-${escapeHtml(name)}" role="alert" hidden></p>`,
    '</div>',
  ].join('\n');
}

function page(locale: Locale, title: string, body: string): string {
  return [
    '<!doctype html>',
    `<html lang="${locale}">`,
    '<head>',
    '<meta charset="utf-8">',
    '<meta name="viewport" content="width=device-width, initial-scale=1">',
    '<meta name="referrer" content="no-referrer">',
    `<title>${escapeHtml(title)}</title>`,
    '<link rel="stylesheet" href="/widgets/static/collect.css">',
    '</head>',
    '<body>',
    body,
    '</body>',
    '</html>',
  ].join('\n');
}

/**
 * Renders the collect form for one record type. Everything the script needs
 * (session, parent origin, interface text) travels in data attributes, since
 * the page's CSP forbids inline script.
 */
export function renderCollectPage(options: {
  recordType: RecordTypePolicy;
  locale: Locale;
  session: string;
  parentOrigin: string;
}): string {
  const strings = UI_STRINGS[options.locale];
  const fields = Object.entries(options.recordType.fields).map(([name, field]) => fieldBlock(name, field, options.locale));
  const form = [
    // Without the script, a submit posts form data to the JSON-only endpoint,
    // which rejects it with 415; the values never end up in a URL.
    `<form id="collect" method="post" action="/widgets/v1/records" novalidate${attributes({
      'data-session': options.session,
      'data-parent-origin': options.parentOrigin,
      'data-strings': JSON.stringify(strings),
    })}>`,
    ...fields,
    `<button type="submit">${escapeHtml(strings.submit)}</button>`,
    '<p class="status" id="status" role="status"></p>',
    '</form>',
    '<script src="/widgets/static/collect.js"></script>',
  ].join('\n');
  return page(options.locale, strings.title, form);
}

/** Page shown instead of the form when the session is invalid or expired; it has no script. */
export function renderExpiredPage(locale: Locale): string {
  const strings = UI_STRINGS[locale];
  return page(locale, strings.title, `<p class="status status-error">${escapeHtml(strings.expired)}</p>`);
}
