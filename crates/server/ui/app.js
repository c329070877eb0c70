// The reco dashboard: one page, a hash router, and the server's own HTTP API. Every value that
// comes from the server is put into the page as text (never as HTML), and the key a person signs
// in with stays in this tab's session storage.

import { barChart, lineChart } from './charts.js';

const main = document.getElementById('main');
const nav = document.getElementById('nav');
const who = document.getElementById('who');

// ---------------------------------------------------------------------------------------------
// Small helpers.

// An element with attributes (`on*` are listeners) and children (strings become text).
function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else if (k === 'class') node.className = v;
    else if (v === true) node.setAttribute(k, '');
    else node.setAttribute(k, String(v));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const enc = encodeURIComponent;
const fmt = (n, digits = 3) => (n === null || n === undefined ? '–' : Number(n).toFixed(digits));
const count = (n) => (n === null || n === undefined ? '–' : Number(n).toLocaleString('en-US'));
const duration = (seconds) => (seconds === null || seconds === undefined ? '–' : seconds < 1 ? `${Math.max(1, Math.round(seconds * 1000))} ms` : `${seconds.toFixed(2)} s`);
const when = (iso) => (iso ? new Date(iso).toLocaleString() : '–');

function errorBox(error) {
  const code = error.code ? ` (${error.code})` : '';
  return h('div', { class: 'error', role: 'alert' }, `${error.message}${code}`);
}

function panel(title, ...children) {
  return h('section', { class: 'panel' }, title ? h('h2', {}, title) : null, ...children);
}

function table(headers, rows, empty = 'Nothing here.') {
  if (!rows.length) return h('p', { class: 'note' }, empty);
  return h(
    'table',
    {},
    h('thead', {}, h('tr', {}, headers.map(([label, cls]) => h('th', { class: cls, scope: 'col' }, label)))),
    h('tbody', {}, rows),
  );
}

// ---------------------------------------------------------------------------------------------
// Session and API.

const session = {
  get key() { return sessionStorage.getItem('reco.key'); },
  get role() { return sessionStorage.getItem('reco.role'); },
  get tenant() { return sessionStorage.getItem('reco.tenant'); },
  set tenant(name) { sessionStorage.setItem('reco.tenant', name); },
  signIn(key, role) {
    sessionStorage.setItem('reco.key', key);
    sessionStorage.setItem('reco.role', role);
  },
  signOut() {
    sessionStorage.removeItem('reco.key');
    sessionStorage.removeItem('reco.role');
    sessionStorage.removeItem('reco.tenant');
  },
};

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function api(method, path, body, key = session.key) {
  const headers = { Accept: 'application/json' };
  if (key) headers.Authorization = `Bearer ${key}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = text;
  }
  if (!response.ok) {
    const error = data && data.error ? data.error : { code: 'http', message: response.statusText };
    throw new ApiError(response.status, error.code, error.message);
  }
  return data;
}

const tenantPath = (tenant) => `/v1/tenants/${enc(tenant)}`;

// Whether the server runs open (no admin key configured): it then answers without a key.
let openMode = null;
async function detectOpenMode() {
  if (openMode !== null) return openMode;
  try {
    await api('GET', '/v1/tenants', undefined, null);
    openMode = true;
  } catch (e) {
    if (e.status !== 401) throw e;
    openMode = false;
  }
  return openMode;
}

// Admin or tenant: a tenant key is refused (403) a tenant it does not open; the admin key finds
// that no such tenant exists (404). The name asked is one the key's own list does not hold.
async function roleOf(key) {
  let tenants;
  try {
    ({ tenants } = await api('GET', '/v1/tenants', undefined, key));
  } catch (e) {
    if (e.status === 401) throw new ApiError(401, e.code, 'That key opens nothing here.');
    throw e;
  }
  const names = new Set(tenants.map((t) => t.name));
  const other = ['x', 'y', 'z'].map((c) => c.repeat(64)).find((name) => !names.has(name));
  try {
    await api('GET', tenantPath(other), undefined, key);
    return 'admin';
  } catch (e) {
    if (e.status === 403) return 'tenant';
    if (e.status === 404) return 'admin';
    throw e;
  }
}

const isAdmin = () => openMode || session.role === 'admin';

// ---------------------------------------------------------------------------------------------
// Routing.

function parseHash() {
  const raw = location.hash.replace(/^#/, '') || '/tenants';
  const [path, query = ''] = raw.split('?');
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  return { parts, params: new URLSearchParams(query) };
}

function go(path, params) {
  const query = params ? new URLSearchParams(Object.entries(params).filter(([, v]) => v !== '' && v !== undefined && v !== null)).toString() : '';
  location.hash = `#${path}${query ? `?${query}` : ''}`;
}

const tenantLink = (tenant, page = 'entities') => `#/t/${enc(tenant)}/${page}`;
const entityLink = (tenant, id) => `#/t/${enc(tenant)}/entity/${enc(id)}`;

// Timers a page starts; stopped when another page is shown.
let pageTimers = [];

