// gatewire agent console: conversation list (Mine / Unassigned / All, by
// last activity, with previews and unread badges), the thread with its
// history, visitor info, presence, transfer, canned replies (type /),
// typing indicators, read receipts, images, a sound and a title badge for
// new messages. Plain JS, no build step; strings from /static/i18n/.
(function () {
  'use strict';
  const config = JSON.parse((document.getElementById('gatewire-config') || {}).textContent || '{}');
  const $ = (id) => document.getElementById(id);
  const AUTH_KEY = 'gatewire.agent';
  const LANG_KEY = 'gatewire.lang';
  const SOUND_KEY = 'gatewire.agent.sound';
  const LANGS = ['zh-CN', 'en'];
  const TYPING_EVERY = 2000;

  // ---- i18n ----------------------------------------------------------------
  let lang = pickLang();
  let catalog = {};
  function pickLang() {
    const saved = localStorage.getItem(LANG_KEY);
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
    const resp = await fetch('static/i18n/' + l + '.json');
    if (!resp.ok) throw new Error('catalog ' + l);
    catalog = await resp.json();
    lang = l;
    document.documentElement.lang = l;
  }
  function applyLang() {
    for (const e of document.querySelectorAll('[data-i18n]')) e.textContent = t(e.dataset.i18n);
    for (const e of document.querySelectorAll('[data-i18n-label]')) {
      e.setAttribute('aria-label', t(e.dataset.i18nLabel));
      e.title = t(e.dataset.i18nLabel);
    }
    for (const e of document.querySelectorAll('[data-i18n-placeholder]')) e.placeholder = t(e.dataset.i18nPlaceholder);
    for (const sel of [$('lang'), $('login-lang')]) {
      sel.replaceChildren(...LANGS.map((l) => el('option', { value: l, text: l === 'zh-CN' ? '中文' : 'English' })));
      sel.value = lang;
    }
    $('sound').textContent = t(S.sound ? 'console.sound_on' : 'console.sound_off');
    renderConn();
    updateTitle();
    renderList();
    renderThreadHead();
    renderInfo();
    for (const li of $('messages').children) renderMessage(li, li._msg);
  }

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

  // ---- state -----------------------------------------------------------------
  const S = {
    auth: null, // {uid, token}
    me: null, // profile
    agents: new Map(), // uid → profile
    canned: [],
    filter: 'mine',
    convs: new Map(), // visitor → conversation frame
    selected: null,
    byID: new Map(), // msg_id → li of the selected thread
    pending: new Map(), // cmid → {req, li}
    sound: localStorage.getItem(SOUND_KEY) !== 'off',
    sounds: 0,
    conn: 'connecting',
  };
  let ws = null;
  let connected = false;
  let retry = 0;
  let cmidSeq = 0;
  let lastTyping = 0;
  let typingHeld = 0; // timer of an indicator held back by TYPING_EVERY
  let typingTimer = 0;
  let cannedActive = 0;

  // ---- login -----------------------------------------------------------------
  function savedAuth() {
    const m = /(?:^|[#&])token=([^&]+)/.exec(location.hash);
    if (m) {
      history.replaceState(null, '', location.pathname + location.search);
      const token = decodeURIComponent(m[1]);
      return { uid: tokenSubject(token), token };
    }
    try { return JSON.parse(localStorage.getItem(AUTH_KEY) || 'null'); } catch (e) { return null; }
  }
  // tokenSubject reads the "sub" of a JWT (not verified: the server does).
  function tokenSubject(token) {
    try {
      const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
      return JSON.parse(atob(part)).sub || '';
    } catch (e) { return ''; }
  }

  async function showLogin(errorKey) {
    $('console').hidden = true;
    $('login').hidden = false;
    $('login-error').hidden = !errorKey;
    if (errorKey) $('login-error').textContent = t(errorKey);
    $('login-hint').textContent = t(config.demoAgents ? 'console.login_demo' : 'console.login_app');
    const list = $('login-agents');
    list.replaceChildren();
    if (!config.demoAgents) return;
    const resp = await fetch('desk/demo-agents');
    if (!resp.ok) return;
    const { agents } = await resp.json();
    for (const a of agents) {
      const b = el('button', { type: 'button', class: 'login-agent', 'data-uid': a.uid },
        el('img', { class: 'avatar', alt: '', src: a.avatar || 'avatars/' + a.uid + '.svg' }),
        el('span', { text: a.nickname + ' (' + a.uid + ')' }));
      b.addEventListener('click', () => login(a.uid));
      list.append(el('li', {}, b));
    }
  }

  async function login(uid) {
    const resp = await fetch('demo/token?uid=' + encodeURIComponent(uid));
    if (!resp.ok) {
      showLogin('console.login_failed');
      return;
    }
    const { token } = await resp.json();
    S.auth = { uid, token };
    localStorage.setItem(AUTH_KEY, JSON.stringify(S.auth));
    startConsole();
  }

  function logout() {
    localStorage.removeItem(AUTH_KEY);
    S.auth = null;
    if (ws) { ws.onclose = null; ws.close(); }
    location.reload();
  }

  // ---- connection --------------------------------------------------------------
  function wsURL() {
    const u = new URL(config.wsUrl || ((location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/'));
    u.searchParams.set('token', S.auth.token);
    return u.toString();
  }

  function connect() {
    ws = new WebSocket(wsURL());
    ws.onmessage = (ev) => {
      let f;
      try { f = JSON.parse(ev.data); } catch (e) { return; }
      handle(f);
    };
    ws.onclose = () => {
      connected = false;
      setConn('reconnecting');
      setTimeout(connect, Math.min(10000, 500 * 2 ** retry++) * (0.75 + Math.random() / 2));
    };
  }

  function send(f) {
    if (!ws || ws.readyState !== WebSocket.OPEN || !connected) return false;
    ws.send(JSON.stringify(f));
    return true;
  }

  function setConn(state) {
    S.conn = state;
    renderConn();
  }
  function renderConn() {
    $('conn').dataset.state = S.conn;
    $('conn').textContent = t('conn.' + S.conn);
  }

  function handle(f) {
    switch (f.type) {
      case 'bound':
        connected = true;
        retry = 0;
        setConn('online');
        send({ type: 'desk.hello' });
        break;
      case 'desk.welcome':
        onWelcome(f);
        break;
      case 'desk.presence':
        onPresence(f);
        break;
      case 'desk.list':
        for (const c of f.conversations) S.convs.set(c.visitor, c);
        renderList();
        break;
      case 'desk.conversation':
        onConversation(f);
        break;
      case 'desk.assigned':
        onAssigned(f);
        break;
      case 'desk.history':
        if (f.visitor !== S.selected) break;
        for (const m of f.messages) addMessage(m);
        if (!f.after) $('more').hidden = !f.more;
        else if (f.more) send({ type: 'desk.history', visitor: S.selected, after: lastID(), limit: 100 });
        markRead();
        break;
      case 'desk.message':
        onMessage(f);
        break;
      case 'desk.typing':
        if (f.visitor === S.selected && f.role === 'visitor') {
          $('typing').textContent = t('common.typing', { name: t('console.the_visitor') });
          $('typing').hidden = false;
          clearTimeout(typingTimer);
          typingTimer = setTimeout(() => { $('typing').hidden = true; }, f.expires_ms || 5000);
        }
        break;
      case 'desk.receipt':
        onReceipt(f);
        break;
      case 'desk.canned':
        S.canned = f.replies;
        break;
      case 'desk.agents':
        for (const a of f.agents) S.agents.set(a.uid, a);
        renderTransfer();
        break;
      case 'error':
        if (f.ref === 'bind' && /^token_/.test(f.code)) {
          localStorage.removeItem(AUTH_KEY);
          if (ws) ws.onclose = null;
          showLogin('error.' + f.code);
          return;
        }
        if (f.code === 'not_agent') {
          showLogin('error.not_agent');
          return;
        }
        if (f.cmid && S.pending.has(f.cmid) && f.code !== 'store_failed' && f.code !== 'unavailable') {
          const p = S.pending.get(f.cmid);
          S.pending.delete(f.cmid);
          p.li._msg.state = 'failed';
          renderMessage(p.li, p.li._msg);
        }
        toast(t('error.' + f.code), 'error', f.code);
        break;
    }
  }

  function onWelcome(f) {
    if (f.role !== 'agent') {
      localStorage.removeItem(AUTH_KEY);
      if (ws) { ws.onclose = null; ws.close(); }
      showLogin('error.not_agent');
      return;
    }
    S.me = f.self;
    S.agents = new Map(f.agents.map((a) => [a.uid, a]));
    S.canned = f.canned || [];
    $('me-name').textContent = S.me.nickname;
    $('me-avatar').src = S.me.avatar;
    setPresenceUI(S.me.presence);
    renderTransfer();
    send({ type: 'desk.list', filter: S.filter, limit: 100 });
    if (S.filter !== 'all') send({ type: 'desk.list', filter: 'all', limit: 100 });
    if (S.selected) send({ type: 'desk.history', visitor: S.selected, after: lastID(), limit: 100 });
    for (const p of S.pending.values()) if (p.req) send(p.req);
  }

  function setPresenceUI(p) {
    $('presence').value = p;
    $('presence').dataset.presence = p;
    document.body.dataset.presence = p;
  }

  function onPresence(f) {
    const a = S.agents.get(f.uid);
    if (a) a.presence = f.status;
    if (S.me && f.uid === S.me.uid) {
      S.me.presence = f.status;
      setPresenceUI(f.status);
      if (f.reason === 'disconnected') toast(t('console.auto_offline'), 'warn');
    }
    renderTransfer();
  }

  function matches(c, filter) {
    if (filter === 'mine') return c.state === 'open' && S.me && c.agent === S.me.uid;
    if (filter === 'unassigned') return c.state === 'queued';
    return true;
  }

  function onConversation(c) {
    const old = S.convs.get(c.visitor);
    S.convs.set(c.visitor, c);
    renderList();
    if (c.visitor === S.selected) {
      renderThreadHead();
      renderInfo();
      // Messages of conversations that are not ours are not sent to us:
      // catch up from history.
      if (c.last && !S.byID.has(c.last.msg_id)) send({ type: 'desk.history', visitor: c.visitor, after: lastID(), limit: 100 });
    }
    const mine = matches(c, 'mine');
    if (mine && c.last && c.last.role === 'visitor' && (!old || !old.last || old.last.msg_id < c.last.msg_id)) notify(c.visitor);
  }

  function onAssigned(f) {
    const c = f.conversation;
    S.convs.set(c.visitor, c);
    renderList();
    const key = f.reason === 'transfer' ? 'console.transferred_to_you' : 'console.assigned_to_you';
    const by = f.by && S.agents.get(f.by) ? S.agents.get(f.by).nickname : f.by;
    toast(t(key, { visitor: visitorName(c), by }), 'info');
    notify(c.visitor, true);
    if (S.selected === c.visitor) {
      renderThreadHead();
      send({ type: 'desk.history', visitor: c.visitor, after: lastID(), limit: 100 });
    }
  }

  function onMessage(m) {
    const c = S.convs.get(m.visitor);
    if (c) {
      c.last = Object.assign({}, m, { text: m.text || '' });
      if (m.role === 'visitor' && !(m.visitor === S.selected && !document.hidden)) c.unread = (c.unread || 0) + 1;
      renderList();
    }
    if (m.visitor === S.selected) {
      addMessage(m);
      if (m.role === 'visitor') $('typing').hidden = true;
      markRead();
    }
  }

  function onReceipt(f) {
    const c = S.convs.get(f.visitor);
    if (f.by === 'agent' && c) {
      c.unread = 0;
      renderList();
    }
    if (f.visitor !== S.selected) return;
    for (const li of $('messages').children) {
      const m = li._msg;
      if (!m || m.read || m.msg_id > f.upTo) continue;
      if ((f.by === 'visitor' && m.role !== 'visitor') || (f.by === 'agent' && m.role === 'visitor')) {
        m.read = true;
        renderMessage(li, m);
      }
    }
  }

  // notify plays the sound and counts it (the title badge follows the
  // unread counts), unless the agent is looking at that conversation.
  let audio = null;
  function notify(visitor, always) {
    if (!always && visitor === S.selected && !document.hidden) return;
    S.sounds++;
    document.body.dataset.sounds = String(S.sounds);
    if (!S.sound) return;
    try {
      audio = audio || new AudioContext();
      const o = audio.createOscillator();
      const g = audio.createGain();
      o.frequency.value = 880;
      g.gain.setValueAtTime(0.12, audio.currentTime);
      g.gain.exponentialRampToValueAtTime(0.0001, audio.currentTime + 0.35);
      o.connect(g).connect(audio.destination);
      o.start();
      o.stop(audio.currentTime + 0.36);
    } catch (e) { /* no audio */ }
  }

  function updateTitle() {
    let n = 0;
    for (const c of S.convs.values()) if (matches(c, 'mine')) n += c.unread || 0;
    document.title = (n > 0 ? '(' + n + ') ' : '') + t('console.title');
    document.body.dataset.unread = String(n);
  }

  // ---- list ------------------------------------------------------------------------
  function visitorName(c) {
    if (c.info && c.info.email) return c.info.email;
    return t('console.visitor_label', { id: c.visitor.replace(/^v_/, '').slice(0, 6) });
  }
  const timeFmt = (ts) => {
    const d = new Date(ts);
    const today = new Date().toDateString() === d.toDateString();
    return new Intl.DateTimeFormat(lang, today ? { hour: '2-digit', minute: '2-digit' } : { month: 'numeric', day: 'numeric' }).format(d);
  };
  function previewOf(m) {
    if (!m) return '';
    if (m.kind === 2) return t('common.image_preview');
    if (m.kind === 3) return systemText(m.system);
    return m.text;
  }

  function renderList() {
    const list = $('conversations');
    const items = [...S.convs.values()].filter((c) => matches(c, S.filter))
      .sort((a, b) => (b.last ? b.last.msg_id : 0) - (a.last ? a.last.msg_id : 0));
    list.replaceChildren(...items.map((c) => {
      const unread = c.unread || 0;
      const li = el('li', { class: 'conv' + (c.visitor === S.selected ? ' selected' : ''), 'data-visitor': c.visitor, 'data-state': c.state, 'data-agent': c.agent || '' },
        el('div', { class: 'conv-top' },
          el('span', { class: 'conv-name', text: visitorName(c) }),
          el('time', { class: 'conv-time', text: c.last ? timeFmt(c.last.ts) : '' })),
        el('div', { class: 'conv-bottom' },
          el('span', { class: 'preview', text: previewOf(c.last) }),
          unread > 0 ? el('span', { class: 'unread', text: unread > 99 ? '99+' : String(unread) }) : null),
        el('div', { class: 'conv-tags' },
          el('span', { class: 'tag tag-' + c.state, text: t('state.conv_' + c.state) }),
          c.agent && c.agent !== (S.me && S.me.uid) ? el('span', { class: 'tag', text: agentName(c.agent) }) : null));
      li.addEventListener('click', () => select(c.visitor));
      return li;
    }));
    $('list-empty').hidden = items.length > 0;
    for (const b of document.querySelectorAll('#filters [data-filter]')) {
      const n = [...S.convs.values()].filter((c) => matches(c, b.dataset.filter)).length;
      b.setAttribute('aria-selected', String(b.dataset.filter === S.filter));
      b.dataset.count = String(n);
    }
    updateTitle();
  }

  function agentName(uid) {
    const a = S.agents.get(uid);
    return a ? a.nickname : uid;
  }

  // ---- thread --------------------------------------------------------------------
  function select(visitor) {
    if (S.selected === visitor) return;
    S.selected = visitor;
    S.byID.clear();
    $('messages').replaceChildren();
    $('more').hidden = true;
    $('typing').hidden = true;
    $('placeholder').hidden = true;
    $('thread-main').hidden = false;
    $('info').hidden = false;
    renderList();
    renderThreadHead();
    renderInfo();
    send({ type: 'desk.history', visitor, limit: 30 });
    $('input').focus();
  }

  function current() { return S.selected ? S.convs.get(S.selected) : null; }
  function mine(c) { return !!c && c.state === 'open' && S.me && c.agent === S.me.uid; }

  function renderThreadHead() {
    const c = current();
    if (!c) return;
    $('thread-title').textContent = visitorName(c);
    $('thread-state').textContent = c.state === 'open' ? t('console.served_by', { name: agentName(c.agent) }) : t('state.conv_' + c.state);
    $('thread-state').dataset.state = c.state;
    $('claim').hidden = c.state === 'open';
    $('transfer-box').hidden = !mine(c);
    $('close-conv').hidden = !mine(c);
    $('composer').hidden = !mine(c);
    $('readonly').hidden = mine(c);
    $('readonly').textContent = c.state === 'open' ? t('console.readonly_other', { name: agentName(c.agent) }) : t('console.readonly_claim');
    renderTransfer();
  }

  function renderTransfer() {
    const sel = $('transfer-to');
    const keep = sel.value;
    const others = [...S.agents.values()].filter((a) => a.presence === 'online' && (!S.me || a.uid !== S.me.uid));
    sel.replaceChildren(...others.map((a) => el('option', { value: a.uid, text: a.nickname + ' (' + a.uid + ')' })));
    if (others.some((a) => a.uid === keep)) sel.value = keep;
    $('transfer').disabled = others.length === 0;
    if (others.length === 0) sel.append(el('option', { value: '', text: t('console.nobody_online') }));
  }

  function renderInfo() {
    const c = current();
    if (!c) return;
    const i = c.info || {};
    const date = (ms) => (ms ? new Intl.DateTimeFormat(lang, { dateStyle: 'medium', timeStyle: 'short' }).format(new Date(ms)) : '—');
    $('info-visitor').textContent = c.visitor;
    $('info-email').textContent = i.email || '—';
    $('info-page').textContent = i.page || '—';
    $('info-referrer').textContent = i.referrer || '—';
    $('info-ua').textContent = i.ua || '—';
    $('info-first-seen').textContent = date(i.first_seen);
    $('info-last-seen').textContent = date(i.last_seen);
  }

  function systemText(sys) {
    return t('system.' + sys.code, sys.params || {});
  }

  function renderMessage(li, m) {
    if (!m) return;
    li.replaceChildren();
    const self = m.role === 'agent' && S.me && m.from === S.me.uid;
    li.className = 'msg msg-' + m.role + (self ? ' msg-self' : '');
    li.dataset.role = m.role;
    li.dataset.from = m.from || '';
    if (m.msg_id) li.dataset.msgId = String(m.msg_id);
    if (m.cmid) li.dataset.cmid = m.cmid;
    if (m.role === 'system') {
      li.dataset.code = m.system.code;
      li.append(el('span', { class: 'system-text', text: systemText(m.system) }));
      return;
    }
    const state = m.state || (m.role === 'agent' ? (m.read ? 'read' : 'sent') : 'received');
    li.dataset.state = state;
    const bubble = el('div', { class: 'bubble' });
    if (m.kind === 2 && m.image) {
      bubble.append(el('a', { href: m.image.url, target: '_blank', rel: 'noopener' },
        el('img', { class: 'thumb', alt: t('common.image'), src: m.image.localThumb || m.image.thumb })));
    } else {
      bubble.textContent = m.text || '';
    }
    const meta = el('span', { class: 'meta' },
      m.role === 'agent' ? el('span', { class: 'name', text: m.name || m.from }) : null,
      m.ts ? el('time', { class: 'time', text: new Intl.DateTimeFormat(lang, { hour: '2-digit', minute: '2-digit' }).format(new Date(m.ts)) }) : null,
      m.role === 'agent' ? el('span', { class: 'state', text: t('state.' + state) }) : null);
    li.append(el('div', { class: 'body' }, bubble, meta));
  }

  function lastID() {
    let max = 0;
    for (const id of S.byID.keys()) max = Math.max(max, id);
    return max;
  }

  function addMessage(m) {
    if (S.byID.has(m.msg_id)) {
      const li = S.byID.get(m.msg_id);
      li._msg = Object.assign(li._msg, m, { state: undefined });
      renderMessage(li, li._msg);
      return;
    }
    let li = null;
    if (m.cmid && S.pending.has(m.cmid)) {
      li = S.pending.get(m.cmid).li;
      S.pending.delete(m.cmid);
      li.remove();
    }
    li = li || el('li');
    li._msg = Object.assign({}, m, { state: undefined });
    renderMessage(li, li._msg);
    S.byID.set(m.msg_id, li);
    let before = null;
    for (const other of $('messages').children) {
      if (Number(other.dataset.msgId || Infinity) > m.msg_id) { before = other; break; }
    }
    $('messages').insertBefore(li, before);
    $('log').scrollTop = $('log').scrollHeight;
  }

  function markRead() {
    const c = current();
    if (!mine(c) || document.hidden) return;
    let upTo = 0;
    for (const [id, li] of S.byID) if (li._msg.role === 'visitor' && !li._msg.read && !li._msg.readSent) { upTo = Math.max(upTo, id); li._msg.readSent = true; }
    if (upTo > 0) send({ type: 'desk.read', visitor: c.visitor, upTo });
    if (c.unread) { c.unread = 0; renderList(); }
  }

  // ---- composing -----------------------------------------------------------------
  function newCMID() {
    return 'a' + Date.now().toString(36) + '-' + (++cmidSeq) + '-' + Math.random().toString(36).slice(2, 6);
  }

  // typed sends the current visitor a typing indicator (not for a canned
  // reply's /shortcut), at most one per TYPING_EVERY: one that comes too
  // soon is held back and sent when the time is up, if the agent is still
  // typing, so a short burst is never lost.
  function typed() {
    const c = current();
    const v = $('input').value;
    if (!mine(c) || !v || v.startsWith('/') || typingHeld) return;
    const wait = lastTyping + TYPING_EVERY - Date.now();
    if (wait > 0) {
      typingHeld = setTimeout(() => { typingHeld = 0; typed(); }, wait);
      return;
    }
    lastTyping = Date.now();
    send({ type: 'desk.typing', visitor: c.visitor });
  }

  function sendText() {
    const c = current();
    const text = $('input').value;
    if (!mine(c) || !text.trim()) return;
    const cmid = newCMID();
    const req = { type: 'desk.say', visitor: c.visitor, data: text, cmid };
    const li = el('li');
    li._msg = { role: 'agent', from: S.me.uid, name: S.me.nickname, kind: 1, text, cmid, state: 'sending', ts: Date.now() };
    renderMessage(li, li._msg);
    $('messages').append(li);
    S.pending.set(cmid, { req, li });
    $('input').value = '';
    hideCanned();
    $('log').scrollTop = $('log').scrollHeight;
    send(req);
  }

  async function sendImage(file) {
    const c = current();
    if (!file || !mine(c)) return;
    if (file.size > (config.maxImageBytes || 5 << 20)) {
      toast(t('error.image_too_large'), 'error', 'image_too_large');
      return;
    }
    const cmid = newCMID();
    const local = URL.createObjectURL(file);
    const li = el('li');
    li._msg = { role: 'agent', from: S.me.uid, kind: 2, image: { url: local, thumb: local, localThumb: local }, cmid, state: 'sending', ts: Date.now() };
    renderMessage(li, li._msg);
    $('messages').append(li);
    const p = { req: null, li };
    S.pending.set(cmid, p);
    try {
      const resp = await fetch('desk/images', { method: 'POST', headers: { Authorization: 'Bearer ' + S.auth.token }, body: file });
      const body = await resp.json().catch(() => ({}));
      if (!resp.ok) throw Object.assign(new Error('upload'), { code: body.error || 'upload_failed' });
      p.req = { type: 'desk.say', visitor: c.visitor, image: body.id, cmid };
      send(p.req);
    } catch (e) {
      S.pending.delete(cmid);
      li._msg.state = 'failed';
      renderMessage(li, li._msg);
      toast(t('error.' + (e.code || 'upload_failed')), 'error', e.code);
    }
  }

  // Canned replies: "/" at the start of the box lists those whose shortcut
  // starts with what follows; Enter or Tab inserts the highlighted one.
  function cannedMatches() {
    const v = $('input').value;
    const m = /^\/([\w-]*)$/.exec(v);
    if (!m) return null;
    return S.canned.filter((r) => r.shortcut.startsWith(m[1].toLowerCase()));
  }
  function renderCanned() {
    const list = cannedMatches();
    const box = $('canned');
    if (!list || list.length === 0) { hideCanned(); return; }
    cannedActive = Math.min(cannedActive, list.length - 1);
    box.replaceChildren(...list.map((r, i) => {
      const li = el('li', { role: 'option', 'data-shortcut': r.shortcut, 'aria-selected': String(i === cannedActive), class: i === cannedActive ? 'active' : '' },
        el('strong', { text: '/' + r.shortcut }), el('span', { text: r.body }));
      li.addEventListener('mousedown', (e) => { e.preventDefault(); insertCanned(r); });
      return li;
    }));
    box.hidden = false;
  }
  function hideCanned() {
    $('canned').hidden = true;
    cannedActive = 0;
  }
  function insertCanned(r) {
    $('input').value = r.body;
    hideCanned();
    $('input').focus();
  }

  function toast(text, kind, code) {
    const d = el('div', { class: 'toast toast-' + (kind || 'info'), role: 'status', text });
    if (code) d.dataset.code = code;
    $('toasts').append(d);
    setTimeout(() => d.remove(), 6000);
  }

  // ---- events --------------------------------------------------------------------
  function wire() {
    $('presence').addEventListener('change', () => send({ type: 'desk.presence', status: $('presence').value }));
    for (const b of document.querySelectorAll('#filters [data-filter]')) {
      b.addEventListener('click', () => {
        S.filter = b.dataset.filter;
        send({ type: 'desk.list', filter: S.filter, limit: 100 });
        renderList();
      });
    }
    for (const sel of [$('lang'), $('login-lang')]) {
      sel.addEventListener('change', async () => {
        try {
          await loadCatalog(sel.value);
          localStorage.setItem(LANG_KEY, lang);
          applyLang();
          if (!$('login').hidden) showLogin();
        } catch (e) { /* keep the language */ }
      });
    }
    $('sound').addEventListener('click', () => {
      S.sound = !S.sound;
      localStorage.setItem(SOUND_KEY, S.sound ? 'on' : 'off');
      $('sound').setAttribute('aria-pressed', String(S.sound));
      $('sound').textContent = t(S.sound ? 'console.sound_on' : 'console.sound_off');
    });
    $('logout').addEventListener('click', logout);
    $('claim').addEventListener('click', () => { if (S.selected) send({ type: 'desk.claim', visitor: S.selected }); });
    $('transfer').addEventListener('click', () => {
      const to = $('transfer-to').value;
      if (S.selected && to) send({ type: 'desk.transfer', visitor: S.selected, to });
    });
    $('close-conv').addEventListener('click', () => { if (S.selected) send({ type: 'desk.close', visitor: S.selected }); });
    $('more').addEventListener('click', () => {
      let first = Infinity;
      for (const id of S.byID.keys()) first = Math.min(first, id);
      if (S.selected && first !== Infinity) send({ type: 'desk.history', visitor: S.selected, before: first, limit: 30 });
    });
    $('composer').addEventListener('submit', (e) => { e.preventDefault(); sendText(); });
    $('input').addEventListener('keydown', (e) => {
      const list = $('canned').hidden ? null : cannedMatches();
      if (list && list.length) {
        if (e.key === 'ArrowDown' || e.key === 'ArrowUp') {
          e.preventDefault();
          cannedActive = (cannedActive + (e.key === 'ArrowDown' ? 1 : list.length - 1)) % list.length;
          renderCanned();
          return;
        }
        if (e.key === 'Enter' || e.key === 'Tab') {
          e.preventDefault();
          insertCanned(list[cannedActive]);
          return;
        }
        if (e.key === 'Escape') { hideCanned(); return; }
      }
      if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
        e.preventDefault();
        sendText();
      }
    });
    $('input').addEventListener('input', () => {
      renderCanned();
      typed();
    });
    $('image').addEventListener('click', () => $('file').click());
    $('file').addEventListener('change', () => {
      const f = $('file').files && $('file').files[0];
      $('file').value = '';
      sendImage(f);
    });
    document.addEventListener('visibilitychange', markRead);
    // Browsers allow sound only after a gesture.
    document.addEventListener('pointerdown', () => { try { audio = audio || new AudioContext(); } catch (e) { /* none */ } }, { once: true });
  }

  function startConsole() {
    $('login').hidden = true;
    $('console').hidden = false;
    setConn('connecting');
    connect();
  }

  async function start() {
    try { await loadCatalog(lang); } catch (e) { try { await loadCatalog('en'); } catch (e2) { /* keys show */ } }
    wire();
    applyLang();
    S.auth = savedAuth();
    if (S.auth && S.auth.token) {
      localStorage.setItem(AUTH_KEY, JSON.stringify(S.auth));
      startConsole();
    } else {
      showLogin();
    }
  }
  start();
})();
