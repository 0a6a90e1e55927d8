// gatewire customer-service widget. Embed it on any allowed site with one
// tag:
//
//   <script src="https://chat.example.com/static/widget.js" async></script>
//
// It adds a launcher bubble that opens the chat panel (full screen on
// narrow screens), inside a shadow root so that the site's styles and the
// widget's never mix. The visitor's identity is a server-signed visitor
// token kept in localStorage and renewed on every visit. No build step;
// every string comes from the catalogs in /static/i18n/.
(function () {
  'use strict';
  if (window.gatewireWidget) return;
  const script = document.currentScript;
  if (!script || !script.src) return;
  const base = new URL(script.src).origin;

  const STORE_KEY = 'gatewire.visitor';
  const LANG_KEY = 'gatewire.lang';
  const LANGS = ['zh-CN', 'en'];
  const TYPING_EVERY = 2000; // ms between two typing indicators sent
  const MAX_IMAGE = 5 << 20;

  // ---- i18n ----------------------------------------------------------
  let lang = pickLang();
  let catalog = {};
  function pickLang() {
    const saved = safeGet(LANG_KEY);
    if (LANGS.includes(saved)) return saved;
    for (const l of navigator.languages || [navigator.language || '']) {
      if (/^zh/i.test(l)) return 'zh-CN';
      if (/^en/i.test(l)) return 'en';
    }
    return 'en';
  }
  function t(key, params) {
    let s = catalog[key];
    if (s === undefined) s = key;
    return s.replace(/\{(\w+)\}/g, (m, k) => (params && params[k] !== undefined ? String(params[k]) : m));
  }
  async function loadCatalog(l) {
    const resp = await fetch(base + '/static/i18n/' + l + '.json');
    if (!resp.ok) throw new Error('catalog ' + l + ': HTTP ' + resp.status);
    catalog = await resp.json();
    lang = l;
  }
  function safeGet(k) {
    try { return localStorage.getItem(k); } catch (e) { return null; }
  }
  function safeSet(k, v) {
    try { localStorage.setItem(k, v); } catch (e) { /* private mode */ }
  }

  // ---- DOM -------------------------------------------------------------
  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === 'class') e.className = v;
      else if (k === 'text') e.textContent = v;
      else if (v !== undefined && v !== null && v !== false) e.setAttribute(k, v === true ? '' : v);
    }
    for (const c of kids) if (c) e.append(c);
    return e;
  }

  const hostEl = el('div', { id: 'gatewire-widget' });
  const root = hostEl.attachShadow({ mode: 'open' });
  const ui = {};
  function build() {
    root.append(el('link', { rel: 'stylesheet', href: base + '/static/widget.css' }));
    ui.launcher = el('button', { type: 'button', class: 'launcher', id: 'gw-launcher' },
      svgIcon(), ui.badge = el('span', { class: 'badge', id: 'gw-badge', hidden: true }));
    ui.panel = el('section', { class: 'panel', id: 'gw-panel', role: 'dialog', hidden: true },
      el('header', { class: 'head' },
        ui.avatar = el('img', { class: 'avatar', id: 'gw-avatar', alt: '' }),
        el('div', { class: 'head-main' },
          ui.title = el('h2', { class: 'title', id: 'gw-title' }),
          el('p', { class: 'presence', id: 'gw-presence-line' },
            ui.dot = el('span', { class: 'dot', id: 'gw-presence', 'data-presence': 'offline' }),
            ui.presenceText = el('span', { id: 'gw-presence-text' }))),
        ui.lang = el('select', { class: 'lang', id: 'gw-lang' }),
        ui.close = el('button', { type: 'button', class: 'close', id: 'gw-close', text: '×' })),
      ui.notice = el('div', { class: 'notice', id: 'gw-notice', 'data-expect': '' },
        ui.expect = el('p', { id: 'gw-expect' }),
        ui.emailForm = el('form', { class: 'email', id: 'gw-email-form', hidden: true },
          ui.email = el('input', { type: 'email', id: 'gw-email', maxlength: '254', autocomplete: 'email' }),
          ui.emailSave = el('button', { type: 'submit', id: 'gw-email-save' })),
        ui.emailDone = el('p', { class: 'email-done', id: 'gw-email-done', hidden: true })),
      ui.log = el('div', { class: 'log', id: 'gw-log' },
        ui.more = el('button', { type: 'button', class: 'more', id: 'gw-more', hidden: true }),
        ui.messages = el('ol', { class: 'messages', id: 'gw-messages', 'aria-live': 'polite' })),
      ui.typing = el('p', { class: 'typing', id: 'gw-typing', hidden: true }),
      ui.error = el('p', { class: 'error', id: 'gw-error', role: 'alert', hidden: true }),
      ui.composer = el('form', { class: 'composer', id: 'gw-composer', autocomplete: 'off' },
        ui.imageBtn = el('button', { type: 'button', class: 'image-btn', id: 'gw-image' }, imageIcon()),
        ui.file = el('input', { type: 'file', id: 'gw-file', accept: 'image/png,image/jpeg,image/gif', hidden: true }),
        ui.input = el('textarea', { class: 'input', id: 'gw-input', rows: '1', maxlength: '5000', enterkeyhint: 'send' }),
        ui.send = el('button', { type: 'submit', class: 'send', id: 'gw-send' })));
    root.append(ui.launcher, ui.panel);
    for (const l of LANGS) ui.lang.append(el('option', { value: l, text: l === 'zh-CN' ? '中文' : 'English' }));
    document.body.append(hostEl);
  }
  function svgIcon() {
    const ns = 'http://www.w3.org/2000/svg';
    const s = document.createElementNS(ns, 'svg');
    s.setAttribute('viewBox', '0 0 24 24');
    s.setAttribute('aria-hidden', 'true');
    const p = document.createElementNS(ns, 'path');
    p.setAttribute('d', 'M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H9l-5 4v-4H4a2 2 0 0 1-2-2V6a2 2 0 0 1 2-2z');
    s.append(p);
    return s;
  }
  function imageIcon() {
    const ns = 'http://www.w3.org/2000/svg';
    const s = document.createElementNS(ns, 'svg');
    s.setAttribute('viewBox', '0 0 24 24');
    s.setAttribute('aria-hidden', 'true');
    const p = document.createElementNS(ns, 'path');
    p.setAttribute('fill-rule', 'evenodd');
    p.setAttribute('d', 'M3 5h18v14H3zM5 7v10h14V7zM7 15l3-4 2.5 3 2-2.5L17 15zM9 8.5a1.5 1.5 0 1 1 0 3a1.5 1.5 0 1 1 0-3z');
    s.append(p);
    return s;
  }

  // Static strings of the current language.
  function applyLang() {
    ui.launcher.setAttribute('aria-label', t('widget.open'));
    ui.launcher.title = t('widget.open');
    ui.close.setAttribute('aria-label', t('widget.close'));
    ui.close.title = t('widget.close');
    ui.lang.value = lang;
    ui.lang.setAttribute('aria-label', t('common.language'));
    ui.more.textContent = t('common.load_earlier');
    ui.input.placeholder = t('widget.placeholder');
    ui.input.setAttribute('aria-label', t('widget.placeholder'));
    ui.send.textContent = t('common.send');
    ui.imageBtn.title = t('common.send_image');
    ui.imageBtn.setAttribute('aria-label', t('common.send_image'));
    ui.email.placeholder = t('widget.email_placeholder');
    ui.emailSave.textContent = t('widget.email_save');
    ui.panel.setAttribute('aria-label', t('widget.title'));
    renderStatus();
    for (const li of ui.messages.children) renderMessage(li, li._msg);
  }

  // ---- state -------------------------------------------------------------
  let ident = null; // {uid, token}
  let wsURL = '';
  let ws = null;
  let connected = false;
  let retry = 0;
  let status = { state: 'new', agent: null, position: 0, online: 0, email: '' };
  let lastTypingSent = 0;
  let typingHeld = 0; // timer of an indicator held back by TYPING_EVERY
  let typingTimer = 0;
  let cmidSeq = 0;
  let historyLoaded = false;
  const byID = new Map(); // msg_id → li
  const pending = new Map(); // cmid → {req, li}
  let unread = 0;

  function open() { return !ui.panel.hidden; }

  // ---- identity and connection ------------------------------------------
  async function identify() {
    let saved = null;
    try { saved = JSON.parse(safeGet(STORE_KEY) || 'null'); } catch (e) { saved = null; }
    const resp = await fetch(base + '/desk/visitor', {
      method: 'POST', headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ token: saved && saved.token ? saved.token : '' }),
    });
    if (!resp.ok) throw new Error('visitor token: HTTP ' + resp.status);
    const v = await resp.json();
    ident = { uid: v.uid, token: v.token };
    safeSet(STORE_KEY, JSON.stringify(ident));
    wsURL = v.ws_url || base.replace(/^http/, 'ws') + '/';
    hostEl.dataset.uid = v.uid;
  }

  function connect() {
    const u = new URL(wsURL);
    u.searchParams.set('token', ident.token);
    ws = new WebSocket(u.toString());
    ws.onmessage = (ev) => {
      let f;
      try { f = JSON.parse(ev.data); } catch (e) { return; }
      handle(f);
    };
    ws.onclose = () => {
      connected = false;
      hostEl.dataset.state = 'reconnecting';
      const delay = Math.min(10000, 500 * 2 ** retry++) * (0.75 + Math.random() / 2);
      setTimeout(connect, delay);
    };
  }

  function sendFrame(f) {
    if (!ws || ws.readyState !== WebSocket.OPEN || !connected) return false;
    ws.send(JSON.stringify(f));
    return true;
  }

  function handle(f) {
    switch (f.type) {
      case 'bound':
        connected = true;
        retry = 0;
        hostEl.dataset.state = 'online';
        sendFrame({ type: 'desk.hello', page: location.href, referrer: document.referrer, ua: navigator.userAgent });
        // First the newest page; after a reconnect, what was missed.
        if (!historyLoaded) sendFrame({ type: 'desk.history', limit: 30 });
        else sendFrame({ type: 'desk.history', after: lastID(), limit: 100 });
        for (const p of pending.values()) if (!p.uploading) sendFrame(p.req);
        break;
      case 'desk.welcome':
        status = f.status;
        renderStatus();
        break;
      case 'desk.status':
        status = f;
        renderStatus();
        break;
      case 'desk.history':
        historyLoaded = true;
        for (const m of f.messages) addMessage(m, false);
        if (!f.after) ui.more.hidden = !f.more;
        else if (f.more) sendFrame({ type: 'desk.history', after: lastID(), limit: 100 });
        markRead();
        break;
      case 'desk.message':
        addMessage(f, true);
        markRead();
        break;
      case 'desk.typing':
        showTyping(f);
        break;
      case 'desk.receipt':
        if (f.by === 'agent') {
          for (const li of ui.messages.children) {
            if (li._msg && li._msg.role === 'visitor' && li._msg.msg_id <= f.upTo) {
              li._msg.read = true;
              renderMessage(li, li._msg);
            }
          }
        }
        break;
      case 'error':
        showError(f);
        break;
    }
  }

  function lastID() {
    let max = 0;
    for (const id of byID.keys()) max = Math.max(max, id);
    return max;
  }

  // ---- status --------------------------------------------------------------
  function renderStatus() {
    const s = status || {};
    const agent = s.state === 'open' ? s.agent : null;
    const presence = agent ? agent.presence : (s.online > 0 ? 'online' : 'offline');
    ui.title.textContent = agent ? agent.nickname : t('widget.title');
    if (agent) ui.avatar.src = new URL(agent.avatar, base).toString();
    else ui.avatar.src = base + '/avatars/desk.svg';
    ui.dot.dataset.presence = presence;
    ui.presenceText.textContent = t('presence.' + presence);
    let expect;
    if (agent && agent.presence === 'online') expect = 'now';
    else if (agent) expect = 'away';
    else if (s.online === 0) expect = 'offline';
    else if (s.state === 'queued') expect = 'queue';
    else expect = 'soon';
    ui.notice.dataset.expect = expect;
    ui.expect.textContent = t('widget.expect_' + expect, { name: agent ? agent.nickname : '', position: s.position });
    const wantEmail = expect === 'offline' || expect === 'queue';
    ui.emailForm.hidden = !wantEmail || !!s.email;
    ui.emailDone.hidden = !s.email;
    ui.emailDone.textContent = s.email ? t('widget.email_done', { email: s.email }) : '';
  }

  // ---- messages ------------------------------------------------------------
  const timeFmt = () => new Intl.DateTimeFormat(lang, { hour: '2-digit', minute: '2-digit' });

  function systemText(sys) {
    return t('system.' + sys.code, sys.params || {});
  }

  function renderMessage(li, m) {
    if (!m) return;
    li.replaceChildren();
    li.className = 'msg msg-' + m.role;
    li.dataset.role = m.role;
    li.dataset.from = m.from || '';
    if (m.msg_id) li.dataset.msgId = String(m.msg_id);
    if (m.cmid) li.dataset.cmid = m.cmid;
    if (m.role === 'system') {
      li.dataset.code = m.system.code;
      li.append(el('span', { class: 'system-text', text: systemText(m.system) }));
      return;
    }
    const state = m.state || (m.role === 'visitor' ? (m.read ? 'read' : 'sent') : 'received');
    li.dataset.state = state;
    if (m.role === 'agent') li.append(el('img', { class: 'avatar small', alt: '', src: new URL(m.avatar || '/avatars/' + m.from + '.svg', base).toString() }));
    const bubble = el('div', { class: 'bubble' });
    if (m.kind === 2 && m.image) {
      const a = el('a', { href: new URL(m.image.url, base).toString(), target: '_blank', rel: 'noopener' },
        el('img', { class: 'thumb', alt: t('common.image'), src: m.image.localThumb || new URL(m.image.thumb, base).toString() }));
      bubble.append(a);
    } else {
      bubble.textContent = m.text || '';
    }
    const meta = el('span', { class: 'meta' });
    if (m.ts) meta.append(el('time', { class: 'time', text: timeFmt().format(new Date(m.ts)) }));
    if (m.role === 'visitor') meta.append(el('span', { class: 'state', text: t('state.' + state) }));
    li.append(el('div', { class: 'body' }, m.role === 'agent' ? el('span', { class: 'name', text: m.name || m.from }) : null, bubble, meta));
  }

  function insertSorted(li, id) {
    let before = null;
    for (const other of ui.messages.children) {
      const oid = Number(other.dataset.msgId || Infinity);
      if (oid > id) { before = other; break; }
    }
    ui.messages.insertBefore(li, before);
  }

  function addMessage(m, live) {
    if (byID.has(m.msg_id)) {
      const li = byID.get(m.msg_id);
      li._msg = Object.assign(li._msg, m, { state: undefined });
      renderMessage(li, li._msg);
      return;
    }
    let li = null;
    if (m.cmid && pending.has(m.cmid)) {
      li = pending.get(m.cmid).li;
      pending.delete(m.cmid);
      li.remove();
    }
    li = li || el('li');
    li._msg = Object.assign({}, m, { state: undefined });
    renderMessage(li, li._msg);
    byID.set(m.msg_id, li);
    insertSorted(li, m.msg_id);
    if (live && m.role !== 'visitor' && (!open() || document.hidden)) {
      unread++;
      renderBadge();
    }
    if (m.role !== 'visitor') ui.typing.hidden = true;
    scrollDown();
  }

  function scrollDown() {
    ui.log.scrollTop = ui.log.scrollHeight;
  }

  function renderBadge() {
    ui.badge.hidden = unread === 0;
    ui.badge.textContent = unread > 99 ? '99+' : String(unread);
  }

  function markRead() {
    if (!open() || document.hidden) return;
    let upTo = 0;
    for (const [id, li] of byID) {
      if (li._msg.role !== 'visitor' && !li._msg.readSent) {
        upTo = Math.max(upTo, id);
        li._msg.readSent = true;
      }
    }
    if (upTo > 0) sendFrame({ type: 'desk.read', upTo });
    unread = 0;
    renderBadge();
  }

  function newCMID() {
    return 'w' + Date.now().toString(36) + '-' + (++cmidSeq) + '-' + Math.random().toString(36).slice(2, 6);
  }

  // typed sends a typing indicator, at most one per TYPING_EVERY: one
  // that comes too soon is held back and sent when the time is up, if the
  // visitor is still typing, so a short burst is never lost.
  function typed() {
    if (!ui.input.value || typingHeld) return;
    const wait = lastTypingSent + TYPING_EVERY - Date.now();
    if (wait > 0) {
      typingHeld = setTimeout(() => { typingHeld = 0; typed(); }, wait);
      return;
    }
    lastTypingSent = Date.now();
    sendFrame({ type: 'desk.typing' });
  }

  function sendText() {
    const text = ui.input.value;
    if (!text.trim()) return;
    const cmid = newCMID();
    const req = { type: 'desk.say', data: text, cmid };
    const li = el('li');
    li._msg = { role: 'visitor', from: ident ? ident.uid : '', kind: 1, text, cmid, state: 'sending', ts: Date.now() };
    renderMessage(li, li._msg);
    ui.messages.append(li);
    pending.set(cmid, { req, li });
    ui.input.value = '';
    autosize();
    scrollDown();
    sendFrame(req);
  }

  async function sendImage(file) {
    if (!file) return;
    if (file.size > MAX_IMAGE) {
      showError({ code: 'image_too_large' });
      return;
    }
    const cmid = newCMID();
    const li = el('li');
    const local = URL.createObjectURL(file);
    li._msg = { role: 'visitor', from: ident.uid, kind: 2, image: { url: local, thumb: local, localThumb: local }, cmid, state: 'sending', ts: Date.now() };
    renderMessage(li, li._msg);
    ui.messages.append(li);
    const p = { req: null, li, uploading: true };
    pending.set(cmid, p);
    scrollDown();
    try {
      const resp = await fetch(base + '/desk/images', { method: 'POST', headers: { Authorization: 'Bearer ' + ident.token }, body: file });
      const body = await resp.json().catch(() => ({}));
      if (!resp.ok) throw Object.assign(new Error('upload'), { code: body.error || 'upload_failed' });
      p.req = { type: 'desk.say', image: body.id, cmid };
      p.uploading = false;
      sendFrame(p.req);
    } catch (e) {
      pending.delete(cmid);
      li._msg.state = 'failed';
      renderMessage(li, li._msg);
      showError({ code: e.code || 'upload_failed' });
    }
  }

  function showTyping(f) {
    ui.typing.textContent = t('common.typing', { name: f.name || t('widget.agent') });
    ui.typing.hidden = false;
    clearTimeout(typingTimer);
    typingTimer = setTimeout(() => { ui.typing.hidden = true; }, f.expires_ms || 5000);
  }

  function showError(f) {
    ui.error.textContent = t('error.' + f.code);
    ui.error.dataset.code = f.code;
    ui.error.hidden = false;
    setTimeout(() => { ui.error.hidden = true; }, 6000);
  }

  function autosize() {
    ui.input.style.height = 'auto';
    ui.input.style.height = Math.min(ui.input.scrollHeight, 120) + 'px';
  }

  // ---- events --------------------------------------------------------------
  function wire() {
    ui.launcher.addEventListener('click', () => {
      ui.panel.hidden = false;
      hostEl.dataset.open = 'true';
      ui.launcher.classList.add('is-open');
      scrollDown();
      markRead();
      ui.input.focus();
    });
    ui.close.addEventListener('click', () => {
      ui.panel.hidden = true;
      hostEl.dataset.open = 'false';
      ui.launcher.classList.remove('is-open');
    });
    ui.lang.addEventListener('change', async () => {
      try {
        await loadCatalog(ui.lang.value);
        safeSet(LANG_KEY, lang);
        applyLang();
      } catch (e) { /* keep the current language */ }
    });
    ui.composer.addEventListener('submit', (e) => { e.preventDefault(); sendText(); });
    ui.input.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
        e.preventDefault();
        sendText();
      }
    });
    ui.input.addEventListener('input', () => {
      autosize();
      typed();
    });
    ui.imageBtn.addEventListener('click', () => ui.file.click());
    ui.file.addEventListener('change', () => {
      const f = ui.file.files && ui.file.files[0];
      ui.file.value = '';
      sendImage(f);
    });
    ui.more.addEventListener('click', () => {
      let first = Infinity;
      for (const id of byID.keys()) first = Math.min(first, id);
      if (first !== Infinity) sendFrame({ type: 'desk.history', before: first, limit: 30 });
    });
    ui.emailForm.addEventListener('submit', (e) => {
      e.preventDefault();
      if (ui.email.value.trim()) sendFrame({ type: 'desk.email', email: ui.email.value.trim() });
    });
    document.addEventListener('visibilitychange', markRead);
  }

  async function start() {
    build();
    try {
      await loadCatalog(lang);
    } catch (e) {
      try { await loadCatalog('en'); } catch (e2) { /* keys show */ }
    }
    applyLang();
    wire();
    hostEl.dataset.state = 'connecting';
    for (let attempt = 0; ; attempt++) {
      try {
        await identify();
        break;
      } catch (e) {
        hostEl.dataset.state = 'unavailable';
        await new Promise((r) => setTimeout(r, Math.min(30000, 1000 * 2 ** attempt)));
      }
    }
    connect();
  }

  window.gatewireWidget = { version: 1 };
  if (document.body) start();
  else document.addEventListener('DOMContentLoaded', start);
})();