function renderNav(current, tenant) {
  const link = (href, label, page) =>
    h('a', { href, 'aria-current': page === current ? 'page' : null }, label);
  const links = [
    link('#/tenants', 'Tenants', 'tenants'),
    tenant ? h('span', { class: 'tenant-name', title: 'Current tenant' }, tenant) : null,
    tenant ? link(tenantLink(tenant, 'entities'), 'Entities', 'entities') : null,
    tenant ? link(tenantLink(tenant, 'users'), 'Users', 'users') : null,
    tenant ? link(tenantLink(tenant, 'trending'), 'Trending', 'trending') : null,
    tenant ? link(tenantLink(tenant, 'model'), 'Model', 'model') : null,
    link('#/service', 'Service', 'service'),
  ];
  nav.replaceChildren(...links.filter(Boolean));
  if (openMode) {
    who.replaceChildren(h('span', { class: 'badge', title: 'No admin key is configured' }, 'open mode'));
  } else if (session.key) {
    who.replaceChildren(
      h('span', {}, session.role === 'admin' ? 'Signed in as admin' : 'Signed in with a tenant key'),
      h('button', { class: 'ghost', type: 'button', id: 'sign-out', onclick: () => { session.signOut(); go('/signin'); } }, 'Sign out'),
    );
  } else {
    who.replaceChildren();
  }
}

async function route() {
  pageTimers.forEach(clearInterval);
  pageTimers = [];
  sampler.listeners.clear();
  const { parts, params } = parseHash();
  try {
    await detectOpenMode();
  } catch (e) {
    main.replaceChildren(errorBox(e));
    return;
  }
  if (!openMode && !session.key && parts[0] !== 'signin') {
    go('/signin');
    return;
  }
  const [section, tenant, page, ...rest] = parts;
  if (section === 't' && tenant) session.tenant = tenant;
  const current = section === 't' ? (page || 'entities') : section;
  renderNav(current === 'entity' ? 'entities' : current, section === 't' ? tenant : session.tenant);
  const view = h('div', { class: 'view' });
  main.replaceChildren(view);
  try {
    if (section === 'signin') await signInPage(view);
    else if (section === 'service') await servicePage(view);
    else if (section === 't' && tenant) {
      if (!page || page === 'entities') await entitiesPage(view, tenant, params);
      else if (page === 'entity') await entityPage(view, tenant, rest.join('/'), params);
      else if (page === 'users') await usersPage(view, tenant, rest.join('/'));
      else if (page === 'trending') await trendingPage(view, tenant, params);
      else if (page === 'model') await modelPage(view, tenant);
      else view.append(errorBox(new Error(`No page ${page}.`)));
    } else await tenantsPage(view);
  } catch (e) {
    if (e.status === 401) {
      session.signOut();
      go('/signin');
      return;
    }
    view.append(errorBox(e));
  }
  main.focus({ preventScroll: true });
  document.title = `${document.querySelector('main h1')?.textContent || 'reco'} · reco`;
}

// ---------------------------------------------------------------------------------------------
// Pages.

async function signInPage(view) {
  if (openMode) {
    go('/tenants');
    return;
  }
  const input = h('input', { type: 'password', id: 'key', name: 'key', autocomplete: 'off', required: true, placeholder: 'reco_… or the admin key' });
  const status = h('div', { 'aria-live': 'polite' });
  const form = h(
    'form',
    {
      id: 'sign-in',
      onsubmit: async (event) => {
        event.preventDefault();
        status.replaceChildren(h('p', { class: 'muted' }, 'Checking…'));
        try {
          const key = input.value.trim();
          const role = await roleOf(key);
          session.signIn(key, role);
          go('/tenants');
        } catch (e) {
          status.replaceChildren(errorBox(e));
        }
      },
    },
    h('label', {}, 'Admin key or tenant key', input),
    h('button', { type: 'submit' }, 'Sign in'),
    status,
  );
  view.append(
    h('div', { class: 'signin panel' },
      h('h1', {}, 'Sign in'),
      h('p', { class: 'muted' }, 'The key stays in this browser tab (session storage) and goes only to this server.'),
      form),
  );
  input.focus();
}

