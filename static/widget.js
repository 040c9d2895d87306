/*! Backchannel chat widget. One dependency-free script; see docs/widget.md.
 *
 *   <script src="https://HOST/widget.js" data-workspace="WIDGET_KEY" async></script>
 *
 * Layout of this file: small helpers, storage, the Connection (transport: session, socket,
 * backoff, last seq, queued messages), the View (shadow root, rendering), and the public
 * API that ties them together. Nothing from a message is ever inserted as HTML: every
 * piece of text goes through textContent, every URL through safeUrl().
 */
(function () {
  "use strict";

  var existing = window.Backchannel;
  if (existing && existing.__loaded) return;
  var script = document.currentScript ||
    document.querySelector('script[data-workspace][src*="widget.js"]');
  if (!script || !script.getAttribute("data-workspace")) {
    if (window.console) console.warn("Backchannel: add data-workspace to the widget script tag");
    return;
  }
  var WIDGET_KEY = script.getAttribute("data-workspace");
  var SERVER = new URL(script.src, location.href).origin;
  var STORAGE_KEY = "backchannel:" + WIDGET_KEY + ":visitor";
  // The visitor token issued to a user the host page names without a user_jwt: the only
  // way such a claim reaches that user again (docs/widget.md "Identity and storage").
  function claimKey(externalId) { return "backchannel:" + WIDGET_KEY + ":user:" + externalId; }
  // The close codes this script sends or acts on: app/realtime/closecodes.py, docs/widget.md.
  var CLOSE = { NORMAL: 1000, UNAUTHENTICATED: 4401, FORBIDDEN: 4403, DEAD_PEER: 4408, REPLACED: 4429 };
  var REDUCED_MOTION = window.matchMedia && window.matchMedia("(prefers-reduced-motion: reduce)");

  // --- languages -----------------------------------------------------------------------
  // Every string the widget shows or announces. English is built in; the other languages are
  // static/widget-locale-CODE.json, fetched when chosen (tests/test_widget_locales.py checks
  // each has exactly these keys and placeholders). See docs/widget.md "Languages".
  var EN = /*EN*/{
    "open": "Open chat", "minimize": "Minimize chat", "log": "Conversation", "message": "Message",
    "placeholder": "Write a message…", "send": "Send", "attach": "Attach a file", "files_to_send": "Files to send",
    "drop": "Drop files to attach", "powered": "Powered by Backchannel", "chat": "Chat",
    "reply_time": "We usually reply in a few minutes",
    "away": "We're away right now. Leave a message and we'll reply when we're back.",
    "resolved": "Resolved · write to reopen", "talking_to": "You're talking to {name}",
    "waiting_teammate": "Waiting for a teammate", "joined": "{name} joined",
    "webview_sent": "Sent: {label}", "webview_dismissed": "Closed without sending: {label}",
    "webview_closed": "Closed: {label}", "spent_done": "Completed: you already sent this.",
    "spent_human": "No longer available: a teammate has taken over this chat.",
    "offline": "Connection lost. Reconnecting…", "refused": "Chat is not available on this site.",
    "unavailable": "Chat is not available.", "no_connection": "No connection to the chat server.",
    "too_large": "The file is too large.", "too_large_limit": "The file is too large (the limit is {limit}).",
    "too_many": "Too many uploads for now.", "try_seconds": "Try again in {n} seconds.",
    "try_minutes": "Try again in {n} minutes.", "upload_failed": "The upload failed ({status}).",
    "fix_failed": "A file could not be uploaded: retry it or remove it, then send.",
    "send_after": "Sending when the upload finishes.", "max_files": "At most {n} files go in one message.",
    "uploading_name": "Uploading {name}", "uploading_pct": "Uploading… {n}%",
    "sends_when_done": "Uploading… {n}% · sends when done", "retry": "Retry", "retry_name": "Retry {name}",
    "remove": "Remove", "remove_name": "Remove {name}", "not_uploaded": "Not uploaded: {reason}",
    "not_uploaded_name": "{name} was not uploaded: {reason}", "ready": "{size} · ready to send",
    "ready_name": "{name} is ready to send.", "removed": "{name} removed.",
    "file": "File", "video": "Video", "audio": "Audio", "image": "Image", "gif": "GIF", "play_gif": "Play GIF",
    "image_alt": "[Image: {alt}]", "image_missing": "[Image unavailable]", "cards": "Cards", "card_prev": "Previous card", "card_next": "Next card", "card_of": "{i} of {n}",
    "choose": "Choose an option", "not_sent": "Not sent: {reason}", "refused_message": "refused",
    "sending": "Sending…", "waiting_network": "Waiting for network…", "someone": "Someone",
    "typing": "{name} is typing…", "seen": "Seen", "unread_one": "{n} unread message",
    "unread_other": "{n} unread messages", "close": "Close", "new_tab": "Open in new tab",
    "new_tab_note": "Continue in the new tab. The chat picks up here when you are done.",
    "rate_question": "How was this conversation?", "rate_n": "Rate {n} of 5", "rate_comment": "Add a comment (optional)",
    "rate_send": "Send feedback", "rate_thanks": "Thank you for your feedback!",
    "email_ask": "We're not here right now. Leave your email and we'll reply there.", "email": "Email",
    "notify": "Notify me", "email_saved": "Thanks! We'll email you at {email}.",
    "email_invalid": "Please enter a valid email address."
  }/*EN*/;
  var LOCALES = ["en", "de", "fr", "es", "pt", "ar"];
  var RTL = { ar: true };
  var catalogues = { en: EN };
  var lang = "en", strings = EN;

  /** A catalogue string with {placeholders} filled in; English when the language lacks it. */
  function t(key, vars) {
    var text = strings[key] || EN[key] || key;
    return vars ? text.replace(/\{(\w+)\}/g, function (m, name) { return name in vars ? String(vars[name]) : m; }) : text;
  }

  /** "de-AT" -> "de"; null when we have no catalogue for it. */
  function supported(code) {
    var base = String(code || "").toLowerCase().split(/[-_]/)[0];
    return LOCALES.indexOf(base) >= 0 ? base : null;
  }

  /** Dates and times in the visitor's language (Intl), e.g. "14:05" or "3 Dec, 14:05". */
  function formatTime(iso, full) {
    var date = new Date(iso);
    if (isNaN(date)) return "";
    var today = new Date().toDateString() === date.toDateString();
    var options = full ? { dateStyle: "full", timeStyle: "short" } :
      today ? { hour: "numeric", minute: "2-digit" } : { month: "short", day: "numeric", hour: "numeric", minute: "2-digit" };
    try { return new Intl.DateTimeFormat(lang, options).format(date); } catch (e) { return date.toLocaleString(); }
  }

  /** Whether the business is open now: its weekly spans in its own time zone (SPEC §12). */
  function isOpen(hours, now) {
    if (!hours || !hours.weekly || !hours.timezone) return true;
    var parts;
    try {
      parts = new Intl.DateTimeFormat("en-US", { timeZone: hours.timezone, weekday: "short", hour: "2-digit",
        minute: "2-digit", hourCycle: "h23" }).formatToParts(now || new Date());
    } catch (e) { return true; }
    var got = {};
    parts.forEach(function (p) { got[p.type] = p.value; });
    var clock = (got.hour === "24" ? "00" : got.hour) + ":" + got.minute;
    var spans = hours.weekly[String(got.weekday).slice(0, 3).toLowerCase()] || [];
    return spans.some(function (span) { return clock >= span[0] && clock < span[1]; });
  }

  // --- helpers -------------------------------------------------------------------------

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (key) {
        var value = attrs[key];
        if (value === null || value === undefined || value === false) return;
        if (key === "text") node.textContent = value;
        else if (key === "class") node.className = value;
        else if (key.slice(0, 2) === "on") node.addEventListener(key.slice(2), value);
        else node.setAttribute(key, value === true ? "" : String(value));
      });
    }
    (children || []).forEach(function (child) {
      if (child) node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    });
    return node;
  }

  function svg(path) {
    var ns = "http://www.w3.org/2000/svg";
    var node = document.createElementNS(ns, "svg");
    node.setAttribute("viewBox", "0 0 24 24");
    node.setAttribute("aria-hidden", "true");
    node.setAttribute("focusable", "false");
    var p = document.createElementNS(ns, "path");
    p.setAttribute("d", path);
    node.appendChild(p);
    return node;
  }

  var ICON_CHAT = "M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H9l-5 4v-4H4a2 2 0 0 1-2-2V6a2 2 0 0 1 2-2z";
  var ICON_SEND = "M3 20.5 21 12 3 3.5v6.6l12 1.9-12 1.9z";
  var ICON_DOWN = "M6 9l6 6 6-6";
  var ICON_CLIP = "M21 11.5l-8.6 8.6a5.5 5.5 0 0 1-7.8-7.8l8.6-8.6a3.7 3.7 0 0 1 5.2 5.2l-8.6 8.6a1.8 1.8 0 0 1-2.6-2.6l7.9-7.9";
  var ICON_FILE = "M14 3H7a2 2 0 0 0-2 2v14a2 2 0 0 0 2 2h10a2 2 0 0 0 2-2V8zM14 3v5h5";
  var ICON_X = "M6 6l12 12M18 6 6 18";
  var ICON_CHECK = "M5 12.5l4.5 4.5L19 7.5";
  var ICON_STAR = "M12 2.8l2.8 5.9 6.4.8-4.7 4.4 1.2 6.4L12 17.2l-5.7 3.1 1.2-6.4-4.7-4.4 6.4-.8z";
  var MAX_UPLOADS = 10; // files in one message

  /** Only http(s) URLs ever reach an href or src (the server checks too; this is defence). */
  function safeUrl(value) {
    try {
      var url = new URL(String(value), location.href);
      return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
    } catch (e) {
      return null;
    }
  }

  var URL_RE = /\bhttps?:\/\/[^\s<>"'`]+/gi;

  /** Plain text with http(s) URLs turned into links: text nodes and <a> only. */
  function linkify(text) {
    var frag = document.createDocumentFragment();
    var last = 0;
    String(text).replace(URL_RE, function (match, offset) {
      var trimmed = match.replace(/[.,;:!?)\]}]+$/, "");
      var href = safeUrl(trimmed);
      if (!href) return match;
      frag.appendChild(document.createTextNode(text.slice(last, offset)));
      frag.appendChild(el("a", { href: href, target: "_blank", rel: "noopener noreferrer", text: trimmed }));
      last = offset + trimmed.length;
      return match;
    });
    frag.appendChild(document.createTextNode(text.slice(last)));
    return frag;
  }

  /** 1258291 -> "1.2 MB": binary units, as most file managers show them (25 MiB reads "25 MB"). */
  function formatSize(bytes) {
    var n = Number(bytes);
    if (!isFinite(n) || n < 0) return "";
    if (n < 1024) return n + " B";
    var units = ["KB", "MB", "GB"], i = -1;
    do { n /= 1024; i += 1; } while (n >= 1024 && i < units.length - 1);
    return (n < 10 ? n.toFixed(1) : Math.round(n)) + " " + units[i];
  }

  /** "application/pdf" -> "PDF", "image/png" -> "PNG"; nothing for long or odd subtypes. */
  function kindLabel(contentType) {
    var m = /^[a-z]+\/([a-z0-9]{1,5})(?:;|$)/i.exec(contentType || "");
    return m ? m[1].toUpperCase() : "";
  }

  function uid() {
    if (window.crypto && crypto.randomUUID) return "wc_" + crypto.randomUUID().replace(/-/g, "");
    return "wc_" + Date.now().toString(36) + Math.random().toString(36).slice(2, 12);
  }

  function readableOn(hex) {
    var m = /^#?([0-9a-f]{6})$/i.exec(hex || "");
    if (!m) return "#ffffff";
    var n = parseInt(m[1], 16);
    var lum = [n >> 16, (n >> 8) & 255, n & 255].map(function (c) {
      c /= 255;
      return c <= 0.03928 ? c / 12.92 : Math.pow((c + 0.055) / 1.055, 2.4);
    });
    var l = 0.2126 * lum[0] + 0.7152 * lum[1] + 0.0722 * lum[2];
    return l > 0.35 ? "#111827" : "#ffffff";
  }

  /** localStorage when the browser lets us, memory when it does not (blocked storage). */
  var memoryStore = {};
  var storage = {
    get: function (key) {
      try { return window.localStorage.getItem(key); } catch (e) { return memoryStore[key] || null; }
    },
    set: function (key, value) {
      try { window.localStorage.setItem(key, value); } catch (e) { memoryStore[key] = value; }
    },
    remove: function (key) {
      try { window.localStorage.removeItem(key); } catch (e) { delete memoryStore[key]; }
    },
  };

  // --- transport -----------------------------------------------------------------------

  /**
   * The socket and everything needed to resume it: a session token, the conversation and
   * highest seq held, and the customer's messages not yet acknowledged (resent with the
   * same client_message_id after a reconnect, so the server stores each once).
   */
  function Connection(handlers) {
    this.handlers = handlers;
    this.session = null;
    this.sessionRequest = null;
    this.ws = null;
    this.ready = false;
    this.conversationId = null;
    this.lastSeq = 0;
    this.outbox = [];
    this.attempt = 0;
    this.timer = null;
    this.watchdog = null;
    this.heartbeat = 20;
    this.stopped = false;
    this.started = false;
    this.refused = false;
    this.claimRefused = false; // an unsigned user claim was refused: chat as an anonymous visitor
    var self = this;
    this.onOnline = function () { self.reconnectNow(); };
    this.onVisible = function () { if (document.visibilityState === "visible") self.reconnectNow(); };
    window.addEventListener("online", this.onOnline);
    document.addEventListener("visibilitychange", this.onVisible);
  }

  Connection.prototype.start = function () {
    if (this.started || this.stopped) return;
    this.started = true;
    this.connect();
  };

  Connection.prototype.identity = function () {
    var settings = window.BackchannelSettings || {};
    var body = { widget_key: WIDGET_KEY };
    if (settings.user && settings.user.external_id && !this.claimRefused) {
      body.user = settings.user;
      if (settings.user_jwt) body.user_jwt = settings.user_jwt;
      else {
        var claimed = storage.get(claimKey(settings.user.external_id));
        if (claimed) body.visitor_token = claimed;
      }
    } else {
      var token = storage.get(STORAGE_KEY);
      if (token) body.visitor_token = token;
    }
    return body;
  };

  /** One session request at a time: the socket and an upload may both need one at once, and
   * two parallel first requests from a new visitor would make two users. */
  Connection.prototype.fetchSession = function () {
    var self = this;
    if (this.sessionRequest) return this.sessionRequest;
    var request = this.requestSession();
    this.sessionRequest = request;
    request.then(function () { self.sessionRequest = null; }, function () { self.sessionRequest = null; });
    return request;
  };

  /** The current session, fetched first when there is none (uploads need its token). */
  Connection.prototype.withSession = function () {
    if (this.session) return Promise.resolve(this.session);
    this.start();
    return this.fetchSession();
  };

  /** identify() and reset(): drop the socket, the session and what they held; connect again now
   * (a known customer: their history and badge) or on the next open (a new anonymous visitor). */
  Connection.prototype.restart = function (connectNow) {
    this.generation = (this.generation || 0) + 1; // a session still being fetched is for the old identity
    clearTimeout(this.timer);
    clearTimeout(this.watchdog);
    var ws = this.ws;
    this.ws = null;
    this.ready = false;
    if (ws) ws.close(CLOSE.NORMAL, "identity changed");
    this.session = this.sessionRequest = this.conversationId = null;
    this.lastSeq = 0;
    this.outbox = [];
    this.attempt = 0;
    this.refused = this.claimRefused = this.started = false;
    if (connectNow) this.start();
  };

  Connection.prototype.requestSession = function () {
    var self = this;
    var generation = this.generation;
    var identity = this.identity();
    return fetch(SERVER + "/widget/v1/session", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(identity),
      credentials: "omit",
    }).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (data) {
        if (generation !== self.generation) {
          var stale = new Error("identity changed");
          stale.stale = true;
          throw stale;
        }
        if (!response.ok) {
          var code = data.error && data.error.code;
          if (code === "identity_required" && identity.user && !identity.user_jwt && !self.claimRefused) {
            // An unsigned claim cannot reach an existing user (or verification is on):
            // anonymous visitors are still welcome, so chat as one rather than not at all.
            if (window.console) console.warn("Backchannel: " + data.error.message + " Continuing as an anonymous visitor.");
            self.claimRefused = true;
            return self.requestSession();
          }
          var error = new Error((data.error && data.error.message) || "session refused");
          error.fatal = response.status === 401 || response.status === 403 || response.status === 404;
          throw error;
        }
        if (data.visitor_token) {
          storage.set(identity.user ? claimKey(identity.user.external_id) : STORAGE_KEY, data.visitor_token);
        }
        self.session = data;
        self.handlers.session(data);
        return data;
      });
    });
  };

  Connection.prototype.connect = function () {
    var self = this;
    if (this.stopped || this.ws) return;
    clearTimeout(this.timer);
    this.handlers.status("connecting");
    var ready = this.session ? Promise.resolve(this.session) : this.fetchSession();
    ready.then(function (session) {
      if (self.stopped || self.ws) return;
      var url = SERVER.replace(/^http/, "ws") + session.socket_path;
      var ws = new WebSocket(url);
      self.ws = ws;
      ws.onopen = function () {
        ws.send(JSON.stringify({
          type: "auth", token: session.session_token, page: location.origin + location.pathname,
          conversation_id: self.conversationId, last_seq: self.lastSeq,
        }));
      };
      ws.onmessage = function (event) {
        var frame;
        try { frame = JSON.parse(event.data); } catch (e) { return; }
        self.alive();
        self.receive(frame);
      };
      ws.onclose = function (event) { self.closed(ws, event.code); };
    }).catch(function (error) {
      if (error && error.stale) return;
      if (error && error.fatal) {
        self.refused = true;
        self.handlers.status("refused");
        if (window.console) console.warn("Backchannel: " + error.message);
        return;
      }
      self.retry();
    });
  };

  Connection.prototype.receive = function (frame) {
    if (frame.type === "ready") {
      this.ready = true;
      this.attempt = 0;
      this.heartbeat = frame.heartbeat || 20;
      var conv = frame.conversation;
      if (!conv || conv.id !== this.conversationId) this.lastSeq = 0;
      this.conversationId = conv ? conv.id : null;
      this.handlers.status("online");
      this.handlers.frame(frame);
      this.flush();
      return;
    }
    if (frame.type === "ping") { this.send({ type: "pong" }); return; }
    if (frame.type === "conversation" && frame.conversation.id !== this.conversationId) {
      this.conversationId = frame.conversation.id;
      this.lastSeq = 0;
    }
    if (frame.type === "message") {
      var m = frame.message;
      if (m.conversation_id !== this.conversationId || m.seq <= this.lastSeq) return; // seen
      this.lastSeq = m.seq;
      if (m.client_message_id) this.acked(m.client_message_id);
    }
    if (frame.type === "ack") this.acked(frame.client_message_id);
    if (frame.type === "error" && frame.client_message_id && frame.code !== "rate_limited") {
      this.acked(frame.client_message_id); // refused for good: do not resend it forever
    }
    this.handlers.frame(frame);
  };

  Connection.prototype.acked = function (clientId) {
    this.outbox = this.outbox.filter(function (f) { return f.client_message_id !== clientId; });
  };

  /** Dead-peer detection from our side: the server pings every `heartbeat` seconds. */
  Connection.prototype.alive = function () {
    var self = this;
    clearTimeout(this.watchdog);
    this.watchdog = setTimeout(function () {
      if (self.ws) self.ws.close(CLOSE.DEAD_PEER, "heartbeat timeout");
    }, this.heartbeat * 2500);
  };

  Connection.prototype.closed = function (ws, code) {
    if (this.ws !== ws) return;
    this.ws = null;
    this.ready = false;
    clearTimeout(this.watchdog);
    if (this.stopped) return;
    if (code === CLOSE.FORBIDDEN) {
      this.refused = true;
      this.handlers.status("refused");
      return;
    }
    // An expired session token, or this session's socket was replaced by newer ones.
    if (code === CLOSE.UNAUTHENTICATED || code === CLOSE.REPLACED) this.session = null; // fetch a new one
    this.handlers.status("offline");
    this.retry();
  };

  Connection.prototype.retry = function () {
    var self = this;
    if (this.stopped || this.refused) return;
    this.handlers.status("offline");
    // Exponential backoff with jitter, 0.5 s doubling to 30 s.
    var base = Math.min(30000, 500 * Math.pow(2, this.attempt));
    this.attempt += 1;
    clearTimeout(this.timer);
    this.timer = setTimeout(function () { self.connect(); }, base / 2 + Math.random() * base / 2);
  };

  Connection.prototype.reconnectNow = function () {
    if (this.stopped || this.refused || !this.started || this.ws) return;
    this.attempt = 0;
    this.connect();
  };

  Connection.prototype.send = function (frame) {
    if (this.ws && this.ready && this.ws.readyState === 1) {
      this.ws.send(JSON.stringify(frame));
      return true;
    }
    return false;
  };

  /** A customer message: kept until acknowledged, sent now or after the next reconnect. */
  Connection.prototype.sendMessage = function (frame) {
    this.outbox.push(frame);
    this.start();
    this.send(frame);
  };

  Connection.prototype.flush = function () {
    var self = this;
    this.outbox.forEach(function (frame) { self.send(frame); });
  };

  Connection.prototype.stop = function () {
    this.stopped = true;
    clearTimeout(this.timer);
    clearTimeout(this.watchdog);
    window.removeEventListener("online", this.onOnline);
    document.removeEventListener("visibilitychange", this.onVisible);
    if (this.ws) this.ws.close(CLOSE.NORMAL, "destroyed");
    this.ws = null;
  };

  /**
   * Upload one file to POST /widget/v1/files with the session token, reporting progress
   * (XMLHttpRequest: fetch cannot report upload progress). Calls back exactly once:
   * done(null, file), or done(reason, null, final) where `final` says trying the same file
   * again cannot help (too large, empty).
   * An expired session token (401) fetches a new session and tries once more.
   */
  function uploadFile(conn, file, onProgress, done) {
    var xhr = null, aborted = false, retried = false;
    function fail(message, final) { if (!aborted) done(message, null, !!final); }
    function send(session) {
      if (aborted) return;
      xhr = new XMLHttpRequest();
      xhr.open("POST", SERVER + "/widget/v1/files");
      xhr.setRequestHeader("Authorization", "Bearer " + session.session_token);
      xhr.upload.onprogress = function (e) { if (e.lengthComputable) onProgress(e.loaded / e.total); };
      xhr.onload = function () {
        var body = null;
        try { body = JSON.parse(xhr.responseText); } catch (e) { body = null; }
        if (xhr.status === 201 && body && body.id) { if (!aborted) done(null, body); return; }
        if (xhr.status === 401 && !retried) { retried = true; conn.session = null; start(); return; }
        var error = (body && body.error) || {};
        var message = error.message;
        if (xhr.status === 413) {
          // In the customer's words: "25 MB", not a byte count.
          var limit = error.details && error.details.max_bytes;
          message = limit ? t("too_large_limit", { limit: formatSize(limit) }) : t("too_large");
        }
        var detail = Array.isArray(error.details) && error.details[0] && error.details[0].message;
        if (xhr.status === 422 && typeof detail === "string" && detail) {
          message = detail.charAt(0).toUpperCase() + detail.slice(1) + "."; // "The file is empty."
        }
        if (xhr.status === 429) {
          // The per-visitor upload limit; Retry-After is not readable across origins, the body is.
          var wait = Number(error.details && error.details.retry_after) || 0;
          message = t("too_many") + (wait > 0 ? " " + (wait < 90 ? t("try_seconds", { n: wait }) : t("try_minutes", { n: Math.ceil(wait / 60) })) : "");
        }
        fail(message || t("upload_failed", { status: xhr.status }), xhr.status === 413 || xhr.status === 422);
      };
      xhr.onerror = function () { fail(t("no_connection")); };
      var form = new FormData();
      form.append("file", file, file.name || "file");
      xhr.send(form);
    }
    function start() {
      conn.withSession().then(send, function (error) { fail((error && error.message) || t("unavailable")); });
    }
    start();
    return { abort: function () { aborted = true; if (xhr) xhr.abort(); } };
  }

  // --- styles --------------------------------------------------------------------------

  // `all: initial !important` on the host: inside a shadow tree, an !important rule beats
  // the page's own !important, so nothing the host page inherits or forces reaches us.
  var CSS = [
    ":host{all:initial !important;}",
    "*,*::before,*::after{box-sizing:border-box;}",
    "[hidden]{display:none !important;}",
    ".root{--bc-accent:#1f5eff;--bc-on-accent:#fff;--bc-ink:#1f5eff;font:15px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,'Helvetica Neue',Arial,sans-serif;color:#111827;-webkit-font-smoothing:antialiased;text-align:start;}",
    "button,select,textarea{font:inherit;color:inherit;}",
    ":focus-visible{outline:2px solid var(--bc-ink);outline-offset:2px;}",
    ".launcher{position:fixed;inset-inline-end:20px;bottom:20px;z-index:2147483000;width:60px;height:60px;border-radius:50%;border:0;background:var(--bc-accent);color:var(--bc-on-accent);box-shadow:0 8px 24px rgba(17,24,39,.24);cursor:pointer;display:grid;place-items:center;padding:0;transition:transform .15s ease;}",
    ".launcher:hover{transform:scale(1.05);}",
    ".launcher svg{width:28px;height:28px;fill:currentColor;}",
    ".badge{position:absolute;top:-4px;inset-inline-end:-4px;min-width:22px;height:22px;padding:0 6px;border-radius:11px;background:#dc2626;color:#fff;font-size:12px;font-weight:700;line-height:18px;text-align:center;border:2px solid #fff;}",
    ".panel{position:fixed;inset-inline-end:20px;bottom:20px;z-index:2147483001;width:380px;height:min(660px,calc(100vh - 40px));height:min(660px,calc(100dvh - 40px));display:flex;flex-direction:column;background:#fff;border-radius:16px;box-shadow:0 16px 48px rgba(17,24,39,.28);overflow:hidden;}",
    // Phones, upright or on their side: the panel takes the whole screen (dvh and the visual
    // viewport keep the composer above the on-screen keyboard), clear of notches and home bars.
    "@media (max-width:480px),(max-height:500px) and (pointer:coarse){.panel{inset:0;width:100%;height:100%;height:100dvh;border-radius:0;padding:env(safe-area-inset-top) env(safe-area-inset-right) 0 env(safe-area-inset-left);}.composer{padding-bottom:calc(12px + env(safe-area-inset-bottom));}.launcher{inset-inline-end:16px;bottom:calc(16px + env(safe-area-inset-bottom));}}",
    ".head{display:flex;align-items:center;gap:12px;padding-block:16px;padding-inline:18px 14px;background:var(--bc-accent);color:var(--bc-on-accent);}",
    ".avatar{flex:0 0 40px;height:40px;border-radius:50%;background:rgba(255,255,255,.22);display:grid;place-items:center;font-weight:700;font-size:17px;}",
    ".titles{flex:1;min-width:0;}",
    ".title{margin:0;font-size:16px;font-weight:650;line-height:1.25;white-space:nowrap;overflow:hidden;text-overflow:ellipsis;}",
    ".subtitle{margin:2px 0 0;font-size:13px;line-height:1.35;overflow:hidden;display:-webkit-box;-webkit-box-orient:vertical;-webkit-line-clamp:2;}",
    ".icon-btn{flex:0 0 40px;width:40px;height:40px;border:0;border-radius:50%;background:transparent;color:inherit;cursor:pointer;display:grid;place-items:center;padding:0;}",
    ".icon-btn:hover{background:rgba(255,255,255,.16);}",
    ".icon-btn svg{width:22px;height:22px;fill:none;stroke:currentColor;stroke-width:2.2;stroke-linecap:round;stroke-linejoin:round;}",
    ".status{padding:6px 16px;font-size:13px;background:#fef3c7;color:#78350f;border-bottom:1px solid #fde68a;}",
    ".log{flex:1;overflow-y:auto;padding:16px 14px 8px;background:#f5f6f8;display:flex;flex-direction:column;gap:4px;overscroll-behavior:contain;}",
    ".intro,.bubble,.subtitle,.title,.sender{unicode-bidi:plaintext;}",
    ".intro{align-self:stretch;background:#fff;border:1px solid #e5e7eb;border-radius:14px;padding:12px 14px;margin-bottom:10px;white-space:pre-wrap;overflow-wrap:anywhere;}",
    ".msgs,.pending{display:flex;flex-direction:column;gap:4px;}",
    ".msg{display:flex;flex-direction:column;align-items:flex-start;gap:6px;max-width:86%;margin-top:2px;}",
    ".msg.user{align-self:flex-end;align-items:flex-end;}",
    ".msg.wide{max-width:100%;align-self:stretch;}",
    ".msg.system{align-self:center;max-width:100%;font-size:12px;color:#4b5563;margin:8px 0;text-align:center;}",
    ".sender{font-size:12px;font-weight:600;color:#4b5563;margin-block:8px -2px;margin-inline:4px 0;display:flex;align-items:center;gap:6px;}",
    ".sender-avatar{width:20px;height:20px;border-radius:50%;object-fit:cover;flex:none;}",
    ".bubble{padding:9px 13px;border-radius:18px;border-end-start-radius:6px;background:#fff;border:1px solid #e5e7eb;white-space:pre-wrap;overflow-wrap:anywhere;max-width:100%;}",
    ".user .bubble{border-radius:18px;border-end-end-radius:6px;background:var(--bc-accent);color:var(--bc-on-accent);border-color:transparent;}",
    ".bubble a{color:var(--bc-ink);text-decoration:underline;}",
    ".user .bubble a{color:inherit;}",
    ".meta{font-size:11.5px;color:#6b7280;margin:0 4px;}",
    ".meta.failed{color:#b91c1c;}",
    ".actions{display:flex;flex-wrap:wrap;gap:6px;}",
    ".btn{display:inline-flex;align-items:center;justify-content:center;gap:6px;min-height:38px;padding:7px 15px;border-radius:19px;border:1.5px solid var(--bc-ink);background:#fff;color:var(--bc-ink);font-weight:600;font-size:14px;line-height:1.2;text-decoration:none;cursor:pointer;}",
    ".btn:hover{background:#f3f4f6;}",
    ".btn[disabled]{opacity:.55;cursor:default;}",
    // Spent actions stay focusable (aria-disabled, with the reason as their description).
    ".btn.spent{border-style:dashed;border-color:#9ca3af;color:#4b5563;background:#f9fafb;cursor:not-allowed;}",
    ".btn.spent.done{border-style:solid;border-color:#15803d;color:#166534;background:#f0fdf4;}",
    ".btn svg{width:16px;height:16px;fill:none;stroke:currentColor;stroke-width:2.5;stroke-linecap:round;stroke-linejoin:round;flex:none;}",
    ".btn:not(.done) .check{display:none;}",
    ".media{display:block;max-width:260px;width:100%;height:auto;border-radius:14px;background:#e5e7eb;border:1px solid #e5e7eb;}",
    ".missing{color:#6b7280;font-style:italic;}",
    ".gif{position:relative;display:block;width:260px;max-width:100%;min-height:56px;}",
    ".gif canvas,.gif img{display:block;width:100%;height:auto;max-height:320px;object-fit:contain;border-radius:14px;background:#e5e7eb;}",
    ".gif .play{position:absolute;inset-inline-start:8px;bottom:8px;min-height:32px;padding:4px 12px;white-space:nowrap;font-size:13px;border-radius:16px;border:0;background:rgba(17,24,39,.78);color:#fff;cursor:pointer;}",
    ".carousel{display:flex;gap:10px;overflow-x:auto;scroll-snap-type:x mandatory;padding:2px 2px 10px;width:100%;scroll-behavior:smooth;}",
    ".carousel-wrap{width:100%;}",
    ".carousel-nav{display:flex;align-items:center;justify-content:center;gap:10px;font-size:12px;color:#4b5563;}",
    ".carousel-nav button{width:32px;height:32px;border-radius:50%;border:1.5px solid var(--bc-ink);background:#fff;color:var(--bc-ink);font-size:16px;line-height:1;cursor:pointer;display:grid;place-items:center;padding:0;}",
    ".carousel-nav button:disabled{opacity:.35;cursor:default;}",
    // Arrows for pointers that cannot swipe; on touch screens the position alone.
    "@media (hover:none),(pointer:coarse){.carousel-nav button{display:none;}}",
    "@media (prefers-reduced-motion:reduce){.carousel{scroll-behavior:auto;}}",
    ".card{flex:0 0 224px;scroll-snap-align:start;background:#fff;border:1px solid #e5e7eb;border-radius:14px;overflow:hidden;display:flex;flex-direction:column;}",
    ".card img{display:block;width:100%;height:120px;object-fit:cover;background:#e5e7eb;}",
    ".card-body{padding:10px 12px;flex:1;}",
    ".card-title{margin:0;font-size:15px;font-weight:650;}",
    ".card-sub{margin:3px 0 0;font-size:13px;color:#4b5563;}",
    ".card-buttons{display:flex;flex-direction:column;border-top:1px solid #e5e7eb;}",
    ".card-buttons .btn{border:0;border-radius:0;min-height:42px;}",
    ".card-buttons .btn+.btn{border-top:1px solid #e5e7eb;}",
    ".replies{display:flex;flex-wrap:wrap;justify-content:flex-end;gap:8px;padding:8px 0 4px;}",
    ".select{min-height:40px;max-width:100%;padding-block:8px;padding-inline:12px 36px;border-radius:12px;border:1.5px solid var(--bc-ink);background:#fff;color:#111827;font-size:14px;}",
    ".typing{display:flex;align-items:center;gap:8px;font-size:13px;color:#4b5563;padding:6px 4px;}",
    ".dots{display:inline-flex;gap:3px;padding:9px 11px;background:#fff;border:1px solid #e5e7eb;border-radius:14px;}",
    ".dots i{width:6px;height:6px;border-radius:50%;background:#9ca3af;animation:bc-blink 1.2s infinite ease-in-out;}",
    ".dots i:nth-child(2){animation-delay:.15s}.dots i:nth-child(3){animation-delay:.3s}",
    "@keyframes bc-blink{0%,80%,100%{opacity:.3}40%{opacity:1}}",
    "@media (prefers-reduced-motion:reduce){.dots i{animation:none}.launcher{transition:none}}",
    ".composer{display:flex;align-items:flex-end;gap:8px;padding:10px 12px 12px;border-top:1px solid #e5e7eb;background:#fff;}",
    ".composer textarea{flex:1;resize:none;min-height:42px;max-height:128px;padding:10px 14px;border:1.5px solid #d1d5db;border-radius:21px;background:#fff;color:#111827;font-size:15px;line-height:1.4;}",
    ".composer textarea:focus{border-color:var(--bc-ink);outline:2px solid var(--bc-ink);outline-offset:1px;}",
    ".send{flex:0 0 42px;width:42px;height:42px;border:0;border-radius:50%;background:var(--bc-accent);color:var(--bc-on-accent);display:grid;place-items:center;cursor:pointer;padding:0;}",
    ".send svg{width:20px;height:20px;fill:currentColor;}",
    "[dir=rtl] .send svg{transform:scaleX(-1);}",
    ".time{font-size:11px;color:#4b5563;margin:0 4px;}",
    ".attach{flex:0 0 42px;width:42px;height:42px;border:0;border-radius:50%;background:transparent;color:#4b5563;display:grid;place-items:center;cursor:pointer;padding:0;}",
    ".attach:hover{background:#f3f4f6;color:#111827;}",
    ".attach svg{width:22px;height:22px;fill:none;stroke:currentColor;stroke-width:2;stroke-linecap:round;stroke-linejoin:round;}",
    ".tray{list-style:none;margin:0;padding:8px 12px 0;display:flex;flex-direction:column;gap:6px;background:#fff;border-top:1px solid #e5e7eb;max-height:40%;overflow-y:auto;}",
    ".tray+.composer{border-top:0;}",
    ".upload{display:flex;align-items:center;gap:10px;padding-block:6px;padding-inline:8px 6px;border:1px solid #e5e7eb;border-radius:12px;background:#f9fafb;min-width:0;}",
    ".upload[data-state=failed]{border-color:#fca5a5;background:#fef2f2;}",
    ".upload-thumb{flex:0 0 40px;width:40px;height:40px;border-radius:8px;background:#e5e7eb;color:#4b5563;display:grid;place-items:center;overflow:hidden;}",
    ".upload-thumb img{width:100%;height:100%;object-fit:cover;display:block;}",
    ".upload-thumb svg,.file-icon svg{width:20px;height:20px;fill:none;stroke:currentColor;stroke-width:2;stroke-linecap:round;stroke-linejoin:round;}",
    ".upload-body{flex:1;min-width:0;display:flex;flex-direction:column;gap:3px;}",
    ".upload-name{font-size:14px;font-weight:600;white-space:nowrap;overflow:hidden;text-overflow:ellipsis;}",
    ".upload-info{font-size:12.5px;color:#4b5563;overflow-wrap:anywhere;}",
    ".upload[data-state=failed] .upload-info{color:#b91c1c;}",
    ".upload progress{width:100%;height:6px;border:0;border-radius:3px;overflow:hidden;background:#e5e7eb;accent-color:var(--bc-accent);-webkit-appearance:none;appearance:none;}",
    ".upload progress::-webkit-progress-bar{background:#e5e7eb;}",
    ".upload progress::-webkit-progress-value{background:var(--bc-accent);}",
    ".upload-retry{min-height:34px;padding:4px 12px;border-radius:17px;border:1.5px solid var(--bc-ink);background:#fff;color:var(--bc-ink);font-weight:600;font-size:13px;cursor:pointer;}",
    ".upload-remove{flex:0 0 36px;width:36px;height:36px;border:0;border-radius:50%;background:transparent;color:#4b5563;cursor:pointer;display:grid;place-items:center;padding:0;}",
    ".upload-remove:hover{background:#e5e7eb;color:#111827;}",
    ".upload-remove svg{width:18px;height:18px;fill:none;stroke:currentColor;stroke-width:2.2;stroke-linecap:round;}",
    ".dropzone{position:absolute;inset:8px;z-index:4;border:2.5px dashed var(--bc-ink);border-radius:14px;background:rgba(255,255,255,.94);display:grid;place-items:center;font-weight:650;font-size:16px;color:#111827;pointer-events:none;}",
    ".file-card{display:flex;align-items:center;gap:10px;padding-block:10px;padding-inline:10px 14px;border-radius:14px;background:#fff;border:1px solid #e5e7eb;max-width:100%;min-width:0;color:#111827;}",
    ".file-icon{flex:0 0 36px;width:36px;height:36px;border-radius:8px;background:#eef2ff;color:#374151;display:grid;place-items:center;}",
    ".file-text{display:flex;flex-direction:column;min-width:0;}",
    ".file-card a,.media-name{color:var(--bc-ink);font-weight:600;text-decoration:underline;overflow-wrap:anywhere;}",
    ".file-size{font-size:12px;color:#6b7280;}",
    ".image-link{display:block;border-radius:14px;max-width:260px;}",
    // A thumbnail: whole (not cropped) and at most 240 px tall; a click shows it full size.
    ".image-link .media{width:auto;max-height:240px;}",
    ".player{display:flex;flex-direction:column;gap:4px;max-width:100%;}",
    ".player video{display:block;width:260px;max-width:100%;max-height:320px;border-radius:14px;background:#111827;}",
    ".player audio{display:block;width:260px;max-width:100%;}",
    ".media-name{font-size:12.5px;margin:0 4px;}",
    ".rating{align-self:stretch;background:#fff;border:1px solid #e5e7eb;border-radius:14px;padding:12px 14px;margin:10px 0 4px;display:flex;flex-direction:column;gap:10px;}",
    ".rating-q{margin:0;font-weight:650;font-size:14.5px;}",
    ".stars{display:flex;gap:4px;}",
    ".star{width:40px;height:40px;border:0;border-radius:10px;background:transparent;color:#6b7280;cursor:pointer;display:grid;place-items:center;padding:0;}",
    ".star:hover{background:#f3f4f6;color:#b45309;}",
    ".star svg{width:28px;height:28px;fill:none;stroke:currentColor;stroke-width:1.6;stroke-linejoin:round;}",
    ".star.on{color:#d97706;}.star.on svg{fill:currentColor;}",
    ".rating textarea{resize:vertical;min-height:60px;padding:8px 12px;border:1.5px solid #d1d5db;border-radius:12px;font-size:14px;}",
    ".rating textarea:focus{border-color:var(--bc-ink);outline:none;}",
    ".rating .btn{align-self:flex-start;}",
    ".rating-thanks{margin:0;color:#065f46;font-weight:600;font-size:14px;}",
    ".email-row{display:flex;gap:8px;flex-wrap:wrap;}",
    ".email-row input{flex:1;min-width:160px;min-height:40px;padding:8px 12px;border:1.5px solid #d1d5db;border-radius:12px;font-size:14px;}",
    ".email-row input:focus{border-color:var(--bc-ink);outline:none;}",
    ".foot{padding:0 12px 8px;background:#fff;font-size:11px;color:#6b7280;text-align:center;}",
    ".veil{position:absolute;inset:0;background:rgba(17,24,39,.45);display:flex;align-items:flex-end;z-index:5;}",
    ".sheet{width:100%;height:80%;background:#fff;border-radius:16px 16px 0 0;display:flex;flex-direction:column;overflow:hidden;box-shadow:0 -8px 24px rgba(17,24,39,.2);}",
    ".sheet.compact{height:50%}.sheet.tall{height:80%}.sheet.full{height:100%;border-radius:0}",
    ".sheet-head{display:flex;align-items:center;gap:8px;padding-block:10px;padding-inline:16px 10px;border-bottom:1px solid #e5e7eb;}",
    ".sheet-title{flex:1;margin:0;font-size:15px;font-weight:650;white-space:nowrap;overflow:hidden;text-overflow:ellipsis;}",
    ".sheet-tab{min-height:36px;padding:6px 12px;border-radius:18px;border:0;background:transparent;color:var(--bc-ink);font-weight:600;font-size:13px;cursor:pointer;}",
    ".sheet-note{margin:24px 20px;font-size:14px;line-height:1.5;color:#374151;}",
    ".sheet-close{min-height:36px;padding:6px 14px;border-radius:18px;border:1.5px solid #d1d5db;background:#fff;font-weight:600;font-size:14px;cursor:pointer;}",
    ".sheet iframe{flex:1;width:100%;border:0;background:#fff;}",
    ".sentinel{position:absolute;width:1px;height:1px;overflow:hidden;}",
    // Touch (last, so it wins over the rules above): 16 px text in fields (no zoom on focus) and 44 px targets.
    "@media (pointer:coarse){.composer textarea,.select{font-size:16px;}.btn,.select,.sheet-close,.sheet-tab{min-height:44px;}.icon-btn,.send,.attach{flex-basis:44px;width:44px;height:44px;}}",
  ].join("\n");

  // --- the view ------------------------------------------------------------------------

  function isGif(image) {
    if (image.content_type === "image/gif") return true;
    try { return /\.gif$/i.test(new URL(image.url).pathname); } catch (e) { return false; }
  }

  /** The web view id rule of docs/webviews.md: the part's id, else its position. */
  /** The stored event a close adds to the conversation (its fixed text, docs/webviews.md). */
  function isWebviewEvent(m) {
    var part = m.actor.type === "system" && (m.message_parts || [])[0];
    return !!(part && part.text && part.text.content === "Web view closed");
  }

  function hasWebview(m) {
    return (m.message_parts || []).some(function (part) {
      return part.web_view || (part.carousel && (part.carousel.cards || []).some(function (card) {
        return (card.buttons || []).some(function (button) { return button.web_view; });
      }));
    });
  }

  function webviewId(body, index, card, button) {
    if (body.id) return body.id;
    return card === undefined ? "wv_" + index : "wv_" + index + "_" + card + "_" + button;
  }

  function View(app) {
    this.app = app;
    this.messages = {}; // seq -> message
    this.order = [];
    this.pendingNodes = {};
    this.userReadSeq = 0;
    this.agentReadSeq = 0;
    this.isOpen = false;
    this.openedOnce = false;
    this.sheet = null;
    this.typingTimer = null;
    this.status = "idle";
    this.name = "";
    this.frames = {}; // seq -> the frame it came in (re-rendered when the language changes)
    this.unreadCount = 0;
    this.settings = {};
    this.conversation = null;
    this.outcomes = {}; // "message_id/webview_id" -> how the customer last closed it (submitted wins)
    this.eventOutcomes = {}; // seq of a "Web view closed" event -> {status, message_id, webview_id}
    this.build();
  }

  View.prototype.build = function () {
    var self = this;
    this.host = document.createElement("backchannel-widget");
    this.shadow = this.host.attachShadow({ mode: "open" });
    this.shadow.appendChild(el("style", { text: CSS }));
    this.badge = el("span", { class: "badge", "aria-hidden": "true", hidden: true });
    this.launcher = el("button", {
      type: "button", class: "launcher", part: "launcher",
      "aria-expanded": "false", "aria-controls": "bc-panel",
      onclick: function () { self.app.open(); },
    }, [svg(ICON_CHAT), this.badge]);
    this.unreadText = el("span", { class: "sentinel", role: "status" });
    this.titleNode = el("h2", { class: "title", id: "bc-title" });
    this.subtitle = el("p", { class: "subtitle" });
    this.avatar = el("div", { class: "avatar", "aria-hidden": "true", text: "" });
    var minimize = this.minimize = el("button", {
      type: "button", class: "icon-btn",
      onclick: function () { self.app.close(); },
    }, [svg(ICON_DOWN)]);
    this.head = el("div", { class: "head", part: "header" }, [this.avatar, el("div", { class: "titles" }, [this.titleNode, this.subtitle]), minimize]);
    this.statusBar = el("div", { class: "status", role: "status", hidden: true });
    this.intro = el("div", { class: "intro", hidden: true });
    this.msgs = el("div", { class: "msgs" });
    this.pending = el("div", { class: "pending" });
    this.typing = el("div", { class: "typing", hidden: true });
    this.replies = el("div", { class: "replies", hidden: true });
    this.rating = el("div", { class: "rating", role: "group", hidden: true });
    this.emailCard = el("form", { class: "rating email-ask", hidden: true, novalidate: true });
    this.askEmail = false; // the server says: offline replies by email are on, and none is on file
    this.sentOne = false; // the customer wrote in this conversation (the question comes after)
    this.ratingDraft = null; // {score, stage: "comment" | "done"} while the customer rates
    this.log = el("div", { class: "log", role: "log", "aria-live": "polite", tabindex: "0",
      // Follow new messages only while the customer is at the bottom: measured on scroll,
      // before new content grows the log (a tall carousel would otherwise look like "scrolled up").
      onscroll: function () { self.stick = self.log.scrollHeight - self.log.scrollTop - self.log.clientHeight < 48; } },
      [this.intro, this.msgs, this.pending, this.typing, this.replies, this.rating, this.emailCard]);
    this.stick = true;
    // Why a past action is spent: the description of every such button (aria-describedby).
    this.whyDone = el("span", { id: "bc-why-done", hidden: true });
    this.whyHuman = el("span", { id: "bc-why-human", hidden: true });
    // Images load after their message is placed; keep the newest message in view as they grow.
    this.log.addEventListener("load", function (e) { if (e.target.tagName === "IMG") self.scrollDown(false); }, true);
    this.input = el("textarea", {
      rows: "1", maxlength: "4096",
      oninput: function () { self.autosize(); self.app.userTyping(); },
      onkeydown: function (e) {
        if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); self.submit(); }
      },
      // A pasted screenshot or copied file is attached; pasted text still goes in as text.
      onpaste: function (e) {
        var data = e.clipboardData;
        if (!data || !data.files || !data.files.length) return;
        self.addFiles(data.files);
        if (Array.prototype.indexOf.call(data.types || [], "text/plain") < 0) e.preventDefault();
      },
    });
    this.fileInput = el("input", {
      type: "file", multiple: true, hidden: true, tabindex: "-1", "aria-hidden": "true",
      onchange: function () { self.addFiles(self.fileInput.files); self.fileInput.value = ""; },
    });
    this.attachButton = el("button", {
      type: "button", class: "attach",
      onclick: function () { self.fileInput.click(); },
    }, [svg(ICON_CLIP)]);
    this.sendButton = el("button", { type: "submit", class: "send" }, [svg(ICON_SEND)]);
    this.composer = el("form", {
      class: "composer", onsubmit: function (e) { e.preventDefault(); self.submit(); },
    }, [this.attachButton, this.fileInput, this.input, this.sendButton]);
    this.uploads = [];
    this.sendAfterUpload = false;
    this.tray = el("ul", { class: "tray", hidden: true });
    // Upload progress and errors for screen readers: a live region without a role, so the
    // panel keeps one "status" (the connection bar).
    this.announcer = el("span", { class: "sentinel announcer", "aria-live": "polite", "aria-atomic": "true" });
    this.dropzone = el("div", { class: "dropzone", "aria-hidden": "true", hidden: true });
    this.foot = el("div", { class: "foot" });
    this.panel = el("section", {
      class: "panel", id: "bc-panel", part: "panel", role: "dialog", "aria-labelledby": "bc-title", hidden: true,
    }, [this.head, this.statusBar, this.log, this.tray, this.composer, this.foot, this.dropzone, this.announcer,
      this.whyDone, this.whyHuman]);
    // Files dragged anywhere over the panel are attached. dragover repeats while the pointer
    // stays, so the hint hides shortly after the last one (no enter/leave counting in a shadow tree).
    var dropTimer = null;
    function dragsFiles(e) { return e.dataTransfer && Array.prototype.indexOf.call(e.dataTransfer.types || [], "Files") >= 0; }
    this.panel.addEventListener("dragover", function (e) {
      if (!dragsFiles(e) || self.sheet) return;
      e.preventDefault();
      e.dataTransfer.dropEffect = "copy";
      self.dropzone.hidden = false;
      clearTimeout(dropTimer);
      dropTimer = setTimeout(function () { self.dropzone.hidden = true; }, 200);
    });
    this.panel.addEventListener("drop", function (e) {
      if (!dragsFiles(e) || self.sheet) return;
      e.preventDefault();
      clearTimeout(dropTimer);
      self.dropzone.hidden = true;
      self.addFiles(e.dataTransfer.files);
      self.input.focus();
    });
    this.root = el("div", { class: "root", part: "root" }, [this.launcher, this.panel, this.unreadText]);
    this.shadow.appendChild(this.root);
    this.onKey = function (e) {
      self.trapTab(e);
      if (e.key !== "Escape") return;
      if (self.sheet) { e.preventDefault(); self.closeSheet("dismissed"); }
      else if (self.isOpen) { e.preventDefault(); self.app.close(); }
    };
    this.shadow.addEventListener("keydown", this.onKey);
    this.relabel();
    (document.body || document.documentElement).appendChild(this.host);
  };

  /** Every fixed string in the current language, the direction, and the messages again
   * (their times and labels): at start and whenever the language changes. */
  View.prototype.relabel = function () {
    var self = this;
    this.root.setAttribute("lang", lang);
    this.root.setAttribute("dir", RTL[lang] ? "rtl" : "ltr");
    this.launcher.setAttribute("aria-label", t("open"));
    this.minimize.setAttribute("aria-label", t("minimize"));
    this.log.setAttribute("aria-label", t("log"));
    this.input.setAttribute("aria-label", t("message"));
    this.input.setAttribute("placeholder", t("placeholder"));
    this.attachButton.setAttribute("aria-label", t("attach"));
    this.attachButton.setAttribute("title", t("attach"));
    this.sendButton.setAttribute("aria-label", t("send"));
    this.tray.setAttribute("aria-label", t("files_to_send"));
    this.dropzone.textContent = t("drop");
    this.foot.textContent = t("powered");
    this.whyDone.textContent = t("spent_done");
    this.whyHuman.textContent = t("spent_human");
    this.titleNode.textContent = this.name || t("chat");
    this.renderHeader();
    this.setStatus(this.status);
    var frames = this.order.map(function (seq) { return self.frames[seq]; });
    this.messages = {};
    this.order = [];
    this.msgs.textContent = "";
    frames.forEach(function (frame) { self.addMessage(frame, true); });
    this.renderSeen();
    this.updateUnread();
  };

  /** The line under the title: resolved, who is answering, away (outside business hours),
   * waiting for a teammate (handed over, nobody has written yet) or the reply time. The
   * assignee alone is not "talking to" the customer: only an agent's reply says so. */
  View.prototype.renderHeader = function () {
    var conv = this.conversation, settings = this.settings;
    var away = !isOpen(settings.business_hours);
    var human = conv && conv.status !== "resolved" && conv.handled_by === "human";
    var agent = human ? this.answeringAgent() : null;
    this.subtitle.textContent = conv && conv.status === "resolved" ? t("resolved") :
      agent ? t("talking_to", { name: agent }) :
      away ? settings.away_message || t("away") : human ? t("waiting_teammate") : t("reply_time");
    this.subtitle.title = this.subtitle.textContent;
    this.head.classList.toggle("away", away);
    this.renderRating();
    this.renderEmailAsk(away);
  };

  /** Outside business hours, or while the conversation waits for a human: "Leave your email". */
  View.prototype.renderEmailAsk = function (away) {
    var self = this, conv = this.conversation, card = this.emailCard;
    var waiting = conv && conv.status !== "resolved" && conv.handled_by === "human" && !conv.assignee;
    var show = this.askEmail && this.sentOne && (away || waiting) && !(conv && conv.status === "resolved");
    if (this.emailSaved) show = true;
    var key = (show ? "on" : "off") + ":" + lang + ":" + (this.emailSaved || "");
    if (key === this.emailKey) return;
    this.emailKey = key;
    card.textContent = "";
    card.hidden = !show;
    if (!show) return;
    if (this.emailSaved) {
      card.appendChild(el("p", { class: "rating-thanks", role: "status", text: t("email_saved", { email: this.emailSaved }) }));
      return;
    }
    var input = el("input", { type: "email", dir: "ltr", autocomplete: "email", "aria-label": t("email"), placeholder: t("email"), maxlength: "320" });
    var problem = el("p", { class: "meta failed", hidden: true });
    card.appendChild(el("p", { class: "rating-q", text: t("email_ask") }));
    card.appendChild(el("div", { class: "email-row" }, [input, el("button", { type: "submit", class: "btn", text: t("notify") })]));
    card.appendChild(problem);
    card.onsubmit = function (e) {
      e.preventDefault();
      var email = input.value.trim();
      if (!/^[^@\s]+@[^@\s]+\.[^@\s]{2,}$/.test(email)) {
        problem.textContent = t("email_invalid");
        problem.hidden = false;
        input.setAttribute("aria-invalid", "true");
        input.focus();
        return;
      }
      self.app.saveEmail(email);
    };
    this.scrollDown(false);
  };

  /** After a resolve (ratings on): "How was this conversation?", five buttons, then a comment. */
  View.prototype.renderRating = function () {
    var self = this, conv = this.conversation, draft = this.ratingDraft;
    if (!conv || conv.status !== "resolved") this.ratingDraft = draft = null;
    var stage = !conv || conv.status !== "resolved" || this.settings.ratings_enabled === false ? "" :
      draft ? draft.stage : conv.rating ? "done" : "ask";
    var key = stage + ":" + lang + ":" + (draft ? draft.score : conv && conv.rating ? conv.rating.score : 0);
    if (key === this.ratingKey) return;
    this.ratingKey = key;
    var box = this.rating;
    box.textContent = "";
    box.hidden = !stage;
    if (!stage) return;
    var score = draft ? draft.score : conv.rating ? conv.rating.score : 0;
    var question = el("p", { class: "rating-q", id: "bc-rate-q", text: t("rate_question") });
    box.setAttribute("aria-labelledby", "bc-rate-q");
    box.appendChild(question);
    var stars = el("div", { class: "stars" });
    [1, 2, 3, 4, 5].forEach(function (n) {
      stars.appendChild(el("button", {
        type: "button", class: "star" + (n <= score ? " on" : ""), "aria-label": t("rate_n", { n: n }),
        "aria-pressed": String(n === score), disabled: stage === "done",
        onclick: function () {
          self.ratingDraft = { score: n, stage: "comment" };
          self.app.rate(n);
          self.renderRating();
          if (self.ratingComment) self.ratingComment.focus();
        },
      }, [svg(ICON_STAR)]));
    });
    box.appendChild(stars);
    this.ratingComment = null;
    if (stage === "comment") {
      var comment = this.ratingComment = el("textarea", { rows: "2", maxlength: "1000", "aria-label": t("rate_comment"), placeholder: t("rate_comment") });
      box.appendChild(comment);
      box.appendChild(el("button", { type: "button", class: "btn", text: t("rate_send"), onclick: function () {
        var text = comment.value.trim();
        if (text) self.app.rate(self.ratingDraft.score, text);
        self.ratingDraft.stage = "done";
        self.renderRating();
        self.announce(t("rate_thanks"));
      } }));
    } else if (stage === "done") {
      box.appendChild(el("p", { class: "rating-thanks", text: t("rate_thanks") }));
    }
    this.scrollDown(false);
  };

  View.prototype.autosize = function () {
    this.input.style.height = "auto";
    this.input.style.height = Math.min(this.input.scrollHeight + 3, 128) + "px";
  };

  /** Send what is typed and every uploaded file as one message. While a file is still
   * uploading, the message waits for it (and goes as soon as every upload is done). */
  View.prototype.submit = function () {
    var text = this.input.value.trim();
    var states = this.uploads.map(function (u) { return u.state; });
    if (states.indexOf("failed") >= 0) {
      this.sendAfterUpload = false;
      this.announce(t("fix_failed"));
      return;
    }
    if (states.indexOf("uploading") >= 0) {
      this.sendAfterUpload = true;
      this.announce(t("send_after"));
      this.trayInfo();
      return;
    }
    this.sendAfterUpload = false;
    var files = this.uploads.map(function (u) { return u.result; });
    if (!text && !files.length) return;
    this.input.value = "";
    this.autosize();
    this.clearUploads();
    this.app.sendMessage(text, files, null);
    this.input.focus();
  };

  // -- attachments: the tray of files to send, each uploaded at once ------------------------

  View.prototype.announce = function (text) {
    // Cleared first so the same words twice are announced twice.
    var node = this.announcer;
    node.textContent = "";
    setTimeout(function () { node.textContent = text; }, 30);
  };

  View.prototype.addFiles = function (list) {
    var self = this;
    var files = Array.prototype.slice.call(list || []);
    if (!files.length) return;
    var room = MAX_UPLOADS - this.uploads.length;
    if (files.length > room) {
      this.announce(t("max_files", { n: MAX_UPLOADS }));
      files = files.slice(0, Math.max(0, room));
    }
    files.forEach(function (file) { self.addUpload(file); });
  };

  View.prototype.addUpload = function (file) {
    var self = this;
    var name = file.name || "file";
    var item = { file: file, name: name, state: "uploading", result: null, job: null, thumbUrl: null };
    var thumb = el("span", { class: "upload-thumb", "aria-hidden": "true" }, [svg(ICON_FILE)]);
    if (/^image\/(png|jpeg|gif|webp)$/.test(file.type) && window.URL && URL.createObjectURL) {
      // A preview from the customer's own bytes; a host page whose CSP forbids blob: images
      // keeps the file icon.
      item.thumbUrl = URL.createObjectURL(file);
      var preview = el("img", { src: item.thumbUrl, alt: "", onload: function () { thumb.replaceChildren(preview); } });
    }
    item.info = el("span", { class: "upload-info" });
    item.progress = el("progress", { max: "100", value: "0", "aria-label": t("uploading_name", { name: name }) });
    item.retry = el("button", {
      type: "button", class: "upload-retry", text: t("retry"), "aria-label": t("retry_name", { name: name }), hidden: true,
      onclick: function () { self.startUpload(item); item.remove.focus(); },
    });
    item.remove = el("button", {
      type: "button", class: "upload-remove", "aria-label": t("remove_name", { name: name }), title: t("remove"),
      onclick: function () { self.removeUpload(item); },
    }, [svg(ICON_X)]);
    item.node = el("li", { class: "upload" }, [
      thumb,
      el("span", { class: "upload-body" }, [el("span", { class: "upload-name", text: name, title: name }), item.info, item.progress]),
      item.retry, item.remove,
    ]);
    this.uploads.push(item);
    this.tray.appendChild(item.node);
    this.tray.hidden = false;
    this.startUpload(item);
    this.scrollDown(false);
  };

  View.prototype.startUpload = function (item) {
    var self = this;
    item.state = "uploading";
    item.node.setAttribute("data-state", "uploading");
    item.retry.hidden = true;
    item.progress.hidden = false;
    item.progress.value = 0;
    item.info.textContent = t("uploading_pct", { n: 0 });
    this.announce(t("uploading_name", { name: item.name }) + ".");
    item.job = this.app.upload(item.file, function (fraction) {
      if (item.state !== "uploading") return;
      // 100% only once the server has said yes: the last bytes still need its answer.
      var percent = Math.min(99, Math.floor(fraction * 100));
      item.progress.value = percent;
      item.info.textContent = t("uploading_pct", { n: percent });
      self.trayInfo();
    }, function (error, result, final) {
      item.job = null;
      if (self.uploads.indexOf(item) < 0) return;
      if (error) {
        item.state = "failed";
        item.node.setAttribute("data-state", "failed");
        item.progress.hidden = true;
        item.retry.hidden = final; // Remove is the way out for a file the server will never take
        item.info.textContent = t("not_uploaded", { reason: error });
        self.sendAfterUpload = false;
        self.announce(t("not_uploaded_name", { name: item.name, reason: error }));
      } else {
        item.state = "ready";
        item.result = result;
        item.node.setAttribute("data-state", "ready");
        item.progress.value = 100;
        item.progress.hidden = true;
        item.info.textContent = t("ready", { size: formatSize(result.size) });
        self.announce(t("ready_name", { name: item.name }));
      }
      self.uploadSettled();
    });
  };

  /** While a message waits for its files, the uploading ones say so. */
  View.prototype.trayInfo = function () {
    var self = this;
    this.uploads.forEach(function (item) {
      if (item.state === "uploading" && self.sendAfterUpload) {
        item.info.textContent = t("sends_when_done", { n: item.progress.value });
      }
    });
  };

  View.prototype.uploadSettled = function () {
    var busy = this.uploads.some(function (u) { return u.state === "uploading"; });
    if (this.sendAfterUpload && !busy) this.submit();
  };

  View.prototype.removeUpload = function (item) {
    var index = this.uploads.indexOf(item);
    if (index < 0) return;
    if (item.job) item.job.abort();
    if (item.thumbUrl) URL.revokeObjectURL(item.thumbUrl);
    this.uploads.splice(index, 1);
    item.node.remove();
    this.tray.hidden = !this.uploads.length;
    this.announce(t("removed", { name: item.name }));
    // Focus stays near: the next file's Remove, else the message box.
    var next = this.uploads[index] || this.uploads[index - 1];
    if (next) next.remove.focus(); else this.input.focus();
    this.uploadSettled();
  };

  View.prototype.clearUploads = function () {
    this.uploads.forEach(function (item) {
      if (item.job) item.job.abort();
      if (item.thumbUrl) URL.revokeObjectURL(item.thumbUrl);
    });
    this.uploads = [];
    this.tray.textContent = "";
    this.tray.hidden = true;
  };

  View.prototype.show = function (open) {
    this.isOpen = open;
    this.panel.hidden = !open;
    // One control at a time: the launcher hides while the panel (with its own
    // "Minimize chat") is open, so no two buttons ever share a name.
    this.launcher.hidden = open;
    this.launcher.setAttribute("aria-expanded", String(open));
    if (open) {
      this.openedOnce = true;
      this.scrollDown(true);
      this.focusComposer();
      this.markRead();
      this.lockPage(true);
    } else {
      this.lockPage(false);
      this.launcher.focus();
    }
  };

  /** Where focus goes when the chat opens or a choice is sent: the composer, except on touch
   *  screens, where focusing it would pop the keyboard over the chat: the log takes it there. */
  View.prototype.focusComposer = function () {
    if (window.matchMedia && window.matchMedia("(pointer: coarse)").matches) this.log.focus({ preventScroll: true });
    else this.input.focus();
  };

  /** The full-screen panel (phones) owns the screen: the page behind does not scroll under it,
   *  and the panel follows the visual viewport as the on-screen keyboard comes and goes. */
  View.prototype.fullScreen = function () {
    return !!(window.matchMedia && window.matchMedia("(max-width:480px),(max-height:500px) and (pointer:coarse)").matches);
  };

  View.prototype.lockPage = function (on) {
    var root = document.documentElement;
    var vv = window.visualViewport;
    var self = this;
    if (on && this.fullScreen() && this.savedOverflow === undefined) {
      this.savedOverflow = root.style.overflow;
      root.style.overflow = "hidden";
      if (vv && !this.onViewport) {
        this.onViewport = function () {
          if (!self.isOpen || !self.fullScreen()) { self.panel.style.height = ""; self.panel.style.top = ""; return; }
          self.panel.style.height = vv.height + "px";
          self.panel.style.top = vv.offsetTop + "px";
        };
        vv.addEventListener("resize", this.onViewport);
        vv.addEventListener("scroll", this.onViewport);
        this.onViewport();
      }
    } else if (!on && this.savedOverflow !== undefined) {
      root.style.overflow = this.savedOverflow;
      this.savedOverflow = undefined;
      if (vv && this.onViewport) {
        vv.removeEventListener("resize", this.onViewport);
        vv.removeEventListener("scroll", this.onViewport);
        this.onViewport = null;
      }
      this.panel.style.height = "";
      this.panel.style.top = "";
    }
  };

  /** Tab and Shift+Tab stay inside the full-screen panel: the page behind it is out of sight. */
  View.prototype.trapTab = function (e) {
    if (e.key !== "Tab" || !this.isOpen || this.sheet || !this.fullScreen()) return;
    var items = Array.prototype.filter.call(
      this.panel.querySelectorAll("button, textarea, select, a[href], input, [tabindex]:not([tabindex='-1'])"),
      function (node) { return !node.disabled && node.getClientRects().length > 0 && !node.closest("[inert]"); });
    if (!items.length) return;
    var active = this.shadow.activeElement;
    var first = items[0], last = items[items.length - 1];
    if (e.shiftKey && (active === first || !this.panel.contains(active))) { e.preventDefault(); last.focus(); }
    else if (!e.shiftKey && (active === last || !this.panel.contains(active))) { e.preventDefault(); first.focus(); }
  };

  View.prototype.applySettings = function (settings) {
    if (!settings) return;
    if (settings.theme_color && /^#[0-9a-f]{6}$/i.test(settings.theme_color)) {
      var onAccent = readableOn(settings.theme_color);
      this.root.style.setProperty("--bc-accent", settings.theme_color);
      this.root.style.setProperty("--bc-on-accent", onAccent);
      // Links and outlines on white need the accent only when it is dark enough to read.
      this.root.style.setProperty("--bc-ink", onAccent === "#ffffff" ? settings.theme_color : "#111827");
    }
    if (typeof settings.greeting === "string") {
      this.intro.textContent = settings.greeting;
      this.intro.hidden = !settings.greeting;
    }
    if (settings.name) {
      this.name = settings.name;
      this.titleNode.textContent = settings.name;
      this.avatar.textContent = settings.name.trim().charAt(0).toUpperCase();
    }
    var self = this;
    ["locale", "away_message", "business_hours", "ratings_enabled"].forEach(function (key) {
      if (key in settings) self.settings[key] = settings[key];
    });
    this.app.settingsChanged(this.settings);
    this.renderHeader();
  };

  View.prototype.setStatus = function (status) {
    this.status = status;
    var text = status === "offline" ? t("offline") : status === "refused" ? t("refused") : "";
    this.statusBar.textContent = text;
    this.statusBar.hidden = !text;
    var self = this;
    Object.keys(this.pendingNodes).forEach(function (id) { self.pendingMeta(id); });
  };

  View.prototype.setConversation = function (conv) {
    if (!conv) return;
    if (this.conversationId && conv.id !== this.conversationId) this.reset();
    this.conversationId = conv.id;
    this.conversation = conv;
    this.renderHeader();
    this.renderSpent(this.msgs);
    this.renderReplies();
  };

  View.prototype.reset = function () {
    this.messages = {};
    this.frames = {};
    this.order = [];
    this.msgs.textContent = "";
    this.replies.hidden = true;
    this.userReadSeq = this.agentReadSeq = 0;
    this.conversation = null;
    this.sentOne = false;
    this.outcomes = {};
    this.eventOutcomes = {};
  };

  // -- messages ---------------------------------------------------------------------------

  View.prototype.addMessage = function (frame, again) {
    var m = frame.message;
    if (this.messages[m.seq]) return;
    this.messages[m.seq] = m;
    this.frames[m.seq] = frame;
    var node = this.renderMessage(m, frame.sender);
    node.setAttribute("data-seq", m.seq);
    var after = null;
    for (var i = this.order.length - 1; i >= 0; i--) {
      if (this.order[i] < m.seq) { after = this.order[i]; break; }
    }
    this.order.push(m.seq);
    this.order.sort(function (a, b) { return a - b; });
    var anchor = after === null ? this.msgs.firstChild : this.msgs.querySelector('[data-seq="' + after + '"]').nextSibling;
    this.msgs.insertBefore(node, anchor);
    if (m.client_message_id && this.pendingNodes[m.client_message_id]) {
      this.pendingNodes[m.client_message_id].remove();
      delete this.pendingNodes[m.client_message_id];
    }
    if (m.actor.type === "user" && !this.sentOne) { this.sentOne = true; this.renderHeader(); }
    if (m.actor.type === "agent" || m.actor.type === "bot") {
      this.renderJoined(m.seq);
      var later = this.order[this.order.indexOf(m.seq) + 1];
      if (later !== undefined) this.renderJoined(later); // a resumed gap may change the next line's
      this.renderHeader();
    }
    this.renderSpent(node);
    if (again) return; // a re-render in another language: nothing new to announce
    if (isWebviewEvent(m) || hasWebview(m)) this.app.webviewsChanged();
    if (m.actor.type !== "user" && m.actor.type !== "system") this.hideTyping();
    this.app.messageAdded(m);
    this.renderReplies();
    this.renderSeen();
    if (m.actor.type === "user") this.resumeAt = false;
    if (this.resumeAt && m.actor.type !== "system") {
      // The bot's first reply after a web view closed: show it from its start (its lead-in
      // and the top of a carousel), not scrolled past to the bottom.
      this.resumeAt = false;
      this.showFrom(node);
    } else {
      this.scrollDown(m.actor.type === "user");
    }
    if (this.isOpen) this.markRead(); else this.updateUnread();
  };

  /** The name of the agent answering now: the sender of the newest agent message that no bot
   * message follows. Null while only the bot has spoken since the handover. */
  View.prototype.answeringAgent = function () {
    for (var i = this.order.length - 1; i >= 0; i--) {
      var m = this.messages[this.order[i]];
      if (m.actor.type === "agent") return (this.frames[m.seq].sender || {}).name || t("someone");
      if (m.actor.type === "bot") return null;
    }
    return null;
  };

  /** "Alex joined" above an agent's message when the business's previous word was not theirs
   * (the bot's, another agent's, or none): the moment a person really joins, worked out from
   * the transcript itself, so a reload or a resume shows the same lines. */
  View.prototype.renderJoined = function (seq) {
    var m = this.messages[seq], node = this.msgs.querySelector('[data-seq="' + seq + '"]');
    if (!m || !node) return;
    var name = null;
    if (m.actor.type === "agent") {
      var before = null;
      for (var i = this.order.indexOf(seq) - 1; i >= 0 && !before; i--) {
        var p = this.messages[this.order[i]];
        if (p.actor.type === "agent" || p.actor.type === "bot") before = p;
      }
      if (!before || before.actor.type !== "agent" || before.actor.id !== m.actor.id) {
        name = (this.frames[seq].sender || {}).name || t("someone");
      }
    }
    var line = node.previousSibling;
    if (!(line && line.classList && line.classList.contains("joined"))) line = null;
    if (!name) { if (line) line.remove(); return; }
    if (!line) { line = el("p", { class: "msg system joined" }); this.msgs.insertBefore(line, node); }
    line.textContent = t("joined", { name: name });
  };

  View.prototype.renderMessage = function (m, sender) {
    var self = this;
    var type = m.actor.type;
    var node = el("div", { class: "msg " + (type === "user" ? "user" : type === "system" ? "system" : "bot") });
    if (type === "system") {
      if (isWebviewEvent(m)) return this.webviewEvent(node, m);
      (m.message_parts || []).forEach(function (p) { if (p.text) node.appendChild(document.createTextNode(p.text.content)); });
      return node;
    }
    var prev = this.order.length ? this.messages[this.order[this.order.length - 1]] : null;
    if (type !== "user" && sender && sender.name && !(prev && prev.actor.id === m.actor.id && prev.actor.type === type)) {
      // The agent's avatar (PATCH /api/v1/agents/{id}) beside the name; decorative: the name says who.
      var avatar = /^https?:\/\//.test(sender.avatar_url || "") ?
        el("img", { class: "sender-avatar", src: sender.avatar_url, alt: "", "aria-hidden": "true" }) : null;
      node.appendChild(el("div", { class: "sender" }, [avatar, el("span", { text: sender.name })]));
    }
    var actions = null;
    (m.message_parts || []).forEach(function (part, index) {
      if (part.url_button || part.web_view) {
        if (!actions) { actions = el("div", { class: "actions" }); node.appendChild(actions); }
        actions.appendChild(part.url_button ? self.urlButton(part.url_button) : self.webviewButton(m, part.web_view, webviewId(part.web_view, index)));
        return;
      }
      actions = null;
      if (part.text) node.appendChild(el("div", { class: "bubble" }, [linkify(part.text.content)]));
      else if (part.image) node.appendChild(self.image(part.image));
      else if (part.file) node.appendChild(self.fileCard(part.file));
      else if (part.video) node.appendChild(self.player("video", part.video));
      else if (part.audio) node.appendChild(self.player("audio", part.audio));
      else if (part.carousel) { node.classList.add("wide"); node.appendChild(self.carousel(m, part.carousel, index)); }
    });
    if (m.created_at) node.appendChild(el("time", { class: "time", datetime: m.created_at, title: formatTime(m.created_at, true), text: formatTime(m.created_at) }));
    if (type === "user") node.appendChild(el("div", { class: "meta", hidden: true }));
    return node;
  };

  View.prototype.urlButton = function (body) {
    var href = safeUrl(body.url);
    if (!href) return el("span", { class: "btn", "aria-disabled": "true", text: body.label });
    return el("a", {
      class: "btn", href: href, target: body.target === "_self" ? "_self" : "_blank",
      rel: "noopener noreferrer", text: body.label,
    });
  };

  View.prototype.webviewButton = function (m, body, id) {
    var self = this;
    var check = svg(ICON_CHECK);
    check.setAttribute("class", "check");
    return el("button", {
      type: "button", class: "btn", "data-wv": m.id + "/" + id, "data-from": m.actor.type,
      onclick: function (e) {
        if (e.currentTarget.getAttribute("aria-disabled") === "true") return; // spent: no fresh form
        self.app.openWebview(m, id, body, e.currentTarget);
      },
    }, [check, body.label]);
  };

  View.prototype.postbackButton = function (m, body) {
    var self = this;
    return el("button", {
      type: "button", class: "btn", text: body.label, "data-postback": "", "data-from": m.actor.type,
      onclick: function (e) {
        if (e.currentTarget.getAttribute("aria-disabled") === "true") return;
        self.app.sendText(body.label, { message_id: m.id, payload: body.payload });
      },
    });
  };

  /** Whether a bot's action no longer applies: a person has the conversation (the bot cannot
   * answer a postback or a web view meanwhile). */
  View.prototype.humanHasIt = function () {
    var conv = this.conversation;
    return !!(conv && conv.status !== "resolved" && conv.handled_by === "human");
  };

  /** Past actions that no longer apply, shown as spent: a web view already sent (completed,
   * never a fresh form), and the bot's postbacks and web views while a person has the chat.
   * aria-disabled keeps them focusable, so the reason (their description) can be read. */
  View.prototype.renderSpent = function (scope) {
    var self = this, human = this.humanHasIt();
    Array.prototype.forEach.call(scope.querySelectorAll("[data-wv],[data-postback]"), function (button) {
      var key = button.getAttribute("data-wv");
      var reason = key && self.outcomes[key] === "submitted" ? "done" :
        human && button.getAttribute("data-from") === "bot" ? "human" : "";
      if (button.getAttribute("data-spent") === reason) return;
      button.setAttribute("data-spent", reason);
      button.classList.toggle("spent", !!reason);
      button.classList.toggle("done", reason === "done");
      if (reason) {
        button.setAttribute("aria-disabled", "true");
        button.setAttribute("aria-describedby", reason === "done" ? "bc-why-done" : "bc-why-human");
        button.title = t(reason === "done" ? "spent_done" : "spent_human"); // the reason, for a pointer too
      } else {
        button.removeAttribute("aria-disabled");
        button.removeAttribute("aria-describedby");
        button.removeAttribute("title");
      }
    });
  };

  /** "Web view closed" (the stored event) in the customer's words, once the server has said
   * how it closed: "Sent: Enter card details", "Closed without sending: …". Until then the
   * line waits hidden; if the server cannot say, the stored words show. */
  View.prototype.webviewEvent = function (node, m) {
    var outcome = this.eventOutcomes[m.seq], label = outcome && this.webviewLabel(outcome.message_id, outcome.webview_id);
    var stored = (m.message_parts[0] || {}).text.content;
    node.classList.add("webview-event");
    if (!outcome) {
      node.textContent = stored;
      node.hidden = !this.outcomesFailed;
      return node;
    }
    var key = { submitted: "webview_sent", dismissed: "webview_dismissed" }[outcome.status] || "webview_closed";
    node.textContent = label ? t(key, { label: label }) : stored;
    return node;
  };

  /** The label of a web view (a part or a carousel card's button) of a message in the transcript. */
  View.prototype.webviewLabel = function (messageId, id) {
    var self = this, found = null;
    this.order.forEach(function (seq) {
      var m = self.messages[seq];
      if (found || m.id !== messageId) return;
      (m.message_parts || []).forEach(function (part, index) {
        if (part.web_view && webviewId(part.web_view, index) === id) found = part.web_view.label;
        if (part.carousel) {
          (part.carousel.cards || []).forEach(function (card, c) {
            (card.buttons || []).forEach(function (button, b) {
              if (button.web_view && webviewId(button.web_view, index, c, b) === id) found = button.web_view.label;
            });
          });
        }
      });
    });
    return found;
  };

  /** What the server says became of each closed web view (GET /widget/v1/webviews), or null
   * when it could not say. Each "Web view closed" event is the close just before it: both are
   * written in one transaction, the close first. */
  View.prototype.applyOutcomes = function (list) {
    var self = this;
    this.outcomesFailed = !list;
    this.outcomes = {};
    this.eventOutcomes = {};
    (list || []).forEach(function (o) {
      var key = o.message_id + "/" + o.webview_id;
      if (self.outcomes[key] !== "submitted") self.outcomes[key] = o.status;
    });
    var used = {};
    this.order.forEach(function (seq) {
      var m = self.messages[seq];
      if (!isWebviewEvent(m)) return;
      var at = Date.parse(m.created_at), best = -1;
      (list || []).forEach(function (o, i) {
        var closed = Date.parse(o.closed_at);
        if (used[i] || !(closed <= at + 1)) return;
        if (best < 0 || closed >= Date.parse(list[best].closed_at)) best = i;
      });
      if (best >= 0) { used[best] = true; self.eventOutcomes[seq] = list[best]; }
      var node = self.msgs.querySelector('[data-seq="' + seq + '"]');
      if (node) {
        var fresh = self.webviewEvent(el("div", { class: "msg system" }), m);
        node.textContent = fresh.textContent;
        node.hidden = fresh.hidden;
      }
    });
    this.renderSpent(this.msgs);
  };

  /** A file: a link named by its file name, with its kind and size beside it. */
  View.prototype.fileCard = function (body) {
    var href = safeUrl(body.url);
    var name = body.name || t("file");
    var link = href ? el("a", { href: href, target: "_blank", rel: "noopener noreferrer", download: name, text: name })
      : el("span", { class: "missing", text: name });
    var details = [kindLabel(body.content_type), formatSize(body.size)].filter(Boolean).join(" · ");
    return el("div", { class: "file-card" }, [
      el("span", { class: "file-icon", "aria-hidden": "true" }, [svg(ICON_FILE)]),
      el("span", { class: "file-text" }, [link, details ? el("span", { class: "file-size", text: details }) : null]),
    ]);
  };

  /** Video and audio: the browser's own player (keyboard and screen-reader ready), and the file's link. */
  View.prototype.player = function (kind, body) {
    var href = safeUrl(body.url);
    if (!href) return this.fileCard(body);
    var name = body.name || t(kind);
    return el("div", { class: "player" }, [
      el(kind, { src: href, controls: true, preload: "metadata", "aria-label": name }),
      el("a", { class: "media-name", href: href, target: "_blank", rel: "noopener noreferrer", download: name, text: name }),
    ]);
  };

  View.prototype.image = function (image) {
    var src = safeUrl(image.url);
    if (!src) return el("span");
    // An uploaded image (file_id) is named by its file name and opens full size when clicked.
    if (image.file_id) {
      var full = this.image({ url: image.url, alt: image.alt || image.name || t("image"), width: image.width, height: image.height, content_type: image.content_type });
      return el("a", { class: "image-link", href: src, target: "_blank", rel: "noopener noreferrer" }, [full]);
    }
    var attrs = { src: src, alt: image.alt || "", loading: "lazy", decoding: "async", class: "media", width: image.width, height: image.height };
    if (!image.width || !image.height) { attrs.width = 260; attrs.height = 180; attrs.style = "height:auto;aspect-ratio:auto 260/180"; }
    // A picture that cannot load becomes its alt text, not a broken-image icon.
    attrs.onerror = function (e) {
      var img = e.currentTarget;
      if (img.isConnected) img.replaceWith(el("div", { class: "bubble missing", text: image.alt ? t("image_alt", { alt: image.alt }) : t("image_missing") }));
    };
    if (!isGif(image) || !(REDUCED_MOTION && REDUCED_MOTION.matches)) return el("img", attrs);
    // Reduced motion: a still first frame, animated only when the customer asks.
    var animated = el("img", attrs);
    var still = el("canvas", { role: "img", "aria-label": image.alt || t("gif"), width: attrs.width, height: attrs.height });
    var loader = new Image();
    loader.onload = function () {
      still.width = loader.naturalWidth; still.height = loader.naturalHeight;
      still.getContext("2d").drawImage(loader, 0, 0);
    };
    loader.src = src;
    animated.hidden = true;
    var play = el("button", {
      type: "button", class: "play", "aria-pressed": "false", text: t("play_gif"),
      onclick: function () {
        var playing = animated.hidden;
        animated.hidden = !playing; still.hidden = playing;
        // A toggle keeps its name; aria-pressed carries the state.
        play.setAttribute("aria-pressed", String(playing));
      },
    });
    return el("div", { class: "gif" }, [still, animated, play]);
  };

  View.prototype.carousel = function (m, body, index) {
    var self = this;
    var strip = el("div", { class: "carousel", role: "region", "aria-roledescription": "carousel", "aria-label": t("cards"), tabindex: "0" });
    (body.cards || []).forEach(function (card, c) {
      var buttons = el("div", { class: "card-buttons" });
      (card.buttons || []).slice(0, 3).forEach(function (button, b) {
        if (button.postback) buttons.appendChild(self.postbackButton(m, button.postback));
        else if (button.url_button) buttons.appendChild(self.urlButton(button.url_button));
        else if (button.web_view) buttons.appendChild(self.webviewButton(m, button.web_view, webviewId(button.web_view, index, c, b)));
      });
      var img = card.image_url && safeUrl(card.image_url);
      strip.appendChild(el("div", { class: "card", role: "group", "aria-label": card.title }, [
        img ? el("img", { src: img, alt: "", loading: "lazy", decoding: "async", width: 224, height: 120 }) : null,
        el("div", { class: "card-body" }, [
          el("h3", { class: "card-title", text: card.title }),
          card.subtitle ? el("p", { class: "card-sub", text: card.subtitle }) : null,
        ]),
        buttons.childNodes.length ? buttons : null,
      ]));
    });
    var count = strip.childNodes.length;
    if (count < 2) return strip;
    // "2 of 4" and, on pointer devices, previous/next arrows (a mouse cannot swipe a strip).
    var position = el("span", { class: "carousel-pos", "aria-live": "polite" });
    var prev = el("button", { type: "button", "aria-label": t("card_prev"), text: "\u2039" });
    var next = el("button", { type: "button", "aria-label": t("card_next"), text: "\u203a" });
    function current() {
      var scrolled = Math.abs(strip.scrollLeft);
      if (scrolled >= strip.scrollWidth - strip.clientWidth - 2) return count - 1; // at the end: the last card is in view
      var card = strip.firstChild;
      var step = card ? card.getBoundingClientRect().width + 10 : 1;
      return Math.max(0, Math.min(count - 1, Math.round(scrolled / step)));
    }
    function update() {
      var i = current();
      position.textContent = t("card_of", { i: i + 1, n: count });
      prev.disabled = i === 0;
      next.disabled = i === count - 1;
    }
    var heading = null; // the card a click is already scrolling to (smooth scrolling takes a moment)
    function go(delta) {
      heading = Math.max(0, Math.min(count - 1, (heading === null ? current() : heading) + delta));
      var target = strip.childNodes[heading];
      var rtl = self.root.getAttribute("dir") === "rtl";
      var edge = rtl ? strip.getBoundingClientRect().right - target.getBoundingClientRect().right
        : target.getBoundingClientRect().left - strip.getBoundingClientRect().left;
      strip.scrollBy({ left: rtl ? -edge : edge });
    }
    prev.addEventListener("click", function () { go(-1); });
    next.addEventListener("click", function () { go(1); });
    strip.addEventListener("scroll", update, { passive: true });
    strip.addEventListener("scrollend", function () { heading = null; update(); });
    strip.addEventListener("pointerdown", function () { heading = null; });
    update();
    return el("div", { class: "carousel-wrap" }, [strip, el("div", { class: "carousel-nav" }, [prev, position, next])]);
  };

  /** Reply parts belong to the newest message only, and vanish once it is not the newest. */
  View.prototype.renderReplies = function () {
    var self = this;
    this.replies.textContent = "";
    var last = this.order.length ? this.messages[this.order[this.order.length - 1]] : null;
    var show = last && last.actor.type !== "user" && (last.reply_parts || []).length && !Object.keys(this.pendingNodes).length &&
      !(last.actor.type === "bot" && this.humanHasIt()); // the bot cannot answer them now
    this.replies.hidden = !show;
    if (!show) return;
    last.reply_parts.forEach(function (part) {
      if (part.quick_replies) {
        part.quick_replies.options.forEach(function (option) {
          self.replies.appendChild(el("button", {
            type: "button", class: "btn", text: option.label,
            onclick: function () {
              self.app.sendText(option.label, { message_id: last.id, payload: option.payload });
              self.focusComposer();
            },
          }));
        });
      } else if (part.dropdown) {
        self.replies.appendChild(self.dropdown(last, part.dropdown));
      }
    });
  };

  View.prototype.dropdown = function (m, body) {
    var self = this;
    var select = el("select", { class: "select", "aria-label": body.placeholder || t("choose") },
      [el("option", { value: "", disabled: true, selected: true, text: body.placeholder || t("choose") })]);
    body.options.forEach(function (option, i) { select.appendChild(el("option", { value: String(i), text: option.label })); });
    // Arrow keys on a closed select change its value: that is browsing, not choosing.
    // Keyboard users confirm with Enter; a pointer (or a picked list item) sends at once.
    var browsing = false;
    function choose() {
      var option = body.options[Number(select.value)];
      if (select.value === "" || !option) return;
      self.app.sendText(option.label, { message_id: m.id, payload: option.payload });
      self.focusComposer();
    }
    select.addEventListener("keydown", function (e) {
      if (/^(Arrow|Page|Home|End)/.test(e.key)) browsing = true;
      if (e.key === "Enter") { e.preventDefault(); browsing = false; choose(); }
    });
    select.addEventListener("change", function () { if (!browsing) choose(); });
    select.addEventListener("blur", function () { browsing = false; });
    return select;
  };

  // -- pending, typing, read, unread ------------------------------------------------------

  View.prototype.addPending = function (frame, files) {
    var node = el("div", { class: "msg user" }, [
      frame.text ? el("div", { class: "bubble" }, [linkify(frame.text)]) : null,
    ].concat((files || []).map(function (file) {
      return el("div", { class: "file-card" }, [
        el("span", { class: "file-icon", "aria-hidden": "true" }, [svg(ICON_FILE)]),
        el("span", { class: "file-text" }, [el("span", { text: file.name }), el("span", { class: "file-size", text: formatSize(file.size) })]),
      ]);
    }), [el("div", { class: "meta" })]));
    this.pendingNodes[frame.client_message_id] = node;
    this.pending.appendChild(node);
    this.pendingMeta(frame.client_message_id);
    this.renderReplies();
    this.scrollDown(true);
  };

  View.prototype.pendingMeta = function (id, failure) {
    var node = this.pendingNodes[id];
    if (!node) return;
    var meta = node.querySelector(".meta");
    if (failure) { meta.className = "meta failed"; meta.textContent = t("not_sent", { reason: failure }); return; }
    if (meta.className.indexOf("failed") >= 0) return;
    meta.textContent = this.status === "online" ? t("sending") : t("waiting_network");
  };

  View.prototype.showTyping = function (frame) {
    var self = this;
    clearTimeout(this.typingTimer);
    if (!frame.on) { this.hideTyping(); return; }
    var who = (frame.actor && frame.actor.name) || t("someone");
    this.typing.textContent = "";
    this.typing.appendChild(el("span", { class: "dots", "aria-hidden": "true" }, [el("i"), el("i"), el("i")]));
    this.typing.appendChild(el("span", { text: t("typing", { name: who }) }));
    this.typing.hidden = false;
    this.scrollDown(false);
    this.typingTimer = setTimeout(function () { self.hideTyping(); }, (frame.timeout || 8) * 1000);
  };

  View.prototype.hideTyping = function () {
    clearTimeout(this.typingTimer);
    this.typing.hidden = true;
    this.typing.textContent = "";
  };

  View.prototype.renderSeen = function () {
    var nodes = this.msgs.querySelectorAll(".msg.user .meta");
    var lastSeen = null;
    for (var i = 0; i < nodes.length; i++) {
      nodes[i].hidden = true;
      var seq = Number(nodes[i].parentNode.getAttribute("data-seq"));
      if (seq <= this.agentReadSeq) lastSeen = nodes[i];
    }
    if (lastSeen) { lastSeen.textContent = t("seen"); lastSeen.hidden = false; }
  };

  View.prototype.lastSeq = function () {
    return this.order.length ? this.order[this.order.length - 1] : 0;
  };

  View.prototype.markRead = function () {
    var last = this.lastSeq();
    if (this.isOpen && document.visibilityState !== "hidden" && last > this.userReadSeq) {
      this.userReadSeq = last;
      this.app.read(last);
    }
    this.updateUnread();
  };

  View.prototype.updateUnread = function () {
    var self = this;
    var count = this.order.filter(function (seq) {
      var type = self.messages[seq].actor.type;
      return seq > self.userReadSeq && type !== "user" && type !== "system";
    }).length;
    this.badge.textContent = count > 9 ? "9+" : String(count);
    this.badge.hidden = count === 0;
    var plural = "other";
    try { plural = new Intl.PluralRules(lang).select(count); } catch (e) { /* old browsers: "other" */ }
    this.unreadText.textContent = count && !this.isOpen ? t(plural === "one" ? "unread_one" : "unread_other", { n: count }) : "";
    if (count !== this.unreadCount) { this.unreadCount = count; this.app.unreadChanged(count); }
  };

  /** Keep ``node`` at the top of the log while the rest of its burst arrives (and images load),
   *  until the customer scrolls, types or sends: they read the reply from its start. */
  View.prototype.showFrom = function (node) {
    var self = this, log = this.log;
    this.held = node;
    if (!this.releaseHold) {
      this.releaseHold = function () { self.held = null; };
      ["wheel", "touchstart", "keydown", "pointerdown"].forEach(function (type) {
        log.addEventListener(type, self.releaseHold, { passive: true });
      });
      this.input.addEventListener("input", this.releaseHold);
    }
    requestAnimationFrame(function () {
      if (self.held !== node) return;
      log.scrollTop += node.getBoundingClientRect().top - log.getBoundingClientRect().top - 8;
    });
  };

  View.prototype.scrollDown = function (force) {
    var self = this, log = this.log;
    if (force) this.held = null;
    if (this.held && this.held.isConnected) { this.showFrom(this.held); return; }
    if (!force && !this.stick) return;
    this.stick = true;
    requestAnimationFrame(function () { log.scrollTop = log.scrollHeight; self.stick = true; });
  };

  // -- the web view sheet -----------------------------------------------------------------

  View.prototype.openSheet = function (info, opener) {
    var self = this;
    if (this.sheet) this.closeSheet("dismissed");
    var frame = el("iframe", {
      title: info.label, src: info.url, referrerpolicy: "no-referrer",
      allow: "clipboard-write; payment",
    });
    var heading = el("h3", { class: "sheet-title", text: info.label });
    var close = el("button", { type: "button", class: "sheet-close", text: t("close"), onclick: function () { self.closeSheet("dismissed"); } });
    // Fallback for pages that refuse to be framed (X-Frame-Options / frame-ancestors): the
    // same signed URL in a new tab. webview.js there posts to window.opener; we accept it
    // from that tab only, and a tab closed without a word still resumes the chat.
    var tab = null, tabTimer = null;
    var note = el("p", { class: "sheet-note", hidden: true,
      text: t("new_tab_note") });
    var newTab = el("button", { type: "button", class: "sheet-tab", text: t("new_tab"), onclick: function () {
      tab = window.open(info.url, "_blank");
      if (!tab) return;  // blocked: the sheet stays as it was
      frame.hidden = true; note.hidden = false; newTab.hidden = true;
      tabTimer = setInterval(function () {
        if (tab.closed && self.sheet && self.sheet.veil === veil) self.closeSheet("closed");
      }, 700);
    } });
    if (info.kind !== "url") newTab.hidden = true;
    // Focus stays in the sheet: sentinels at both ends send Tab around the loop.
    var first = el("span", { class: "sentinel", tabindex: "0", onfocus: function () { frame.focus(); } });
    var last = el("span", { class: "sentinel", tabindex: "0", onfocus: function () { close.focus(); } });
    var height = { compact: 1, tall: 1, full: 1 }[info.height] ? info.height : "tall";
    var sheet = el("div", { class: "sheet " + height, role: "dialog", "aria-modal": "true", "aria-label": info.label },
      [el("div", { class: "sheet-head" }, [heading, newTab, close]), frame, note]);
    var veil = el("div", { class: "veil" }, [first, sheet, last]);
    var onMessage = function (event) {
      // Only the window we opened, at the origin the server named.
      if (!self.sheet || event.origin !== info.origin) return;
      if (event.source !== frame.contentWindow && (!tab || event.source !== tab)) return;
      var data = event.data;
      if (!data || typeof data !== "object") return;
      if (data.backchannel === "webview.close") {
        var status = data.status === "submitted" ? "submitted" : "closed";
        self.closeSheet(status, typeof data.result === "string" ? data.result.slice(0, 1000) : undefined);
      } else if (data.backchannel === "webview.escape") {
        self.closeSheet("dismissed");
      } else if (data.backchannel === "webview.title" && typeof data.title === "string") {
        heading.textContent = data.title.slice(0, 80);
      }
    };
    window.addEventListener("message", onMessage);
    [this.head, this.statusBar, this.log, this.tray, this.composer, this.foot].forEach(function (node) { node.setAttribute("inert", ""); });
    this.panel.appendChild(veil);
    this.sheet = { info: info, veil: veil, onMessage: onMessage, opener: opener,
      stop: function () { clearInterval(tabTimer); if (tab && !tab.closed) tab.close(); } };
    close.focus();
  };

  View.prototype.closeSheet = function (status, result) {
    var sheet = this.sheet;
    if (!sheet) return;
    this.sheet = null;
    sheet.stop();
    window.removeEventListener("message", sheet.onMessage);
    sheet.veil.remove();
    [this.head, this.statusBar, this.log, this.tray, this.composer, this.foot].forEach(function (node) { node.removeAttribute("inert"); });
    this.resumeAt = true; // the bot's reply to this close is shown from its start
    this.app.webviewClosed(sheet.info, status, result);
    if (sheet.opener && sheet.opener.isConnected) sheet.opener.focus(); else this.input.focus();
  };

  View.prototype.destroy = function () {
    this.lockPage(false);
    this.clearUploads();
    if (this.sheet) { this.sheet.stop(); window.removeEventListener("message", this.sheet.onMessage); }
    clearTimeout(this.typingTimer);
    this.shadow.removeEventListener("keydown", this.onKey);
    this.host.remove();
  };

  // --- the app: transport + view + public API ------------------------------------------

  var view, conn, typingSentAt = 0, typingOffTimer = null, control = [], outcomesTimer = null;
  var READ_EVERY_MS = 1000, readTimer = null, readSentAt = 0, readWanted = 0;

  function stopTyping(afterMs) {
    clearTimeout(typingOffTimer);
    typingOffTimer = setTimeout(function () {
      if (typingSentAt) { typingSentAt = 0; conn.send({ type: "typing", on: false }); }
    }, afterMs);
  }

  // -- the host page's events (Backchannel.on/off): ready, open, close, message, unread ----------

  var listeners = {}, isReady = false;
  function emit(name, detail) {
    if (name === "ready") { if (isReady) return; isReady = true; }
    (listeners[name] || []).slice().forEach(function (fn) {
      try { fn(detail); } catch (e) { if (window.console) console.error(e); }
    });
  }

  // -- the language: setLocale(), else BackchannelSettings.locale, the workspace's, the browser's, English

  var localeOverride = null, workspaceLocale = null, wantedLang = "en";
  function chooseLocale() {
    var page = (window.BackchannelSettings || {}).locale;
    var code = supported(localeOverride) || supported(page) || supported(workspaceLocale);
    var browser = navigator.languages && navigator.languages.length ? navigator.languages : [navigator.language];
    for (var i = 0; !code && i < browser.length; i++) code = supported(browser[i]);
    useLocale(code || "en");
  }
  function useLocale(code) {
    wantedLang = code;
    if (catalogues[code]) {
      if (lang !== code) { lang = code; strings = catalogues[code]; view.relabel(); }
      return;
    }
    fetch(SERVER + "/widget/v1/locales/" + code + ".json", { credentials: "omit" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (data) {
        if (!data || typeof data !== "object") return;
        catalogues[code] = data;
        if (wantedLang === code) useLocale(code);
      })
      .catch(function () { /* stays in the language it has */ });
  }

  function onFrame(frame) {
    switch (frame.type) {
      case "ready":
        clearTimeout(readTimer);  // a receipt still waiting belonged to the socket before
        readTimer = null;
        readWanted = 0;
        view.userReadSeq = frame.user_read_seq || 0;
        view.agentReadSeq = frame.agent_read_seq || 0;
        if (frame.conversation) view.setConversation(frame.conversation);
        else if (view.conversationId) { view.reset(); view.conversationId = null; }
        view.askEmail = !!frame.ask_email;
        view.applySettings(frame.settings);
        if (!frame.conversation && view.openedOnce) conn.send({ type: "open" });
        control.splice(0).forEach(function (f) { conn.send(f); });
        view.updateUnread();
        break;
      case "conversation": view.setConversation(frame.conversation); break;
      case "message": view.addMessage(frame); break;
      case "typing": view.showTyping(frame); break;
      case "read":
        if (frame.reader === "agent") { view.agentReadSeq = Math.max(view.agentReadSeq, frame.seq); view.renderSeen(); }
        else { view.userReadSeq = Math.max(view.userReadSeq, frame.seq); view.updateUnread(); }
        break;
      case "settings": view.applySettings(frame); break;
      case "email.saved": view.askEmail = false; view.emailSaved = frame.email; view.renderHeader(); break;
      case "webview.url":
        if (app.wantedWebview && app.wantedWebview.id === frame.webview_id && app.wantedWebview.message.id === frame.message_id) {
          var wanted = app.wantedWebview;
          app.wantedWebview = null;
          view.openSheet({
            url: frame.url, origin: frame.origin, label: wanted.body.label,
            height: wanted.body.height || frame.height, message_id: frame.message_id, webview_id: frame.webview_id,
            kind: frame.kind,
          }, wanted.opener);
        }
        break;
      case "error":
        if (frame.client_message_id) {
          if (frame.code === "rate_limited") {
            setTimeout(function () { conn.flush(); }, ((frame.details && frame.details.retry_after) || 5) * 1000);
          } else {
            view.pendingMeta(frame.client_message_id, frame.message || t("refused_message"));
          }
        }
        if (window.console) console.warn("Backchannel: " + frame.code + ": " + frame.message);
        break;
    }
  }

  var app = {
    wantedWebview: null,
    open: function () {
      conn.start();
      var was = view.isOpen;
      view.show(true);
      if (conn.ready && !conn.conversationId) conn.send({ type: "open" });
      if (!was) emit("open", {});
    },
    close: function () {
      if (view.sheet) view.closeSheet("dismissed");
      var was = view.isOpen;
      view.show(false);
      if (was) emit("close", {});
    },
    settingsChanged: function (settings) {
      if (settings.locale !== workspaceLocale) { workspaceLocale = settings.locale; chooseLocale(); }
    },
    messageAdded: function (message) { emit("message", { message: message }); },
    unreadChanged: function (count) { emit("unread", { count: count }); },
    sendText: function (text, replyTo) { app.sendMessage(text, [], replyTo); },
    /** Text and uploaded files (each {id, name, size, …} from /widget/v1/files) as one message. */
    sendMessage: function (text, files, replyTo) {
      var frame = { type: "message", client_message_id: uid() };
      if (text) frame.text = text;
      if (files.length) frame.file_ids = files.map(function (f) { return f.id; });
      if (replyTo) frame.reply_to = replyTo;
      stopTyping(1500);  // a brisk typist goes on typing: no off-and-on between messages
      view.addPending(frame, files);
      if (!view.sentOne) { view.sentOne = true; view.renderHeader(); }
      conn.sendMessage(frame);
    },
    upload: function (file, onProgress, done) { return uploadFile(conn, file, onProgress, done); },
    /** Typing is coalesced: "on" once (renewed every 3 s while typing), "off" once idle. */
    userTyping: function () {
      var now = Date.now();
      if (now - typingSentAt > 3000 && conn.send({ type: "typing", on: true })) typingSentAt = now;
      stopTyping(4000);
    },
    /** Read receipts are coalesced: at most one frame a second, carrying the newest seq. */
    read: function (seq) {
      readWanted = Math.max(readWanted, seq);
      if (readTimer) return;
      readTimer = setTimeout(function () {
        readTimer = null;
        readSentAt = Date.now();
        conn.send({ type: "read", seq: readWanted });
      }, Math.max(0, readSentAt + READ_EVERY_MS - Date.now()));
    },
    switchIdentity: function (connectNow) {
      control = [];
      view.reset();
      view.conversationId = null;
      view.askEmail = false;
      view.emailSaved = null;
      view.ratingDraft = null;
      view.pending.textContent = "";
      view.pendingNodes = {};
      view.hideTyping();
      view.renderHeader();
      view.updateUnread();
      conn.restart(connectNow || view.isOpen);
    },
    saveEmail: function (email) {
      var frame = { type: "email", email: email };
      if (!conn.send(frame)) control.push(frame);
    },
    rate: function (score, comment) {
      var frame = { type: "rate", score: score };
      if (comment) frame.comment = comment;
      if (!conn.send(frame)) control.push(frame);
    },
    openWebview: function (message, id, body, opener) {
      app.wantedWebview = { message: message, id: id, body: body, opener: opener };
      conn.send({ type: "webview.open", message_id: message.id, webview_id: id });
    },
    /** Ask the server how the transcript's web views closed (coalesced: a history of many
     * messages asks once). */
    webviewsChanged: function () {
      if (outcomesTimer) return;
      outcomesTimer = setTimeout(function () {
        outcomesTimer = null;
        var conversationId = view.conversationId;
        if (!conversationId) return;
        conn.withSession().then(function (session) {
          return fetch(SERVER + "/widget/v1/webviews?conversation_id=" + encodeURIComponent(conversationId), {
            credentials: "omit", headers: { Authorization: "Bearer " + session.session_token },
          });
        }).then(function (r) { return r.ok ? r.json() : null; }).then(function (body) {
          if (view.conversationId === conversationId) view.applyOutcomes(body && Array.isArray(body.data) ? body.data : null);
        }).catch(function () {
          if (view.conversationId === conversationId) view.applyOutcomes(null);
        });
      }, 60);
    },
    webviewClosed: function (info, status, result) {
      var frame = { type: "webview.close", message_id: info.message_id, webview_id: info.webview_id, status: status };
      if (result !== undefined) frame.result = result;
      if (!conn.send(frame)) control.push(frame);
    },
  };

  view = new View(app);
  chooseLocale();
  // Outside business hours the header says so: checked each minute while the page is open.
  var hoursTimer = setInterval(function () { view.renderHeader(); }, 60000);
  conn = new Connection({
    session: function (session) { view.applySettings(session.settings); },
    status: function (status) { view.setStatus(status); },
    frame: onFrame,
  });
  var onVisible = function () { if (document.visibilityState === "visible" && view.isOpen) view.markRead(); };
  document.addEventListener("visibilitychange", onVisible);

  var api = {
    __loaded: true,
    open: function () { app.open(); },
    close: function () { app.close(); },
    toggle: function () { if (view.isOpen) app.close(); else app.open(); },
    setLocale: function (code) { localeOverride = supported(code); chooseLocale(); },
    /** Switch to this customer ({user, user_jwt}): the widget reconnects as them at once. */
    identify: function (identity) {
      if (!identity || !identity.user || !identity.user.external_id) {
        if (window.console) console.warn("Backchannel.identify needs {user: {external_id}, user_jwt?}");
        return;
      }
      var settings = window.BackchannelSettings = Object.assign({}, window.BackchannelSettings || {});
      settings.user = identity.user;
      if (identity.user_jwt) settings.user_jwt = identity.user_jwt; else delete settings.user_jwt;
      app.switchIdentity(true);
    },
    /** Forget the visitor (sign-out): stored tokens go; the next open starts a new anonymous visitor. */
    reset: function () {
      var settings = window.BackchannelSettings || {};
      if (settings.user && settings.user.external_id) storage.remove(claimKey(settings.user.external_id));
      storage.remove(STORAGE_KEY);
      if (window.BackchannelSettings) {
        window.BackchannelSettings = Object.assign({}, settings);
        delete window.BackchannelSettings.user;
        delete window.BackchannelSettings.user_jwt;
      }
      app.switchIdentity(false);
    },
    on: function (name, fn) {
      if (typeof fn !== "function") return;
      (listeners[name] = listeners[name] || []).push(fn);
      if (name === "ready" && isReady) { try { fn({}); } catch (e) { if (window.console) console.error(e); } }
    },
    off: function (name, fn) {
      listeners[name] = (listeners[name] || []).filter(function (f) { return fn && f !== fn; });
    },
    destroy: function () {
      conn.stop();
      clearInterval(hoursTimer);
      listeners = {};
      view.destroy();
      document.removeEventListener("visibilitychange", onVisible);
      clearTimeout(typingOffTimer);
      clearTimeout(readTimer);
      if (window.Backchannel === api) delete window.Backchannel;
    },
  };
  window.Backchannel = api;

  // Returning visitors and known users connect now (history, unread badge); a first-time
  // visitor (anonymous, or named without a user_jwt and never seen here) only gets a
  // session when they open the chat, so page views create no users.
  var settings = window.BackchannelSettings || {};
  var claim = settings.user && settings.user.external_id;
  if (claim ? settings.user_jwt || storage.get(claimKey(claim)) : storage.get(STORAGE_KEY)) conn.start();
  else {
    fetch(SERVER + "/widget/v1/settings?widget_key=" + encodeURIComponent(WIDGET_KEY), { credentials: "omit" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (s) { if (s && !conn.session) view.applySettings(s); })
      .catch(function () {});
  }

  // Calls made before the script loaded: `Backchannel.q = [["open"], …]` (see docs/widget.md).
  var queued = existing && existing.q;
  if (queued && queued.length) {
    Array.prototype.slice.call(queued).forEach(function (call) {
      var name = call && call[0];
      if (typeof api[name] === "function" && name !== "__loaded") api[name].apply(api, Array.prototype.slice.call(call, 1));
    });
  }
  emit("ready", {}); // the launcher is on the page; queued listeners and later ones hear it
  // The link in an offline-reply email (docs/email.md): the page with #backchannel opens the chat.
  if (location.hash === "#backchannel") api.open();
})();
