// The studio page. It holds no rules of the bot: it posts what the member typed or pressed and
// draws what the server answers (job views, status texts, button payloads). Plain ES module:
// no build step, nothing to install.
const $ = (id) => document.getElementById(id);
const KNOWN_KEY = 'studio.jobs';
const KNOWN_MAX = 30;

const state = { csrf: '', me: undefined, stream: undefined, reconnect: undefined, init: undefined, pending: undefined };

// ---- small helpers -------------------------------------------------------------------------

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === 'class') node.className = value;
    else if (key === 'text') node.textContent = value;
    else if (key.startsWith('data-') || key.startsWith('aria-') || key === 'role') node.setAttribute(key, value);
    else node[key] = value;
  }
  for (const child of children) if (child) node.append(child);
  return node;
}

function showMessage(text) {
  const box = $('message');
  box.textContent = text;
  box.hidden = !text;
}

function showNote(text) {
  $('note').textContent = text;
}

function known() {
  try {
    const ids = JSON.parse(localStorage.getItem(KNOWN_KEY) ?? '[]');
    return Array.isArray(ids) ? ids.filter((id) => typeof id === 'string') : [];
  } catch {
    return [];
  }
}

function remember(id) {
  const ids = [id, ...known().filter((x) => x !== id)].slice(0, KNOWN_MAX);
  localStorage.setItem(KNOWN_KEY, JSON.stringify(ids));
}

function forget(id) {
  localStorage.setItem(KNOWN_KEY, JSON.stringify(known().filter((x) => x !== id)));
}

/** fetch with the CSRF token; a refusal's message is shown and undefined returned. */
async function api(path, { method = 'GET', json, body, type } = {}) {
  const headers = { 'X-CSRF-Token': state.csrf };
  if (json !== undefined) headers['Content-Type'] = 'application/json';
  if (type) headers['Content-Type'] = type;
  let res;
  try {
    res = await fetch(path, { method, headers, body: json !== undefined ? JSON.stringify(json) : body, credentials: 'same-origin' });
  } catch {
    showMessage('The studio cannot be reached right now; it may be restarting. Try again in a moment.');
    return undefined;
  }
  let data = {};
  try {
    data = await res.json();
  } catch {
    data = { error: `The studio answered ${res.status}.` };
  }
  if (res.status === 401) {
    await start();
    return undefined;
  }
  if (!res.ok) {
    showMessage(data.error ?? data.text ?? `The studio answered ${res.status}.`);
    return undefined;
  }
  showMessage('');
  return data;
}

// ---- who is who ----------------------------------------------------------------------------

async function loadMe() {
  const res = await fetch('/api/me', { credentials: 'same-origin' });
  const data = await res.json().catch(() => ({}));
  if (res.status === 401) return { signIn: data.signIn ?? { password: false, link: false } };
  if (!res.ok) throw new Error(data.error ?? `status ${res.status}`);
  return { me: data };
}

function fillChoices(select, values) {
  const keep = select.value;
  for (const option of [...select.options].slice(1)) option.remove();
  for (const value of values) select.append(el('option', { value, text: value }));
  select.value = keep;
}

async function start() {
  let answer;
  try {
    answer = await loadMe();
  } catch {
    showMessage('The studio cannot be reached right now; it may be restarting.');
    scheduleReconnect();
    return;
  }
  if (answer.signIn) {
    state.me = undefined;
    $('draw').hidden = true;
    $('signin').hidden = false;
    $('password-form').hidden = !answer.signIn.password;
    $('link-hint').hidden = !answer.signIn.link;
    $('who').textContent = '';
    $('signout').hidden = true;
    $('gallery').hidden = true;
    $('admin').hidden = true;
    state.stream?.close();
    return;
  }
  const me = answer.me;
  state.me = me;
  state.csrf = me.csrf;
  $('signin').hidden = true;
  $('draw').hidden = false;
  $('who').textContent = `Signed in as ${me.member.name}${me.mode === 'local' ? ' (this machine)' : ''}`;
  $('signout').hidden = me.mode === 'local';
  const form = $('draw');
  fillChoices(form.elements.sampler, me.samplers);
  fillChoices(form.elements.model, me.models);
  $('model-notice').hidden = !me.notice;
  $('model-notice').textContent = me.notice ? `Note: ${me.notice}.` : '';
  form.elements.steps.max = me.limits.maxSteps;
  form.elements.steps.placeholder = String(me.defaults.steps);
  form.elements.guidance.max = me.limits.maxGuidance;
  form.elements.guidance.placeholder = String(me.defaults.guidance);
  form.elements.images.max = me.limits.maxImagesPerJob;
  form.elements.images.placeholder = String(me.defaults.images);
  $('admin').hidden = !me.admin;
  $('gallery').hidden = false;
  if (me.admin) void refreshAdmin();
  connect();
}