async function tenantsPage(view) {
  const { tenants } = await api('GET', '/v1/tenants');
  view.append(h('h1', {}, 'Tenants', h('small', {}, `${tenants.length} in all`)));
  const rows = tenants.map((t) => {
    const model = t.model;
    const actions = h('td', { class: 'num' });
    if (isAdmin()) {
      const remove = h('button', { class: 'ghost', type: 'button', 'aria-label': `Delete ${t.name}` }, 'Delete');
      remove.addEventListener('click', () => {
        actions.replaceChildren(
          h('span', { class: 'muted' }, `Delete ${t.name} and all its data? `),
          h('button', {
            class: 'danger', type: 'button',
            onclick: async () => {
              try {
                await api('DELETE', tenantPath(t.name));
                if (session.tenant === t.name) sessionStorage.removeItem('reco.tenant');
                route();
              } catch (e) {
                actions.append(errorBox(e));
              }
            },
          }, 'Delete'),
          ' ',
          h('button', { class: 'ghost', type: 'button', onclick: () => route() }, 'Keep'),
        );
        actions.querySelector('button.danger').focus();
      });
      actions.append(remove);
    }
    return h('tr', { 'data-tenant': t.name },
      h('td', {}, h('a', { href: tenantLink(t.name) }, t.name)),
      h('td', { class: 'num' }, t.dimension ?? '–'),
      h('td', {}, t.metric ?? 'no content vectors'),
      h('td', { class: 'num' }, count(t.entities)),
      h('td', { class: 'num' }, count(t.interactions)),
      h('td', {}, model ? h('span', { class: `badge ${model.state}` }, `${model.state}${model.version ? ` v${model.version}` : ''}`) : h('span', { class: 'muted' }, 'none yet')),
      actions);
  });
  view.append(panel(null, table(
    [['Name'], ['Dimension', 'num'], ['Metric'], ['Entities', 'num'], ['Interactions', 'num'], ['Model'], ['', 'num']],
    rows,
    'No tenants yet.',
  )));
  if (isAdmin()) view.append(createTenantForm());
}

function createTenantForm() {
  const name = h('input', { type: 'text', name: 'name', required: true, pattern: '[a-z0-9_\\-]{1,64}', placeholder: 'shop', size: 16 });
  const vectors = h('input', { type: 'checkbox', name: 'vectors', checked: true });
  const dimension = h('input', { type: 'number', name: 'dimension', min: 1, max: 4096, value: 128 });
  const metric = h('select', { name: 'metric' }, ['cosine', 'dot', 'euclidean'].map((m) => h('option', { value: m }, m)));
  const status = h('div', { 'aria-live': 'polite' });
  vectors.addEventListener('change', () => {
    dimension.disabled = !vectors.checked;
    metric.disabled = !vectors.checked;
  });
  const form = h('form', {
    class: 'bar', id: 'create-tenant',
    onsubmit: async (event) => {
      event.preventDefault();
      const body = vectors.checked ? { dimension: Number(dimension.value), metric: metric.value } : {};
      try {
        await api('PUT', tenantPath(name.value), body);
        route();
      } catch (e) {
        status.replaceChildren(errorBox(e));
      }
    },
  },
  h('label', {}, 'Name', name),
  h('label', { class: 'check' }, vectors, 'Content vectors'),
  h('label', {}, 'Dimension', dimension),
  h('label', {}, 'Metric', metric),
  h('button', { type: 'submit' }, 'Create tenant'));
  return panel('New tenant', form, status);
}

async function entitiesPage(view, tenant, params) {
  const info = await api('GET', tenantPath(tenant));
  const after = params.get('after') || '';
  const category = params.get('category') || '';
  view.append(h('h1', {}, 'Entities', h('small', {}, `${tenant} · ${count(info.entities)} in all`)));
  const search = h('input', { type: 'text', name: 'id', placeholder: 'an entity id', 'data-search': true, size: 24 });
  const categoryInput = h('input', { type: 'text', name: 'category', value: category, placeholder: 'any', size: 16 });
  const searchStatus = h('div', { 'aria-live': 'polite' });
  view.append(h('div', { class: 'row' },
    h('form', {
      class: 'bar', id: 'find-entity', role: 'search',
      onsubmit: async (event) => {
        event.preventDefault();
        const id = search.value.trim();
        if (!id) return;
        go(`/t/${enc(tenant)}/entity/${enc(id)}`);
      },
    }, h('label', {}, 'Open by id', search), h('button', { type: 'submit' }, 'Open')),
    h('form', {
      class: 'bar', id: 'filter-category',
      onsubmit: (event) => {
        event.preventDefault();
        go(`/t/${enc(tenant)}/entities`, { category: categoryInput.value.trim() });
      },
    }, h('label', {}, 'Category', categoryInput), h('button', { type: 'submit', class: 'ghost' }, 'Filter')),
  ), searchStatus);

  // A page of 50: the list endpoint pages by id; a category filter reads on, 1,000 at a time,
  // until 50 match or it has read 20,000 entities (then the next page goes on from there).
  const wanted = 50;
  const found = [];
  let cursor = after || null;
  let next = null;
  let scanned = 0;
  for (;;) {
    const limit = category ? 1000 : wanted;
    const query = new URLSearchParams({ limit: String(limit) });
    if (cursor) query.set('after', cursor);
    const page = await api('GET', `${tenantPath(tenant)}/entities?${query}`);
    for (const entity of page.entities) {
      if (found.length === wanted) break;
      if (!category || entity.category === category) found.push(entity);
    }
    scanned += page.entities.length;
    if (found.length === wanted) {
      next = found[found.length - 1].id;
      break;
    }
    if (!page.next) break;
    cursor = page.next;
    if (scanned >= 20000) {
      next = cursor;
      break;
    }
  }
  const rows = found.map((e) => h('tr', {},
    h('td', { class: 'clip' }, h('a', { href: entityLink(tenant, e.id) }, e.id)),
    h('td', {}, e.category ?? ''),
    h('td', {}, (e.tags || []).map((t) => h('span', { class: 'tag' }, t))),
    h('td', { class: 'clip mono' }, e.attributes ? JSON.stringify(e.attributes) : '')));
  view.append(panel(null,
    table([['Id'], ['Category'], ['Tags'], ['Attributes']], rows, category ? `No entity of category ${category} here.` : 'No entities yet.'),
    h('div', { class: 'pager' },
      after ? h('a', { href: `#/t/${enc(tenant)}/entities${category ? `?category=${enc(category)}` : ''}` }, '← First page') : null,
      next ? h('a', { href: `#/t/${enc(tenant)}/entities?${new URLSearchParams({ after: next, ...(category ? { category } : {}) })}`, id: 'next-page' }, 'Next page →') : null)));
}

