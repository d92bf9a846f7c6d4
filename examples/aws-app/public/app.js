// Host page script of the example app: it gets a widget session from its own
// backend, embeds the collect widget and stores the subject token it receives.
(function () {
  'use strict';

  const status = document.getElementById('status');
  const tokenText = document.getElementById('subject-token');
  const list = document.getElementById('customers');

  async function refreshCustomers() {
    const response = await fetch('/api/customers');
    const { customers } = await response.json();
    list.replaceChildren(
      ...customers.map((customer) => {
        const item = document.createElement('li');
        const code = document.createElement('code');
        code.textContent = customer.subjectToken;
        item.append(code, ' (' + customer.createdAt + ')');
        return item;
      }),
    );
  }

  async function saveCustomer(subjectToken) {
    tokenText.textContent = subjectToken;
    const response = await fetch('/api/customers', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ subjectToken: subjectToken }),
    });
    status.textContent = response.ok ? 'Customer saved by the web app.' : 'The web app could not save the customer.';
    await refreshCustomers();
  }

  async function start() {
    await refreshCustomers();
    const response = await fetch('/session', { method: 'POST' });
    if (!response.ok) {
      status.textContent = 'The web app could not get a widget session from the gateway.';
      return;
    }
    const { session } = await response.json();
    window.Domicile.collect({
      container: '#domicile-widget',
      session: session,
      onToken: saveCustomer,
      onError: function (code) {
        status.textContent = 'The widget reported: ' + code;
      },
    });
  }

  start().catch(function () {
    status.textContent = 'The page failed to start.';
  });
})();