function scheduleReconnect() {
  clearTimeout(state.reconnect);
  state.reconnect = setTimeout(start, 1000);
}

// ---- the event stream ----------------------------------------------------------------------

function connect() {
  state.stream?.close();
  const stream = new EventSource('/api/events');
  state.stream = stream;
  stream.addEventListener('open', () => {
    document.body.dataset.stream = 'open';
    $('stream').textContent = '';
    void resync();
  });
  stream.addEventListener('error', () => {
    document.body.dataset.stream = 'lost';
    $('stream').textContent = 'Reconnecting to the studio…';
    // A restarted studio may not know this session any more: sign in again (automatic on this machine).
    if (stream.readyState === EventSource.CLOSED) scheduleReconnect();
  });
  stream.addEventListener('job', (e) => {
    const event = JSON.parse(e.data);
    draw(event.job, event);
    // The queue moved: what the admin view shows is stale (progress and model stages alone do not move it).
    if (state.me?.admin && event.type !== 'progress' && event.type !== 'stage') void refreshAdmin();
  });
}

/** After (re)connecting: what happened to the jobs this page knows while it was not listening. */
async function resync() {
  for (const id of known()) {
    const res = await fetch(`/api/jobs/${encodeURIComponent(id)}`, { credentials: 'same-origin' });
    if (res.status === 404) {
      forget(id);
      $(`job-${id}`)?.remove();
      continue;
    }
    if (!res.ok) continue;
    const data = await res.json();
    draw(data.job, { type: 'fetched' });
  }
}

// ---- drawing a job ---------------------------------------------------------------------------

const FINAL = new Set(['done', 'delivered', 'failed', 'cancelled']);

function card(view) {
  let node = $(`job-${view.id}`);
  if (node) return node;
  node = el('li', { id: `job-${view.id}`, class: 'job', 'data-seen': '' });
  node.append(
    el('h3', { text: view.prompt }),
    el('p', { class: 'status' }),
    el('progress', { max: 1, value: 0, 'aria-label': 'Progress' }),
    el('img', { class: 'preview', alt: `Preview of “${view.prompt}” while it draws`, hidden: true }),
    el('div', { class: 'result' }),
    el('div', { class: 'actions' }),
  );
  $('jobs').prepend(node);
  return node;
}

function draw(view, event) {
  const node = card(view);
  const seen = node.dataset.seen ? node.dataset.seen.split(' ') : [];
  seen.push(event.type);
  node.dataset.seen = seen.slice(-200).join(' ');
  // An older event arriving after a newer state (a resync racing the stream) must not undo it.
  if (FINAL.has(node.dataset.status) && !FINAL.has(view.status)) return;
  node.dataset.status = view.status;
  node.querySelector('.status').textContent = event.statusText ?? view.statusText;
  const bar = node.querySelector('progress');
  if (event.type === 'progress') {
    bar.max = event.total;
    bar.value = event.step;
  }
  bar.hidden = FINAL.has(view.status);
  const preview = node.querySelector('.preview');
  if (event.preview) {
    preview.src = event.preview;
    preview.hidden = false;
  }
  if (FINAL.has(view.status)) preview.hidden = true;
  drawResult(node, view);
  drawButtons(node, view);
}

function drawResult(node, view) {
  const box = node.querySelector('.result');
  if (box.dataset.drawn === view.status) return;
  box.dataset.drawn = view.status;
  box.replaceChildren();
  if (view.caption) box.append(el('p', { class: 'caption', text: view.caption }));
  if (view.details.length) box.append(el('p', { class: 'details', text: view.details.join('\n') }));
  if (view.grid) {
    box.append(el('img', { class: 'grid', src: view.grid, alt: `Grid of ${view.images.length} pictures for “${view.prompt}”` }));
  }
  if (view.images.length) {
    const list = el('ul', { class: 'singles', 'aria-label': 'Single pictures' });
    view.images.forEach((image, i) => {
      list.append(
        el(
          'li',
          {},
          el('img', { src: image.url, alt: `Picture ${i + 1}, seed ${image.seed}`, width: image.width, height: image.height, loading: 'lazy' }),
          el('a', { href: image.download, download: '', text: `Download picture ${i + 1} (PNG with parameters)` }),
        ),
      );
    });
    box.append(list);
  }
}