async function entityPage(view, tenant, id, params) {
  const [info, entity] = await Promise.all([
    api('GET', tenantPath(tenant)),
    api('GET', `${tenantPath(tenant)}/entities/${enc(id)}`),
  ]);
  view.append(h('h1', {}, entity.id, h('small', {}, `entity of ${tenant}`)));
  const vector = entity.vector || [];
  view.append(h('div', { class: 'grid two' },
    panel('About',
      h('dl', { class: 'stats' },
        h('div', {}, h('dt', {}, 'Category'), h('dd', {}, entity.category ?? '–')),
        h('div', {}, h('dt', {}, 'Tags'), h('dd', {}, (entity.tags || []).length ? (entity.tags || []).map((t) => h('span', { class: 'tag' }, t)) : '–')),
        h('div', {}, h('dt', {}, 'Vector'), h('dd', {}, vector.length ? `${vector.length} numbers` : 'none'))),
      vector.length ? h('p', { class: 'mono muted' }, `[${vector.slice(0, 8).map((v) => v.toFixed(3)).join(', ')}${vector.length > 8 ? ', …' : ''}]`) : null),
    panel('Attributes', entity.attributes ? h('pre', { class: 'json' }, JSON.stringify(entity.attributes, null, 2)) : h('p', { class: 'note' }, 'None.'))));

  const k = h('input', { type: 'number', name: 'k', min: 1, max: 1000, value: params.get('k') || 10 });
  const category = h('input', { type: 'text', name: 'category', value: params.get('category') || '', placeholder: 'any', size: 14 });
  const tags = h('input', { type: 'text', name: 'tags', value: params.get('tags') || '', placeholder: 'a, b (any of)', size: 14 });
  const exact = h('input', { type: 'checkbox', name: 'exact', checked: params.get('exact') === 'true' });
  const form = h('form', {
    class: 'bar', id: 'similar-options',
    onsubmit: (event) => {
      event.preventDefault();
      go(`/t/${enc(tenant)}/entity/${enc(id)}`, {
        k: k.value, category: category.value.trim(), tags: tags.value.replace(/\s+/g, ''), exact: exact.checked ? 'true' : '',
      });
    },
  },
  h('label', {}, 'k', k), h('label', {}, 'Category', category), h('label', {}, 'Tags', tags),
  h('label', { class: 'check' }, exact, 'Exact search'),
  h('button', { type: 'submit' }, 'Apply'));
  view.append(panel('Similar entities', form));

  const spaces = [];
  if (info.dimension) spaces.push(['content', 'Content (vectors)']);
  if (info.model && info.model.version) spaces.push(['collaborative', 'Collaborative (people who liked this also liked)']);
  const grid = h('div', { class: 'grid two' });
  view.append(grid);
  if (!spaces.length) {
    grid.append(panel(null, h('p', { class: 'note' }, 'This tenant has no content vectors and no model yet: nothing to compare with.')));
    return;
  }
  await Promise.all(spaces.map(async ([space, title]) => {
    const box = h('section', { class: `panel similar ${space}`, 'data-space': space }, h('h2', {}, title));
    grid.append(box);
    const query = new URLSearchParams({ k: k.value, space });
    if (category.value.trim()) query.set('category', category.value.trim());
    if (tags.value.trim()) query.set('tags', tags.value.replace(/\s+/g, ''));
    if (exact.checked) query.set('exact', 'true');
    try {
      const { results } = await api('GET', `${tenantPath(tenant)}/entities/${enc(id)}/similar?${query}`);
      box.append(scoredTable(tenant, results, info.metric));
    } catch (e) {
      box.append(errorBox(e));
    }
  }));
}

function scoredTable(tenant, results, metric) {
  const rows = results.map((r, i) => h('tr', {},
    h('td', { class: 'num muted' }, i + 1),
    h('td', { class: 'clip' }, h('a', { href: entityLink(tenant, r.id) }, r.id)),
    h('td', { class: 'num' }, fmt(r.score, 4))));
  const scoreName = metric === 'euclidean' ? 'Distance' : 'Score';
  return table([['#', 'num'], ['Id'], [scoreName, 'num']], rows, 'No results.');
}

