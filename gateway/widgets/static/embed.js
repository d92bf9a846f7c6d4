/*
 * Domicile embed script for the host page of the web app.
 *
 *   Domicile.collect({ container, session, onToken, onError, locale })
 *
 * creates the collect form as an iframe from the gateway origin. Personal data
 * is typed into the iframe only; the host page receives nothing but the
 * subject token, through postMessage from exactly the gateway origin.
 */
(function () {
  'use strict';

  // The gateway replaces this placeholder with its own origin when it serves the file.
  const GATEWAY_ORIGIN = '__DOMICILE_GATEWAY_ORIGIN__';
  const SUBJECT_TOKEN = /^sub_[a-z2-7]{26}$/;

  function resolveContainer(container) {
    const element = typeof container === 'string' ? document.querySelector(container) : container;
    if (!(element instanceof Element)) {
      throw new Error('Domicile.collect: container must be an element or a selector that matches one');
    }
    return element;
  }

  function collect(options) {
    if (options === null || typeof options !== 'object') {
      throw new Error('Domicile.collect: options are required');
    }
    if (typeof options.session !== 'string' || options.session === '') {
      throw new Error('Domicile.collect: session is required');
    }
    if (typeof options.onToken !== 'function') {
      throw new Error('Domicile.collect: onToken must be a function');
    }
    const container = resolveContainer(options.container);

    const url = new URL('/widgets/collect', GATEWAY_ORIGIN);
    url.searchParams.set('session', options.session);
    if (typeof options.locale === 'string') {
      url.searchParams.set('locale', options.locale);
    }

    const iframe = document.createElement('iframe');
    iframe.src = url.href;
    iframe.title = 'Domicile';
    iframe.referrerPolicy = 'no-referrer';
    iframe.setAttribute('sandbox', 'allow-scripts allow-forms allow-same-origin');
    iframe.style.border = '0';
    iframe.style.width = '100%';
    iframe.style.height = '420px';

    function onMessage(event) {
      // Only the iframe created here, served by the gateway, may talk to this page.
      if (event.origin !== GATEWAY_ORIGIN || event.source !== iframe.contentWindow) {
        return;
      }
      const data = event.data;
      if (data === null || typeof data !== 'object') {
        return;
      }
      if (data.type === 'domicile:record-created' && typeof data.subjectToken === 'string' && SUBJECT_TOKEN.test(data.subjectToken)) {
        options.onToken(data.subjectToken);
      } else if (data.type === 'domicile:resize' && typeof data.height === 'number' && data.height > 0 && data.height < 10000) {
        iframe.style.height = Math.ceil(data.height) + 'px';
      } else if (data.type === 'domicile:error' && typeof data.code === 'string' && typeof options.onError === 'function') {
        options.onError(data.code);
      }
    }

    window.addEventListener('message', onMessage);
    container.appendChild(iframe);

    return {
      iframe: iframe,
      destroy: function () {
        window.removeEventListener('message', onMessage);
        iframe.remove();
      },
    };
  }

  window.Domicile = Object.freeze({ collect: collect });
})();