function actionButton(b) {
  return el('button', {
    type: 'button',
    class: b.style,
    text: b.label,
    title: b.title,
    'aria-label': b.title,
    'data-payload': b.payload,
    'data-action': b.action,
  });
}

function drawButtons(node, view) {
  const box = node.querySelector('.actions');
  const key = JSON.stringify(view.buttons);
  if (box.dataset.key === key) return;
  box.dataset.key = key;
  box.replaceChildren(
    ...view.buttons.map((row) =>
      el(
        'div',
        { class: 'row', role: 'group', 'aria-label': 'Actions' },
        ...row.map((b) =>
          actionButton(b),
        ),
      ),
    ),
  );
}

// ---- what the member does ------------------------------------------------------------------

function answered(data) {
  if (!data) return;
  if (data.job) {
    remember(data.job.id);
    draw(data.job, { type: 'accepted' });
  }
  if (data.deleted) {
    forget(data.deleted);
    $(`job-${data.deleted}`)?.remove();
  }
  return data;
}

async function submitPrompt(event) {
  event.preventDefault();
  const form = $('draw');
  const options = {};
  for (const name of ['negative', 'aspect', 'steps', 'guidance', 'sampler', 'seed', 'images', 'model']) {
    const value = form.elements[name].value.trim();
    if (value !== '') options[name] = value;
  }
  const body = { prompt: form.elements.prompt.value, options };
  if (state.init) Object.assign(body, { init: state.init.id, strength: $('strength').value });
  const go = $('go');
  go.disabled = true;
  try {
    // The card shows where the job stands (and the parser's notes); the answer's own text would go stale.
    answered(await api('/api/imagine', { method: 'POST', json: body }));
  } finally {
    go.disabled = false;
  }
}

async function press(button) {
  const data = answered(await api('/api/action', { method: 'POST', json: { payload: button.dataset.payload } }));
  if (!data) return;
  if (state.me?.admin) void refreshAdmin();
  if (data.job) return;
  if (button.dataset.action !== 'info') return showNote(data.text);
  $('info-text').textContent = data.text;
  $('info').showModal();
}

// ---- the gallery -----------------------------------------------------------------------------

async function loadGallery(more, scope) {
  const more_ = $('gallery-more');
  if (!more) more_.dataset.scope = scope;
  const query = new URLSearchParams({ scope: more_.dataset.scope || 'mine' });
  if (more && more_.dataset.next) query.set('before', more_.dataset.next);
  const data = await api(`/api/gallery?${query}`);
  if (!data) return;
  const list = $('gallery-items');
  if (!more) list.replaceChildren();
  for (const view of data.items) {
    const picture = view.grid ?? view.images[0]?.url;
    const open = el(
      'button',
      { type: 'button', 'data-job': view.id, title: view.prompt },
      el('img', { src: picture, alt: '', loading: 'lazy' }),
      el('span', { text: view.prompt }),
    );
    open.setAttribute('aria-label', `Open “${view.prompt}”`);
    open.addEventListener('click', () => {
      remember(view.id);
      draw(view, { type: 'fetched' });
      const card = $(`job-${view.id}`);
      card.tabIndex = -1;
      card.scrollIntoView();
      card.focus();
    });
    list.append(el('li', {}, open));
  }
  if (!more && data.items.length === 0) list.append(el('li', { text: 'Nothing yet.' }));
  $('gallery-more').hidden = data.next === null;
  if (data.next !== null) $('gallery-more').dataset.next = String(data.next);
}

// ---- the admin view ------------------------------------------------------------------------

async function refreshAdmin() {
  const data = await api('/api/admin');
  if (!data) return;
  const speeds = Object.entries(data.secondsPerStep).map(([model, s]) => `${model} ${s} s/step`);
  $('admin-engine').textContent = [
    `Provider: ${data.provider ?? 'not loaded yet'}`,
    `busy ${Math.round(data.busyRatio * 100)} % of the time`,
    ...speeds,
  ].join(' · ');
  const entries = [];
  if (data.running) entries.push({ ...data.running, position: 0 });
  entries.push(...data.waiting);
  $('admin-queue').replaceChildren(
    ...(entries.length
      ? entries.map((entry) =>
          el(
            'li',
            { 'data-job': entry.job.id },
            el('span', {
              text: `${entry.position === 0 ? 'drawing' : `#${entry.position}`} · ${entry.job.owner} · “${entry.job.prompt}” `,
            }),
            ...entry.job.buttons.flat().map(actionButton),
          ),
        )
      : [el('li', { text: 'The queue is empty.' })]),
  );
  $('admin-models').replaceChildren(
    ...data.models.map((m) => el('li', { text: `${m.name} (${m.family})${m.loaded ? ' · loaded' : ''}` })),
  );
  $('admin-events').textContent =
    Object.entries(data.events)
      .map(([kind, n]) => `${kind} ${n}`)
      .join(' · ') || 'none yet';
  $('admin-failures').replaceChildren(
    ...(data.failures.length
      ? data.failures.map((f) => el('li', { text: `${new Date(f.at).toLocaleString()} · ${f.member} (${f.platform}) · “${f.prompt}”: ${f.reason}` }))
      : [el('li', { text: 'None since the bot started.' })]),
  );
}