async function usersPage(view, tenant, user) {
  const info = await api('GET', tenantPath(tenant));
  view.append(h('h1', {}, 'Users', h('small', {}, tenant)));
  const input = h('input', { type: 'text', name: 'user', value: user, placeholder: 'a user id', 'data-search': true, required: true, size: 24 });
  view.append(h('form', {
    class: 'bar', id: 'find-user', role: 'search',
    onsubmit: (event) => {
      event.preventDefault();
      go(`/t/${enc(tenant)}/users/${enc(input.value.trim())}`);
    },
  }, h('label', {}, 'User id', input), h('button', { type: 'submit' }, 'Show')));
  if (!user) {
    view.append(h('p', { class: 'note' }, 'Enter a user id to see their history and what each strategy recommends for them.'));
    input.focus();
    return;
  }
  const historyBox = panel('Recent history');
  historyBox.id = 'history';
  view.append(historyBox);
  try {
    const history = await api('GET', `${tenantPath(tenant)}/users/${enc(user)}?limit=10`);
    historyBox.append(
      h('p', { class: 'muted' }, `${count(history.entities)} entities; newest interaction ${when(history.newest)}. Weight is what each counts for now.`),
      table([['Entity'], ['Last'], ['Given', 'num'], ['Weight now', 'num']], history.history.map((item) => h('tr', {},
        h('td', { class: 'clip' }, h('a', { href: entityLink(tenant, item.entity) }, item.entity)),
        h('td', {}, when(item.last)),
        h('td', { class: 'num' }, fmt(item.given, 2)),
        h('td', { class: 'num' }, fmt(item.weight, 2))))));
  } catch (e) {
    if (e.status !== 404) throw e;
    historyBox.append(h('p', { class: 'note' }, 'No interactions of this user: every strategy falls back to what is trending.'));
  }
  const hasModel = Boolean(info.model && info.model.version);
  const strategies = [
    ['auto', 'Auto', null],
    ['collaborative', 'Collaborative', hasModel ? null : 'No model yet: train one on the Model page.'],
    ['content', 'Content', info.dimension ? null : 'This tenant keeps no content vectors.'],
    ['trending', 'Trending', null],
  ];
  const grid = h('div', { class: 'grid four', id: 'strategies' });
  view.append(grid);
  await Promise.all(strategies.map(async ([strategy, title, unavailable]) => {
    const box = h('section', { class: `panel strategy ${strategy}`, 'data-strategy': strategy }, h('h2', {}, title));
    grid.append(box);
    if (unavailable) {
      box.append(h('p', { class: 'note' }, unavailable));
      return;
    }
    try {
      const answer = await api('GET', `${tenantPath(tenant)}/users/${enc(user)}/recommendations?strategy=${strategy}&k=10`);
      if (strategy === 'auto') box.querySelector('h2').append(' ', h('span', { class: 'badge', id: 'auto-chose', title: 'The strategy auto chose' }, answer.strategy));
      box.append(scoredTable(tenant, answer.results, info.metric));
    } catch (e) {
      box.append(errorBox(e));
    }
  }));
}

async function trendingPage(view, tenant, params) {
  const span = params.get('window') || '24h';
  const category = params.get('category') || '';
  view.append(h('h1', {}, 'Trending', h('small', {}, tenant)));
  const windows = ['1h', '6h', '24h', '7d'];
  const windowSelect = h('select', { name: 'window' }, windows.map((w) => h('option', { value: w, selected: w === span }, w)));
  const categoryInput = h('input', { type: 'text', name: 'category', value: category, placeholder: 'any', size: 16 });
  view.append(h('form', {
    class: 'bar', id: 'trending-options',
    onsubmit: (event) => {
      event.preventDefault();
      go(`/t/${enc(tenant)}/trending`, { window: windowSelect.value, category: categoryInput.value.trim() });
    },
  }, h('label', {}, 'Window', windowSelect), h('label', {}, 'Category', categoryInput), h('button', { type: 'submit' }, 'Show')));
  windowSelect.addEventListener('change', () => windowSelect.form.requestSubmit());
  const query = new URLSearchParams({ window: span, k: '20' });
  if (category) query.set('category', category);
  const { results } = await api('GET', `${tenantPath(tenant)}/trending?${query}`);
  const top = results.length ? results[0].score : 1;
  const rows = results.map((r, i) => {
    const fill = h('span');
    fill.style.width = `${Math.max(2, (100 * r.score) / top)}%`;
    return h('tr', {},
      h('td', { class: 'num muted' }, i + 1),
      h('td', { class: 'clip' }, h('a', { href: entityLink(tenant, r.id) }, r.id)),
      h('td', {}, h('div', { class: 'meter' }, fill)),
      h('td', { class: 'num' }, fmt(r.score, 2)));
  });
  view.append(panel(`Most interacted with in the last ${span}${category ? `, ${category}` : ''}`,
    h('div', { id: 'trending' }, table([['#', 'num'], ['Id'], [''], ['Score', 'num']], rows, 'No interactions in this window.'))));
}

