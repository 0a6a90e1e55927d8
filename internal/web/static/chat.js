// chat.js: the gatewire one-to-one chat page (the seed's chat page, done
// properly). It speaks the chat protocol over one WebSocket to a gateway:
// init → bind → bound → profile + history; say/save with client message ids
// (cmid) so that a resend never duplicates; history pages (before) and
// catch-up after a reconnect (after); read receipts.
//
// Message text is only ever put in the page with textContent (never
// innerHTML), from the frames' "raw" field. The page's Content-Security-Policy
// forbids inline scripts, styles and event handlers, so everything is wired
// here with addEventListener.
//
// For tests, every bubble carries data-msg-id, data-cmid, data-from and
// data-state (sending|sent|read|failed for one's own messages, received for
// the peer's); #status carries data-state (connecting|online|reconnecting|
// error); #title is the header.
(function () {
  'use strict';

  var RETRY_MIN_MS = 1000; // first reconnect delay
  var RETRY_MAX_MS = 10000; // reconnect delay cap
  var CONNECT_TIMEOUT_MS = 10000; // a connection not bound by then is dropped
  var RESEND_AFTER_MS = 10000; // an unacknowledged say is sent again (same cmid)
  var FIRST_PAGE = 10; // the seed's "last 10 messages"
  var OLDER_PAGE = 20;
  var CATCH_UP_PAGE = 50; // the server's maximum
  var MAX_TEXT_BYTES = 16384; // the store's limit
  var MAX_UID_LENGTH = 64;

  var LABELS = {
    connecting: '连接中…',
    online: '在线',
    reconnecting: '重连中…',
    error: '无法连接',
    sending: '发送中…',
    sent: '已发送',
    delivered: '已送达',
    read: '已读',
    failed: '发送失败',
    retry: '重试',
    more: '查看更早的消息',
    loading: '加载中…',
    service: '在线客服'
  };

  function $(id) { return document.getElementById(id); }

  var params = new URLSearchParams(location.search);
  var selfId = (params.get('from') || '').trim();
  var peerId = (params.get('to') || '').trim();

  if (!validUID(selfId) || !validUID(peerId) || selfId === peerId) {
    showSetup();
    return;
  }

  var els = {
    app: $('app'),
    title: $('title'),
    status: $('status'),
    statusText: $('status-text'),
    peerAvatar: $('peer-avatar'),
    selfAvatar: $('self-avatar'),
    log: $('log'),
    more: $('more'),
    empty: $('empty'),
    messages: $('messages'),
    jump: $('jump'),
    notice: $('notice'),
    composer: $('composer'),
    input: $('input')
  };

  var config = readConfig();

  var state = {
    ws: null,
    bound: false,
    everBound: false,
    bindRefused: false,
    retryDelay: RETRY_MIN_MS,
    retryTimer: 0,
    watchdog: 0,
    byId: new Map(), // msg_id → entry
    byCmid: new Map(), // cmid → entry (own messages sent from this page)
    newestId: 0,
    oldestId: 0,
    newestPeerId: 0,
    initialLoaded: false,
    hasMore: false,
    histQueue: [],
    histBusy: null,
    peerReadUpTo: 0, // the peer has read my messages up to this id
    readSent: 0, // I asked to mark the peer's messages read up to this id
    readAcked: 0, // ... and the server confirmed up to this id
    avatars: {}, // uid → avatar URL from the profile
    unseen: 0,
    baseTitle: document.title,
    noticeTimer: 0
  };

  var outboxKey = 'gatewire:outbox:' + selfId + ':' + peerId;

  els.app.hidden = false;
  setAvatar(els.peerAvatar, peerId);
  setAvatar(els.selfAvatar, selfId);
  wireUI();
  restoreOutbox();
  updateEmpty();
  connect();
  setInterval(resendStale, RESEND_AFTER_MS / 2);

  // ---- setup form ------------------------------------------------------

  function validUID(uid) {
    return uid.length > 0 && uid.length <= MAX_UID_LENGTH && !/[\s\u0000-\u001f\u007f]/.test(uid);
  }

  function showSetup() {
    var setup = $('setup');
    setup.hidden = false;
    $('setup-from').value = selfId;
    $('setup-to').value = peerId;
    var err = $('setup-error');
    if (selfId !== '' && selfId === peerId) {
      err.textContent = '我的 ID 和对方 ID 不能相同。';
      err.hidden = false;
    } else if ((selfId !== '' && !validUID(selfId)) || (peerId !== '' && !validUID(peerId))) {
      err.textContent = '用户 ID 不能含空白字符，且不超过 ' + MAX_UID_LENGTH + ' 个字符。';
      err.hidden = false;
    }
    $('setup-form').addEventListener('submit', function (ev) {
      var f = $('setup-from').value.trim();
      var t = $('setup-to').value.trim();
      if (f === t) {
        ev.preventDefault();
        err.textContent = '我的 ID 和对方 ID 不能相同。';
        err.hidden = false;
      }
    });
  }

  // ---- configuration -----------------------------------------------------

  // readConfig parses the JSON the server puts in #gatewire-config.
  function readConfig() {
    var el = $('gatewire-config');
    if (!el) return {};
    try {
      return JSON.parse(el.textContent || '') || {};
    } catch (e) {
      return {};
    }
  }

  // bindToken passes cb the token that proves this page may bind selfId:
  // the page URL's ?token= (handed out by the application), a fresh one
  // from the all-in-one's demo endpoint, or '' when neither exists (the
  // server then has to accept token-less binds). A failed fetch starts the
  // connection over.
  function bindToken(cb) {
    var given = params.get('token');
    if (given) return cb(given);
    if (!config.demoTokens) return cb('');
    fetch('/demo/token?uid=' + encodeURIComponent(selfId), { cache: 'no-store' })
      .then(function (r) {
        if (!r.ok) throw new Error('status ' + r.status);
        return r.json();
      })
      .then(function (j) {
        cb(String(j.token || ''));
      })
      .catch(function () {
        if (state.ws) state.ws.close();
      });
  }

  function webSocketURL() {
    if (config.wsUrl) return config.wsUrl;
    return (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/';
  }

  // ---- connection ----------------------------------------------------------

  function connect() {
    clearTimeout(state.retryTimer);
    state.retryTimer = 0;
    if (state.ws) return;
    setStatus(state.everBound ? 'reconnecting' : 'connecting');
    var ws;
    try {
      ws = new WebSocket(webSocketURL());
    } catch (e) {
      scheduleReconnect();
      return;
    }
    state.ws = ws;
    state.bindRefused = false;
    clearTimeout(state.watchdog);
    state.watchdog = setTimeout(function () {
      if (state.ws === ws && !state.bound && !state.bindRefused) ws.close();
    }, CONNECT_TIMEOUT_MS);
    ws.addEventListener('message', function (ev) {
      if (state.ws !== ws || typeof ev.data !== 'string') return;
      var f;
      try {
        f = JSON.parse(ev.data);
      } catch (e) {
        return;
      }
      if (f && typeof f === 'object') onFrame(f);
    });
    ws.addEventListener('close', function () {
      if (state.ws !== ws) return;
      state.ws = null;
      state.bound = false;
      state.histQueue = [];
      state.histBusy = null;
      clearTimeout(state.watchdog);
      scheduleReconnect();
    });
  }

  function scheduleReconnect() {
    if (state.retryTimer) return;
    var delay = Math.min(RETRY_MAX_MS, Math.round(state.retryDelay * (0.8 + 0.4 * Math.random())));
    state.retryDelay = Math.min(RETRY_MAX_MS, state.retryDelay * 2);
    setStatus(state.everBound ? 'reconnecting' : 'connecting');
    state.retryTimer = setTimeout(connect, delay);
  }

  // reconnectNow skips the backoff wait (the network came back, the page
  // became visible again).
  function reconnectNow() {
    if (state.ws || !state.retryTimer) return;
    state.retryDelay = RETRY_MIN_MS;
    connect();
  }

  function send(frame) {
    var ws = state.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return false;
    ws.send(JSON.stringify(frame));
    return true;
  }

  function setStatus(s, text) {
    els.status.dataset.state = s;
    els.statusText.textContent = text || LABELS[s];
  }

  // ---- frames --------------------------------------------------------------

  function onFrame(f) {
    switch (f.type) {
      case 'init':
        var ws = state.ws;
        var cid = String(f.client_id || '');
        bindToken(function (token) {
          if (state.ws !== ws) return;
          var bind = { type: 'bind', client_id: cid, frontId: selfId };
          if (token) bind.token = token;
          send(bind);
        });
        return;
      case 'bound':
        if (f.frontId === selfId) onBound();
        return;
      case 'profile':
        onProfile(f);
        return;
      case 'history':
        onHistory(f);
        return;
      case 'text':
        if (f.frontId === peerId && f.toId === selfId) onIncoming(f);
        return;
      case 'save':
        if (f.frontId === selfId && f.toId === peerId) onSave(f);
        return;
      case 'receipt':
        onReceipt(f);
        return;
      case 'error':
        onError(f);
        return;
    }
  }

  function onBound() {
    state.bound = true;
    state.everBound = true;
    state.retryDelay = RETRY_MIN_MS;
    clearTimeout(state.watchdog);
    setStatus('online');
    hideNotice();
    send({ type: 'profile', toId: peerId });
    if (state.initialLoaded && state.newestId > 0) {
      requestHistory({ kind: 'after', after: state.newestId, limit: CATCH_UP_PAGE });
    } else {
      requestHistory({ kind: 'initial', limit: FIRST_PAGE });
    }
    state.readSent = state.readAcked;
    pendingEntries().forEach(function (e) {
      if (e.state === 'sending') transmit(e);
    });
  }

  function onProfile(f) {
    var self = f.self || {}, peer = f.peer || {};
    if (peer.uid !== peerId || self.uid !== selfId) return;
    if (self.avatar) state.avatars[selfId] = String(self.avatar);
    if (peer.avatar) state.avatars[peerId] = String(peer.avatar);
    var name = String(peer.nickname || peerId);
    els.title.textContent = '与' + name + '聊天中...';
    state.baseTitle = name + ' · ' + LABELS.service;
    updateDocumentTitle();
    els.peerAvatar.alt = name;
    els.selfAvatar.alt = String(self.nickname || selfId);
    setAvatar(els.peerAvatar, peerId);
    setAvatar(els.selfAvatar, selfId);
    var imgs = els.messages.querySelectorAll('img.avatar');
    for (var i = 0; i < imgs.length; i++) setAvatar(imgs[i], imgs[i].dataset.uid);
  }

  function onIncoming(f) {
    var atBottom = nearBottom();
    var e = stored(f, false);
    if (!e) return;
    if (e.fresh) {
      if (document.visibilityState !== 'visible') {
        state.unseen++;
        updateDocumentTitle();
      }
      if (atBottom) scrollToBottom();
      else els.jump.hidden = false;
    }
    markRead();
  }

  function onSave(f) {
    var e = stored(f, false);
    if (!e) return;
    if (f.is_read === 1) e.delivered = true;
    render(e);
    if (e.fresh) scrollToBottom(); // sent from another tab of mine
  }

  function onReceipt(f) {
    var upTo = toMsgID(f.upTo);
    if (!upTo) return;
    if (f.frontId === peerId && f.toId === selfId) {
      if (upTo <= state.peerReadUpTo) return;
      state.peerReadUpTo = upTo;
      state.byId.forEach(function (e) {
        if (e.from === selfId && e.msgId <= upTo && e.state !== 'read') setState(e, 'read');
      });
    } else if (f.frontId === selfId && f.toId === peerId) {
      state.readAcked = Math.max(state.readAcked, upTo);
      state.readSent = Math.max(state.readSent, upTo);
    }
  }

  function onError(f) {
    var e = f.cmid ? state.byCmid.get(String(f.cmid)) : null;
    if (e && !e.msgId) {
      e.error = String(f.message || f.code || '');
      setState(e, 'failed');
      return;
    }
    switch (f.ref) {
      case 'bind':
        state.bindRefused = true;
        clearTimeout(state.watchdog);
        if (f.code === 'unavailable') {
          // The cluster could not bind right now: start over.
          if (state.ws) state.ws.close();
          return;
        }
        setStatus('error', LABELS.error + '：' + String(f.message || f.code));
        return;
      case 'history':
        var failed = state.histBusy;
        state.histBusy = null;
        if (failed) {
          state.histQueue.unshift(failed);
          setTimeout(pumpHistory, 3000);
        }
        showNotice('加载消息记录失败，稍后自动重试。');
        return;
      case 'read':
        state.readSent = state.readAcked;
        setTimeout(markRead, 3000);
        return;
      case 'profile':
        setTimeout(function () { send({ type: 'profile', toId: peerId }); }, 3000);
        return;
    }
    showNotice(String(f.message || f.code || '出错了'));
  }

  // ---- messages ------------------------------------------------------------

  function toMsgID(v) {
    var n = Number(v);
    return Number.isSafeInteger(n) && n > 0 ? n : 0;
  }

  // stored adds or updates a stored message (a history item, a text or a
  // save frame) and returns its entry; entry.fresh tells whether it is new to
  // the page. readByPeer is true when a history item says the peer has read
  // it.
  function stored(m, readByPeer) {
    var id = toMsgID(m.msg_id);
    if (!id) return null;
    var from = String(m.frontId);
    var e = state.byId.get(id);
    var pending = from === selfId && m.cmid ? state.byCmid.get(String(m.cmid)) : null;
    var fresh = false;
    if (pending && pending !== e) {
      if (e) {
        dropEntry(pending); // history showed it before its save came
        state.byCmid.set(pending.cmid, e);
        if (!e.cmid) e.cmid = pending.cmid;
      } else {
        e = pending;
        e.msgId = id;
        e.error = '';
        state.byId.set(id, e);
      }
      saveOutbox();
    }
    if (!e) {
      e = newEntry({ msgId: id, from: from, raw: String(m.raw == null ? '' : m.raw), cmid: from === selfId && m.cmid ? String(m.cmid) : '' });
      state.byId.set(id, e);
      fresh = true;
    }
    if (m.date) e.date = String(m.date);
    if (from === selfId) {
      if (readByPeer || id <= state.peerReadUpTo || e.state === 'read') e.state = 'read';
      else e.state = 'sent';
    }
    state.newestId = Math.max(state.newestId, id);
    state.oldestId = state.oldestId ? Math.min(state.oldestId, id) : id;
    if (from === peerId) state.newestPeerId = Math.max(state.newestPeerId, id);
    render(e);
    place(e);
    updateEmpty();
    e.fresh = fresh;
    return e;
  }

  function newEntry(fields) {
    var e = {
      msgId: fields.msgId || 0,
      cmid: fields.cmid || '',
      from: fields.from,
      raw: fields.raw,
      date: fields.date || '',
      state: fields.from === selfId ? (fields.state || 'sent') : 'received',
      delivered: false,
      error: '',
      sentAt: 0,
      el: null
    };
    buildElement(e);
    return e;
  }

  function buildElement(e) {
    var mine = e.from === selfId;
    var li = document.createElement('li');
    li.className = 'msg ' + (mine ? 'msg-self' : 'msg-peer');
    li.dataset.from = e.from;
    var img = document.createElement('img');
    img.className = 'avatar';
    img.alt = '';
    setAvatar(img, e.from);
    var body = document.createElement('div');
    body.className = 'msg-body';
    var bubble = document.createElement('div');
    bubble.className = 'bubble';
    bubble.textContent = e.raw; // never innerHTML: the text is shown as typed
    var meta = document.createElement('div');
    meta.className = 'meta';
    var time = document.createElement('time');
    time.className = 'time';
    meta.appendChild(time);
    if (mine) {
      var st = document.createElement('span');
      st.className = 'state';
      meta.appendChild(st);
      var retry = document.createElement('button');
      retry.type = 'button';
      retry.className = 'retry';
      retry.textContent = LABELS.retry;
      retry.hidden = true;
      retry.addEventListener('click', function () { resend(e); });
      meta.appendChild(retry);
    }
    body.appendChild(bubble);
    body.appendChild(meta);
    li.appendChild(img);
    li.appendChild(body);
    e.el = li;
  }

  function render(e) {
    var li = e.el;
    if (e.msgId) li.dataset.msgId = String(e.msgId);
    if (e.cmid) li.dataset.cmid = e.cmid;
    li.dataset.state = e.state;
    var time = li.querySelector('.time');
    time.textContent = shortDate(e.date);
    time.dateTime = e.date.replace(' ', 'T');
    time.title = e.date;
    if (e.from !== selfId) return;
    var label = LABELS[e.state];
    if (e.state === 'sent' && e.delivered) label = LABELS.delivered;
    li.querySelector('.state').textContent = label;
    var retry = li.querySelector('.retry');
    retry.hidden = e.state !== 'failed';
    li.title = e.state === 'failed' && e.error ? e.error : '';
  }

  function setState(e, s) {
    e.state = s;
    render(e);
  }

  // place puts the entry's element in msg_id order; unsent messages stay at
  // the end, in the order they were written.
  function place(e) {
    var list = els.messages;
    var ref = null;
    if (e.msgId) {
      for (var c = list.firstElementChild; c; c = c.nextElementSibling) {
        if (c === e.el) continue;
        var id = Number(c.dataset.msgId || 0);
        if (!id || id > e.msgId) {
          ref = c;
          break;
        }
      }
    } else if (e.el.parentNode === list) {
      return;
    }
    if (e.el.parentNode === list && e.el.nextElementSibling === ref) return;
    list.insertBefore(e.el, ref);
  }

  function dropEntry(e) {
    if (e.el && e.el.parentNode) e.el.parentNode.removeChild(e.el);
    if (state.byCmid.get(e.cmid) === e) state.byCmid.delete(e.cmid);
  }

  function updateEmpty() {
    els.empty.hidden = els.messages.firstElementChild !== null;
  }

  // ---- sending -------------------------------------------------------------

  function newCMID() {
    var b = new Uint8Array(16);
    crypto.getRandomValues(b);
    var s = '';
    for (var i = 0; i < b.length; i++) s += (b[i] + 256).toString(16).slice(1);
    return s;
  }

  function submit() {
    var text = els.input.value;
    if (text.trim() === '') return;
    if (new TextEncoder().encode(text).length > MAX_TEXT_BYTES) {
      showNotice('消息太长了，请分几条发送。');
      return;
    }
    var e = newEntry({ cmid: newCMID(), from: selfId, raw: text, date: localDate(new Date()), state: 'sending' });
    state.byCmid.set(e.cmid, e);
    render(e);
    place(e);
    updateEmpty();
    saveOutbox();
    els.input.value = '';
    transmit(e);
    scrollToBottom();
  }

  // transmit sends the say of an unacknowledged message; when offline it
  // waits for the next bind.
  function transmit(e) {
    if (!state.bound) return;
    if (send({ type: 'say', frontId: selfId, toId: peerId, data: e.raw, cmid: e.cmid })) e.sentAt = Date.now();
  }

  function resend(e) {
    if (e.msgId) return;
    e.error = '';
    setState(e, 'sending');
    transmit(e);
  }

  // resendStale sends again, with the same cmid, what got neither a save nor
  // an error (a frame lost with a dying worker): the server never stores a
  // cmid twice.
  function resendStale() {
    var now = Date.now();
    pendingEntries().forEach(function (e) {
      if (e.state === 'sending' && e.sentAt && now - e.sentAt >= RESEND_AFTER_MS) transmit(e);
    });
  }

  function pendingEntries() {
    var out = [];
    state.byCmid.forEach(function (e) {
      if (!e.msgId && out.indexOf(e) < 0) out.push(e);
    });
    return out;
  }

  // The outbox keeps unacknowledged messages in sessionStorage, so that a
  // reload sends them again with their cmids instead of losing them.
  function saveOutbox() {
    try {
      var items = pendingEntries().map(function (e) { return { cmid: e.cmid, raw: e.raw, date: e.date }; });
      if (items.length) sessionStorage.setItem(outboxKey, JSON.stringify(items));
      else sessionStorage.removeItem(outboxKey);
    } catch (err) {
      // Storage may be unavailable (private mode); the outbox then lives in memory only.
    }
  }

  function restoreOutbox() {
    var items;
    try {
      items = JSON.parse(sessionStorage.getItem(outboxKey) || '[]');
    } catch (err) {
      return;
    }
    if (!Array.isArray(items)) return;
    items.forEach(function (it) {
      if (!it || typeof it.cmid !== 'string' || typeof it.raw !== 'string' || state.byCmid.has(it.cmid)) return;
      var e = newEntry({ cmid: it.cmid, from: selfId, raw: it.raw, date: String(it.date || ''), state: 'sending' });
      state.byCmid.set(e.cmid, e);
      render(e);
      place(e);
    });
  }

  // ---- history -------------------------------------------------------------

  function requestHistory(req) {
    state.histQueue.push(req);
    pumpHistory();
  }

  // pumpHistory sends the next history request; one is in flight at a time,
  // so that each reply is matched with its request.
  function pumpHistory() {
    if (state.histBusy || !state.bound || state.histQueue.length === 0) return;
    var r = state.histQueue.shift();
    var frame = { type: 'history', toId: peerId, limit: r.limit };
    if (r.before) frame.before = r.before;
    if (r.after) frame.after = r.after;
    if (!send(frame)) {
      state.histQueue.unshift(r);
      return;
    }
    state.histBusy = r;
    updateMore();
  }

  function onHistory(f) {
    if (f.toId !== peerId) return;
    var r = state.histBusy;
    state.histBusy = null;
    if (!r) return;
    var msgs = Array.isArray(f.messages) ? f.messages : [];
    var atBottom = nearBottom();
    var oldHeight = els.log.scrollHeight, oldTop = els.log.scrollTop;
    var newestInPage = 0;
    msgs.forEach(function (m) {
      if (!m) return;
      var mine = m.frontId === selfId && m.toId === peerId;
      var theirs = m.frontId === peerId && m.toId === selfId;
      if (!mine && !theirs) return;
      stored(m, mine && m.is_read === 1);
      newestInPage = Math.max(newestInPage, toMsgID(m.msg_id));
    });
    switch (r.kind) {
      case 'initial':
        state.initialLoaded = true;
        state.hasMore = !!f.more;
        scrollToBottom();
        break;
      case 'before':
        state.hasMore = !!f.more;
        els.log.scrollTop = oldTop + (els.log.scrollHeight - oldHeight);
        break;
      case 'after':
        if (f.more && newestInPage > 0) {
          state.histQueue.unshift({ kind: 'after', after: newestInPage, limit: CATCH_UP_PAGE });
        }
        if (atBottom) scrollToBottom();
        break;
    }
    updateMore();
    markRead();
    pumpHistory();
  }

  function loadEarlier() {
    if (!state.hasMore || !state.oldestId) return;
    var busy = state.histBusy && state.histBusy.kind === 'before';
    var queued = state.histQueue.some(function (r) { return r.kind === 'before'; });
    if (busy || queued) return;
    requestHistory({ kind: 'before', before: state.oldestId, limit: OLDER_PAGE });
  }

  function updateMore() {
    var loading = !!(state.histBusy && state.histBusy.kind === 'before');
    els.more.hidden = !state.hasMore;
    els.more.disabled = loading;
    els.more.textContent = loading ? LABELS.loading : LABELS.more;
  }

  // ---- read state ----------------------------------------------------------

  // markRead tells the server that the peer's messages up to the newest one
  // shown are read, while the page is visible.
  function markRead() {
    if (!state.bound || document.visibilityState !== 'visible') return;
    var upTo = state.newestPeerId;
    if (upTo <= state.readSent) return;
    if (send({ type: 'read', toId: peerId, upTo: upTo })) state.readSent = upTo;
  }

  function updateDocumentTitle() {
    document.title = (state.unseen > 0 ? '(' + state.unseen + ') ' : '') + state.baseTitle;
  }

  // ---- page ----------------------------------------------------------------

  function wireUI() {
    els.composer.addEventListener('submit', function (ev) {
      ev.preventDefault();
      submit();
      els.input.focus();
    });
    els.input.addEventListener('keydown', function (ev) {
      if (ev.key !== 'Enter' || ev.shiftKey || ev.isComposing || ev.keyCode === 229) return;
      ev.preventDefault();
      submit();
    });
    els.more.addEventListener('click', loadEarlier);
    els.jump.addEventListener('click', function () { scrollToBottom(); });
    els.log.addEventListener('scroll', function () {
      if (nearBottom()) els.jump.hidden = true;
    });
    document.addEventListener('visibilitychange', function () {
      if (document.visibilityState !== 'visible') return;
      state.unseen = 0;
      updateDocumentTitle();
      markRead();
      reconnectNow();
    });
    window.addEventListener('online', reconnectNow);
  }

  function setAvatar(img, uid) {
    img.dataset.uid = uid;
    var url = state.avatars[uid] || fallbackAvatar(uid);
    if (img.getAttribute('src') !== url) img.src = url;
    if (!img.dataset.wired) {
      img.dataset.wired = '1';
      img.addEventListener('error', function () {
        // An avatar the page may not load (another origin, a dead link)
        // falls back to the generated one.
        var fb = fallbackAvatar(img.dataset.uid);
        if (img.getAttribute('src') !== fb) img.src = fb;
      });
    }
  }

  function fallbackAvatar(uid) {
    return 'avatars/' + encodeURIComponent(uid) + '.svg';
  }

  function nearBottom() {
    var l = els.log;
    return l.scrollHeight - l.scrollTop - l.clientHeight < 80;
  }

  function scrollToBottom() {
    els.log.scrollTop = els.log.scrollHeight;
    els.jump.hidden = true;
  }

  function showNotice(text) {
    els.notice.textContent = text;
    els.notice.hidden = false;
    clearTimeout(state.noticeTimer);
    state.noticeTimer = setTimeout(hideNotice, 6000);
  }

  function hideNotice() {
    els.notice.hidden = true;
  }

  function pad(n) { return (n < 10 ? '0' : '') + n; }

  function localDate(d) {
    return d.getFullYear() + '-' + pad(d.getMonth() + 1) + '-' + pad(d.getDate()) + ' ' +
      pad(d.getHours()) + ':' + pad(d.getMinutes()) + ':' + pad(d.getSeconds());
  }

  // shortDate shows "Y-m-d H:i:s" as H:i today, m-d H:i this year, else
  // Y-m-d H:i.
  function shortDate(s) {
    if (!/^\d{4}-\d{2}-\d{2} \d{2}:\d{2}/.test(s)) return s;
    var today = localDate(new Date());
    if (s.slice(0, 10) === today.slice(0, 10)) return s.slice(11, 16);
    if (s.slice(0, 4) === today.slice(0, 4)) return s.slice(5, 16);
    return s.slice(0, 16);
  }
})();
