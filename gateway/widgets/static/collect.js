/*
 * Script of the collect widget page. It sends the values to the gateway only
 * and gives the parent page nothing but the subject token, posted to the
 * parent origin of the signed session.
 */
(function () {
  'use strict';

  const form = document.getElementById('collect');
  if (form === null) {
    return;
  }
  const session = form.dataset.session;
  const parentOrigin = form.dataset.parentOrigin;
  const strings = JSON.parse(form.dataset.strings);
  const status = document.getElementById('status');
  const button = form.querySelector('button[type="submit"]');
  const controls = Array.from(form.querySelectorAll('[data-type]'));

  function postToParent(message) {
    if (window.parent !== window) {
      window.parent.postMessage(message, parentOrigin);
    }
  }

  function reportHeight() {
    postToParent({ type: 'domicile:resize', height: document.documentElement.scrollHeight });
  }

  function setStatus(text, isError) {
    status.textContent = text;
    status.classList.toggle('status-error', isError);
    reportHeight();
  }

  function showFieldError(name, text) {
    const error = document.getElementById('error-' + name);
    const control = form.elements.namedItem(name);
    if (error === null || control === null) {
      return false;
    }
    error.textContent = text;
    error.hidden = false;
    control.setAttribute('aria-invalid', 'true');
    return true;
  }

  function clearErrors() {
    for (const control of controls) {
      control.removeAttribute('aria-invalid');
      const error = document.getElementById('error-' + control.name);
      if (error !== null) {
        error.hidden = true;
        error.textContent = '';
      }
    }
    setStatus('', false);
  }

  /** Returns the hint for a rejected value of a field, by the field's type. */
  function invalidHint(name) {
    const control = controls.find((candidate) => candidate.name === name);
    const type = control === undefined ? undefined : control.dataset.type;
    return (type !== undefined && strings.invalidByType[type]) || strings.invalid;
  }

  /** Checks the browser's constraints (required, type, maxlength) and shows the first problem of each field. */
  function validateLocally() {
    let valid = true;
    for (const control of controls) {
      if (!control.validity.valid) {
        showFieldError(control.name, control.validity.valueMissing ? strings.required : invalidHint(control.name));
        valid = false;
      }
    }
    return valid;
  }

  function collectValues() {
    const values = {};
    for (const control of controls) {
      const type = control.dataset.type;
      if (type === 'boolean') {
        values[control.name] = control.checked;
      } else if (control.value.trim() !== '') {
        values[control.name] = type === 'number' ? Number(control.value) : control.value;
      }
    }
    return values;
  }

  /** Shows each server issue (`$.values.<field>`) next to its field; returns false if one matched no field. */
  function showServerIssues(issues) {
    let allShown = issues.length > 0;
    for (const issue of issues) {
      const match = /^\$\.values\.([A-Za-z0-9_]+)$/.exec(issue.path);
      const text = /required|missing/i.test(issue.message) ? strings.required : invalidHint(match?.[1]);
      if (match === null || !showFieldError(match[1], text)) {
        allShown = false;
      }
    }
    return allShown;
  }

  async function submit(event) {
    event.preventDefault();
    clearErrors();
    if (!validateLocally()) {
      reportHeight();
      return;
    }

    button.disabled = true;
    setStatus(strings.submitting, false);
    let response;
    try {
      response = await fetch('/widgets/v1/records', {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: 'Bearer ' + session },
        body: JSON.stringify({ values: collectValues() }),
        credentials: 'omit',
        cache: 'no-store',
      });
    } catch {
      button.disabled = false;
      setStatus(strings.failed, true);
      return;
    }

    const body = await response.json().catch(() => ({}));
    if (response.status === 201 && typeof body.subjectToken === 'string') {
      form.reset();
      setStatus(strings.saved, false);
      postToParent({ type: 'domicile:record-created', subjectToken: body.subjectToken });
      return;
    }

    button.disabled = false;
    if (response.status === 401 || response.status === 409) {
      setStatus(strings.expired, true);
      postToParent({ type: 'domicile:error', code: 'session_expired' });
    } else if (response.status === 400 && body.error && Array.isArray(body.error.issues)) {
      setStatus(showServerIssues(body.error.issues) ? '' : strings.invalid, true);
    } else {
      setStatus(strings.failed, true);
      postToParent({ type: 'domicile:error', code: 'save_failed' });
    }
  }

  form.addEventListener('submit', submit);
  new ResizeObserver(reportHeight).observe(document.body);
  reportHeight();
})();