async function modelPage(view, tenant) {
  view.append(h('h1', {}, 'Model', h('small', {}, tenant)));
  const statusBox = panel('Collaborative model');
  statusBox.id = 'model-status';
  const evaluationBox = panel('Offline evaluation');
  evaluationBox.id = 'evaluation';
  view.append(statusBox, evaluationBox);

  const showStatus = async () => {
    const info = await api('GET', tenantPath(tenant));
    const model = info.model;
    const learning = info.collaborative || {};
    const train = h('button', {
      type: 'button', id: 'train',
      disabled: learning.enabled === false || (model && model.state === 'training'),
      onclick: async () => {
        try {
          await api('POST', `${tenantPath(tenant)}/model/train`);
        } catch (e) {
          statusBox.append(errorBox(e));
        }
        showStatus();
      },
    }, 'Train now');
    const stat = (label, value) => h('div', {}, h('dt', {}, label), h('dd', {}, value));
    statusBox.replaceChildren(h('h2', {}, 'Collaborative model ',
      model ? h('span', { class: `badge ${model.state}`, id: 'model-state' }, model.state) : h('span', { class: 'badge' }, 'none yet')));
    if (learning.enabled === false) statusBox.append(h('p', { class: 'note' }, 'Collaborative learning is off for this tenant.'));
    if (model) {
      statusBox.append(h('dl', { class: 'stats' },
        stat('Version', model.version ?? '–'), stat('Trained', when(model.trained_at)),
        stat('Interactions', count(model.interactions)), stat('Users', count(model.users)),
        stat('Items', count(model.items)), stat('Factors', count(model.factors)),
        stat('Training took', duration(model.seconds)),
        stat('Next training', model.next_training === null ? 'when asked' : model.next_training === 0 ? 'due now' : `in ${count(model.next_training)} interactions`)));
      if (model.error) statusBox.append(errorBox(new Error(model.error)));
    } else {
      statusBox.append(h('p', { class: 'note' }, 'No model yet: one trains after enough interactions, or now.'));
    }
    statusBox.append(h('div', { class: 'row' }, train, h('span', { class: 'muted' },
      `Algorithm ${learning.algorithm ?? 'auto'}, ${learning.factors ?? '–'} factors.`)));
    return model && model.state === 'training';
  };

  const showEvaluation = async () => {
    let evaluation = null;
    try {
      evaluation = await api('GET', `${tenantPath(tenant)}/model/evaluation`);
    } catch (e) {
      if (e.status !== 404) throw e;
    }
    const run = h('button', {
      type: 'button', id: 'run-evaluation',
      disabled: evaluation && evaluation.state === 'running',
      onclick: async () => {
        try {
          await api('POST', `${tenantPath(tenant)}/model/evaluation`);
          poll();
        } catch (e) {
          evaluationBox.append(errorBox(e));
        }
      },
    }, evaluation ? 'Run again' : 'Run an evaluation');
    evaluationBox.replaceChildren(h('h2', {}, 'Offline evaluation ',
      evaluation ? h('span', { class: `badge ${evaluation.state}` }, evaluation.state) : null),
    h('p', { class: 'muted' }, 'Each user\'s last like or purchase is held out; every strategy the data allows ranks 10 entities for them from the rest of the log (a model is trained on it for the purpose).'));
    if (!evaluation) {
      evaluationBox.append(h('p', { class: 'note' }, 'No evaluation has run on this server yet.'), run);
      return false;
    }
    if (evaluation.state === 'running') {
      const share = evaluation.answers ? evaluation.answered / evaluation.answers : 0;
      const fill = h('span');
      fill.style.width = `${(100 * share).toFixed(1)}%`;
      evaluationBox.append(h('div', { class: 'progress', role: 'progressbar', 'aria-valuenow': Math.round(100 * share), 'aria-valuemin': 0, 'aria-valuemax': 100 }, fill),
        h('p', { class: 'muted' }, evaluation.answers ? `${count(evaluation.answered)} of ${count(evaluation.answers)} answers` : 'Training the model…'));
      return true;
    }
    if (evaluation.state === 'failed') {
      evaluationBox.append(errorBox(new Error(evaluation.error)), run);
      return false;
    }
    const report = evaluation.report;
    evaluationBox.append(h('p', {},
      `${count(report.tested)} of ${count(report.users)} users tested, ${count(report.entities)} entities, ${count(report.training_interactions)} training interactions; split ${report.split}; finished ${when(evaluation.finished_at)}.`));
    if (!report.tested) {
      evaluationBox.append(h('p', { class: 'note' }, 'No user has a like or a purchase to hold out: nothing to score.'), run);
      return false;
    }
    const best = Math.max(...report.strategies.map((s) => s['ndcg@10']));
    evaluationBox.append(
      table([['Strategy'], ['HR@10', 'num'], ['NDCG@10', 'num'], ['Recall@20', 'num'], ['Coverage', 'num'], ['Answered by']],
        report.strategies.map((s) => h('tr', { 'data-strategy': s.strategy },
          h('td', {}, s.strategy, s['ndcg@10'] === best ? [' ', h('span', { class: 'badge ready', title: 'Best NDCG@10' }, 'best')] : null),
          h('td', { class: 'num' }, fmt(s['hr@10'])),
          h('td', { class: 'num' }, fmt(s['ndcg@10'])),
          h('td', { class: 'num' }, fmt(s['recall@20'])),
          h('td', { class: 'num' }, fmt(s.coverage)),
          h('td', { class: 'muted' }, Object.entries(s.answered_by).map(([k, v]) => `${k} ${v}`).join(', '))))),
      h('div', { class: 'chart evaluation-chart', id: 'evaluation-chart' },
        h('div', { class: 'legend' }, h('span', {}, h('i', { class: 'c1' }), 'HR@10'), h('span', {}, h('i', { class: 'c2' }), 'NDCG@10')),
        barChart({
          groups: report.strategies.map((s) => s.strategy),
          measures: [
            { name: 'HR@10', values: report.strategies.map((s) => s['hr@10']) },
            { name: 'NDCG@10', values: report.strategies.map((s) => s['ndcg@10']) },
          ],
        })),
    h('div', { class: 'row' }, run));
    return false;
  };

  let polling = null;
  const poll = () => {
    if (polling) return;
    polling = setInterval(async () => {
      try {
        const training = await showStatus();
        const evaluating = await showEvaluation();
        if (!training && !evaluating) {
          clearInterval(polling);
          polling = null;
        }
      } catch (e) {
        clearInterval(polling);
        polling = null;
        view.append(errorBox(e));
      }
    }, 1000);
    pageTimers.push(polling);
  };
  const training = await showStatus();
  const evaluating = await showEvaluation();
  if (training || evaluating) poll();
  statusBox.addEventListener('click', (event) => {
    if (event.target.id === 'train') setTimeout(poll, 300);
  });
}