/** The picture the next Draw starts from (img2img), or none. */
function setInit(picture) {
  if (state.init?.url) URL.revokeObjectURL(state.init.url);
  state.init = picture;
  $('init').hidden = !picture;
  $('init-use').hidden = true;
  if (picture) $('init-preview').src = picture.url;
}

/**
 * A dropped, pasted or chosen picture goes to the server, which keeps it (img2img starts from
 * it) and reads any parameters it carries; those fill the prompt box as an info text, as is.
 */
async function readPicture(file) {
  if (!file) return;
  const name = file.name || 'the picture';
  showNote(`Reading ${name}…`);
  const data = await api('/api/picture', { method: 'POST', body: file, type: file.type || 'application/octet-stream' });
  if (!data) return showNote('');
  const picture = { id: data.upload.id, url: URL.createObjectURL(file) };
  if (!data.found) {
    setInit(picture);
    return showNote(`${name} is the picture to start from; describe what it should become and press Draw.`);
  }
  const prompt = $('prompt');
  prompt.value = data.infoText;
  prompt.focus();
  state.pending = picture;
  $('init-use').hidden = false;
  showNote(`Parameters read from ${name}: the prompt box holds them; press Draw to make it again.`);
}

function imageFrom(items) {
  for (const item of items ?? []) if (item.kind === 'file' && item.type.startsWith('image/')) return item.getAsFile();
  return undefined;
}

function wire() {
  $('draw').addEventListener('submit', submitPrompt);
  $('prompt').addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) $('draw').requestSubmit();
  });
  for (const list of [$('jobs'), $('admin-queue')]) {
    list.addEventListener('click', (e) => {
      const button = e.target.closest('button[data-payload]');
      if (button) void press(button);
    });
  }
  $('admin-refresh').addEventListener('click', () => void refreshAdmin());
  $('signout').addEventListener('click', async () => {
    if (await api('/api/logout', { method: 'POST', json: {} })) await start();
  });
  $('gallery-load').addEventListener('click', () => void loadGallery(false, 'mine'));
  $('gallery-club').addEventListener('click', () => void loadGallery(false, 'club'));
  $('gallery-more').addEventListener('click', () => void loadGallery(true));
  $('file').addEventListener('change', (e) => {
    void readPicture(e.target.files?.[0]);
    e.target.value = '';
  });
  document.addEventListener('dragover', (e) => {
    e.preventDefault();
    document.body.classList.add('dragging');
  });
  document.addEventListener('dragleave', () => document.body.classList.remove('dragging'));
  document.addEventListener('drop', (e) => {
    e.preventDefault();
    document.body.classList.remove('dragging');
    const file = e.dataTransfer?.files?.[0];
    if (file) void readPicture(file);
  });
  document.addEventListener('paste', (e) => {
    const file = imageFrom(e.clipboardData?.items);
    if (!file) return;
    e.preventDefault();
    void readPicture(file);
  });
  $('copy').addEventListener('click', async () => {
    try {
      await navigator.clipboard.writeText($('info-text').textContent);
      showNote('Copied.');
    } catch {
      showNote('Copying is not allowed here; select the text and copy it by hand.');
    }
  });
  $('close-info').addEventListener('click', () => $('info').close());
  $('strength').addEventListener('input', (e) => {
    $('strength-value').textContent = e.target.value;
  });
  $('init-use').addEventListener('click', () => {
    setInit(state.pending);
    state.pending = undefined;
  });
  $('init-remove').addEventListener('click', () => setInit(undefined));
  $('password-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const form = e.target;
    const data = await api('/api/login', { method: 'POST', json: { name: form.elements.name.value, password: form.elements.password.value } });
    if (data) await start();
  });
}

wire();
void start();