// ---------------------------------------------------------------------------------------------
// Service: the server's own Prometheus metrics, sampled every two seconds while the dashboard
// is open (from the first visit of this page), as rates over each interval.

function parseMetrics(text) {
  const samples = [];
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!match) continue;
    const labels = {};
    for (const [, k, v] of (match[2] || '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[k] = v;
    samples.push({ name: match[1], labels, value: Number(match[3]) });
  }
  return samples;
}

// Requests the dashboard itself makes, and health and metrics polls, are not the service's
// traffic.
const served = (labels) => !(labels.route === '/metrics' || labels.route.startsWith('/ui') || labels.route.startsWith('/health'));

function summarize(samples) {
  const s = { requests: 0, errors5: 0, errors4: 0, buckets: new Map(), hits: 0, misses: 0, redisHits: 0, redisLookups: 0, entities: 0 };
  for (const { name, labels, value } of samples) {
    if (name === 'reco_http_requests_total' && served(labels)) {
      s.requests += value;
      if (labels.status >= '500') s.errors5 += value;
      else if (labels.status >= '400') s.errors4 += value;
    } else if (name === 'reco_http_request_duration_seconds_bucket' && served(labels)) {
      s.buckets.set(labels.le, (s.buckets.get(labels.le) || 0) + value);
    } else if (name === 'reco_cache_requests_total') {
      if (labels.level === 'memory') {
        if (labels.result === 'hit') s.hits += value;
        else s.misses += value;
      } else {
        s.redisLookups += value;
        if (labels.result === 'hit') s.redisHits += value;
      }
    } else if (name === 'reco_index_entities') {
      s.entities += value;
    }
  }
  return s;
}

// The 99th percentile from histogram buckets' increases, interpolated within its bucket.
function quantile(q, before, after) {
  const bounds = [...after.buckets.keys()].map((le) => [le, le === '+Inf' ? Infinity : Number(le)]).sort((a, b) => a[1] - b[1]);
  const deltas = bounds.map(([le, bound]) => [bound, (after.buckets.get(le) || 0) - (before.buckets.get(le) || 0)]);
  const total = deltas.length ? deltas[deltas.length - 1][1] : 0;
  if (total <= 0) return null;
  const rank = q * total;
  let lower = 0;
  let below = 0;
  for (const [bound, cumulative] of deltas) {
    if (cumulative >= rank) {
      if (bound === Infinity) return lower;
      const inBucket = cumulative - below;
      return lower + (bound - lower) * (inBucket > 0 ? (rank - below) / inBucket : 1);
    }
    lower = bound;
    below = cumulative;
  }
  return lower;
}

const sampler = {
  points: [],
  last: null,
  started: false,
  error: null,
  listeners: new Set(),
  async sample() {
    try {
      const text = await (async () => {
        const headers = session.key ? { Authorization: `Bearer ${session.key}` } : {};
        const response = await fetch('/metrics', { headers });
        if (!response.ok) throw new ApiError(response.status, 'http', response.status === 403 ? 'The metrics need the admin key when the dashboard is not on the server\'s own machine.' : response.statusText);
        return response.text();
      })();
      const now = performance.now() / 1000;
      const current = summarize(parseMetrics(text));
      if (this.last) {
        const dt = now - this.last.at;
        const before = this.last.summary;
        const memoryLookups = current.hits + current.misses - (before.hits + before.misses);
        const redisLookups = current.redisLookups - before.redisLookups;
        this.points.push({
          at: now,
          rps: (current.requests - before.requests) / dt,
          p99: (() => { const v = quantile(0.99, before, current); return v === null ? null : v * 1000; })(),
          hit: memoryLookups > 0 ? (100 * (current.hits - before.hits)) / memoryLookups : null,
          redisHit: redisLookups > 0 ? (100 * (current.redisHits - before.redisHits)) / redisLookups : null,
          errors5: (current.errors5 - before.errors5) / dt,
          errors4: (current.errors4 - before.errors4) / dt,
          entities: current.entities,
        });
        if (this.points.length > 150) this.points.shift();
      }
      this.last = { at: now, summary: current };
      this.error = null;
    } catch (e) {
      this.error = e;
    }
    this.listeners.forEach((fn) => fn());
  },
  start() {
    if (this.started) return;
    this.started = true;
    this.sample();
    setInterval(() => this.sample(), 2000);
  },
};

async function servicePage(view) {
  view.append(h('h1', {}, 'Service', h('small', {}, 'live, every 2 s, from /metrics')));
  const status = h('div', { 'aria-live': 'polite' });
  const grid = h('div', { class: 'grid charts', id: 'service-charts' });
  view.append(status, grid);
  const [ready] = await Promise.all([
    fetch('/health/ready').then((r) => r.json().then((body) => ({ ok: r.ok, body }))),
  ]);
  view.insertBefore(panel(null, h('div', { class: 'row' },
    h('span', { class: `badge ${ready.ok ? 'ready' : 'failed'}`, id: 'readiness' }, ready.ok ? 'ready' : 'not ready'),
    h('span', { class: 'muted' }, `indexes ${ready.body.indexes} · storage ${ready.body.storage} · redis ${ready.body.redis}`))), status);

  const charts = [
    { id: 'rps', title: 'Requests per second', unit: '', series: [['served', (p) => p.rps]], now: (p) => `${fmt(p.rps, 1)}` , small: 'req/s' },
    { id: 'p99', title: 'p99 latency', unit: '', series: [['p99 (ms)', (p) => p.p99]], now: (p) => (p.p99 === null ? '–' : fmt(p.p99, 2)), small: 'ms' },
    { id: 'cache', title: 'Cache hit rate', unit: '%', series: [['memory', (p) => p.hit], ['redis', (p) => p.redisHit]], now: (p) => (p.hit === null ? '–' : fmt(p.hit, 1)), small: '% (memory)' },
    { id: 'errors', title: 'Errors per second', unit: '', series: [['5xx', (p) => p.errors5], ['4xx', (p) => p.errors4]], now: (p) => fmt(p.errors5, 2), small: '5xx/s' },
  ];
  const boxes = charts.map((chart) => {
    const box = h('section', { class: 'panel chart', id: `chart-${chart.id}` });
    grid.append(box);
    return [chart, box];
  });
  const draw = () => {
    if (sampler.error) status.replaceChildren(errorBox(sampler.error));
    else status.replaceChildren();
    const points = sampler.points;
    const times = points.map((p) => p.at);
    // The last two minutes, or all there is when less: a chart fills from its first samples.
    const span = times.length ? Math.min(120, Math.max(20, times[times.length - 1] - times[0])) : 120;
    for (const [chart, box] of boxes) {
      const last = points[points.length - 1];
      box.replaceChildren(
        h('h2', {}, chart.title),
        h('div', { class: 'now' }, last ? chart.now(last) : '–', h('small', {}, chart.small)),
        h('div', { class: 'legend' }, chart.series.map(([name], i) => h('span', {}, h('i', { class: `c${i + 1}` }), name))),
        points.length >= 2
          ? lineChart({ times, series: chart.series.map(([name, pick]) => ({ name, values: points.map(pick) })), span, unit: chart.unit })
          : h('p', { class: 'note', 'data-waiting': true }, 'Collecting samples…'));
      box.dataset.points = String(points.length);
    }
  };
  sampler.listeners.add(draw);
  sampler.start();
  draw();
}

// ---------------------------------------------------------------------------------------------
// Keys: single letters move between pages, `/` goes to the page's search field.

document.addEventListener('keydown', (event) => {
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  const target = event.target;
  if (target instanceof HTMLInputElement || target instanceof HTMLSelectElement || target instanceof HTMLTextAreaElement) {
    if (event.key === 'Escape') target.blur();
    return;
  }
  const tenant = session.tenant;
  const pages = { t: '#/tenants', s: '#/service' };
  if (tenant) Object.assign(pages, { e: tenantLink(tenant, 'entities'), u: tenantLink(tenant, 'users'), r: tenantLink(tenant, 'trending'), m: tenantLink(tenant, 'model') });
  if (event.key === '/') {
    const search = document.querySelector('[data-search]');
    if (search) {
      event.preventDefault();
      search.focus();
    }
  } else if (pages[event.key]) {
    event.preventDefault();
    location.hash = pages[event.key];
  }
});

window.addEventListener('hashchange', route);
route();
