/* Backchannel console: small progressive enhancements, no build step, no inline script.
 * Every page works without it (forms post and redirect); with it, the Inbox is live,
 * replies send without a reload, and secrets and snippets copy with one click. */
(function () {
  "use strict";

  function $(sel, root) { return (root || document).querySelector(sel); }
  function $all(sel, root) { return Array.prototype.slice.call((root || document).querySelectorAll(sel)); }

  // --- copy buttons: <button data-copy="#id"> --------------------------------------------
  function setupCopy() {
    $all("[data-copy]").forEach(function (btn) {
      btn.addEventListener("click", function () {
        var target = $(btn.getAttribute("data-copy"));
        if (!target) return;
        var text = target.textContent.trim();
        var done = function () {
          var label = btn.textContent;
          btn.textContent = "Copied";
          btn.classList.add("is-copied");
          setTimeout(function () { btn.textContent = label; btn.classList.remove("is-copied"); }, 1600);
        };
        if (navigator.clipboard && window.isSecureContext) {
          navigator.clipboard.writeText(text).then(done, function () { selectText(target); });
        } else {
          selectText(target);
          try { document.execCommand("copy"); done(); } catch (e) { /* the text stays selected */ }
        }
      });
    });
  }

  function selectText(el) {
    var range = document.createRange();
    range.selectNodeContents(el);
    var sel = window.getSelection();
    sel.removeAllRanges();
    sel.addRange(range);
  }

  // --- "Add endpoint" and similar: <button data-show="#form"> reveals and focuses ----------
  function setupReveal() {
    $all("[data-show]").forEach(function (btn) {
      btn.addEventListener("click", function () {
        var target = $(btn.getAttribute("data-show"));
        if (!target) return;
        target.hidden = false;
        btn.setAttribute("aria-expanded", "true");
        var first = $("input:not([type=hidden]), textarea, select", target);
        if (first) first.focus();
      });
    });
    $all("[data-hide]").forEach(function (btn) {
      btn.addEventListener("click", function () {
        var target = $(btn.getAttribute("data-hide"));
        if (target) target.hidden = true;
        var opener = $("[data-show='" + btn.getAttribute("data-hide") + "']");
        if (opener) { opener.setAttribute("aria-expanded", "false"); opener.focus(); }
      });
    });
  }

  // --- widget settings: live preview ------------------------------------------------------
  function setupPreview() {
    var preview = $("#widget-preview");
    if (!preview) return;
    var color = $("[data-preview=color]");
    var greeting = $("[data-preview=greeting]");
    var apply = function () {
      preview.style.setProperty("--widget-color", color ? color.value : preview.getAttribute("data-color"));
      if (color && $("#color-value")) $("#color-value").textContent = color.value;
      if (greeting) $("#preview-greeting").textContent = greeting.value || "\u00a0";
    };
    if (color) color.addEventListener("input", apply);
    if (greeting) greeting.addEventListener("input", apply);
    apply();
  }

  // --- Inbox: live list and transcript ----------------------------------------------------
  function setupInbox() {
    var inbox = $("#inbox");
    if (!inbox) return;
    var current = inbox.getAttribute("data-current");
    var view = inbox.getAttribute("data-view") || "open";
    var lastSeq = parseInt(inbox.getAttribute("data-last-seq") || "0", 10);
    var me = inbox.getAttribute("data-me");
    var transcript = $("#transcript");
    var status = $("#live-status");
    var typingLine = $("#typing");
    var typingTimers = {};
    var fetchingMessages = null;
    var refetchAgain = false;
    var listTimer = null;
    var listGen = 0;
    var headerGen = 0;

    function scrollToEnd() { if (transcript) transcript.scrollTop = transcript.scrollHeight; }
    scrollToEnd();

    function get(url) {
      return fetch(url, { credentials: "same-origin", headers: { "X-Requested-With": "fetch" } }).then(function (r) {
        if (r.status === 401 || r.redirected && r.url.indexOf("/console/login") >= 0) { window.location.reload(); throw new Error("logged out"); }
        if (!r.ok) throw new Error("HTTP " + r.status);
        return r.text();
      });
    }

    function refreshList() {
      clearTimeout(listTimer);
      listTimer = setTimeout(function () {
        var url = "/console/inbox/list?view=" + encodeURIComponent(view) + (current ? "&current=" + encodeURIComponent(current) : "");
        var gen = ++listGen;
        // Only the newest answer counts: an older, slower one must not overwrite it.
        get(url).then(function (html) { if (gen === listGen) $("#conversation-list").innerHTML = html; }).catch(function () {});
      }, 150);
    }

    // Fetch everything after the last seq we show: the store is the truth, so nothing is
    // missed or shown twice however events arrive (or do not, while reconnecting).
    function fetchMessages() {
      if (!current || !transcript) return;
      if (fetchingMessages) { refetchAgain = true; return; }
      var nearEnd = transcript.scrollHeight - transcript.scrollTop - transcript.clientHeight < 120;
      fetchingMessages = get("/console/inbox/" + encodeURIComponent(current) + "/messages?after=" + lastSeq).then(function (html) {
        var box = document.createElement("div");
        box.innerHTML = html;
        $all("[data-seq]", box).forEach(function (el) {
          var seq = parseInt(el.getAttribute("data-seq"), 10);
          if (seq > lastSeq) { transcript.appendChild(el); lastSeq = seq; }
        });
        if (nearEnd) scrollToEnd();
      }).catch(function () {}).then(function () {
        fetchingMessages = null;
        if (refetchAgain) { refetchAgain = false; fetchMessages(); }
      });
    }

    // A web view opening or closing annotates a message already shown: re-render them all.
    function reloadTranscript() {
      if (!current || !transcript) return;
      get("/console/inbox/" + encodeURIComponent(current) + "/messages?after=0").then(function (html) {
        var box = document.createElement("div");
        box.innerHTML = html;
        var items = $all("[data-seq]", box);
        if (!items.length) return;
        $all("[data-seq]", transcript).forEach(function (el) { el.remove(); });
        items.forEach(function (el) { transcript.appendChild(el); });
        lastSeq = Math.max(lastSeq, parseInt(items[items.length - 1].getAttribute("data-seq"), 10));
        scrollToEnd();
      }).catch(function () {});
    }

    function refreshHeader() {
      if (!current) return;
      var gen = ++headerGen;
      get("/console/inbox/" + encodeURIComponent(current) + "/header?view=" + encodeURIComponent(view)).then(function (html) {
        if (gen !== headerGen) return;
        var header = $("#conversation-header");
        var focused = document.activeElement && header.contains(document.activeElement);
        header.innerHTML = html;
        if (focused) { var first = $("button, select", header); if (first) first.focus(); }
      }).catch(function () {});
    }

    function showTyping(actor, on) {
      if (!typingLine || !actor) return;
      if (actor.type === "agent" && actor.id === me) return;
      var key = actor.type + ":" + (actor.id || "");
      clearTimeout(typingTimers[key]);
      if (on) {
        var who = actor.type === "user" ? "The customer" : (actor.name || (actor.type === "bot" ? "The bot" : "An agent"));
        typingLine.textContent = who + " is typing…";
        typingTimers[key] = setTimeout(function () { typingLine.textContent = ""; }, 8000);
      } else {
        typingLine.textContent = "";
      }
    }

    function onEvent(ev) {
      if (ev.type === "resync" || ev.type === "hello") { refreshList(); fetchMessages(); refreshHeader(); return; }
      refreshList();
      if (ev.conversation_id !== current) return;
      if (ev.type === "message.created") {
        if (ev.actor && ev.actor.type === "user") showTyping({ type: "user" }, false);
        if (ev.seq > lastSeq) fetchMessages();
      } else if (ev.type === "conversation.typing") {
        showTyping(ev.actor, ev.on);
      } else if (ev.type.indexOf("conversation.") === 0 && ev.type !== "conversation.read") {
        refreshHeader();
      } else if (ev.type === "webview.opened" || ev.type === "webview.closed") {
        reloadTranscript();
      }
    }

    // The socket: reconnect with backoff (also after TRY_AGAIN: this page fell behind, and
    // catches up on reconnect); UNAUTHENTICATED or FORBIDDEN means the session ended.
    // The codes: app/realtime/closecodes.py, docs/widget.md.
    var CLOSE = { UNAUTHENTICATED: 4401, FORBIDDEN: 4403 };
    var socket = null;
    var attempt = 0;
    function setStatus(state, text) { if (status) { status.setAttribute("data-state", state); status.textContent = text; } }
    function connect() {
      var proto = window.location.protocol === "https:" ? "wss:" : "ws:";
      socket = new WebSocket(proto + "//" + window.location.host + "/console/live");
      socket.onopen = function () { attempt = 0; setStatus("live", "Live"); };
      socket.onmessage = function (msg) {
        try { onEvent(JSON.parse(msg.data)); } catch (e) { /* ignore malformed hints */ }
      };
      socket.onclose = function (e) {
        if (e.code === CLOSE.UNAUTHENTICATED || e.code === CLOSE.FORBIDDEN) { setStatus("offline", "Logged out"); window.location.reload(); return; }
        setStatus("offline", "Reconnecting…");
        attempt += 1;
        var delay = Math.min(15000, 500 * Math.pow(2, attempt)) * (0.75 + Math.random() / 2);
        setTimeout(connect, delay);
      };
    }
    connect();

    // Agent typing indicator: "on" at most every 3 s while typing, "off" after a pause or on send.
    var lastTypingSent = 0;
    var typingOffTimer = null;
    function sendTyping(on) {
      if (!socket || socket.readyState !== 1 || !current) return;
      socket.send(JSON.stringify({ type: "typing", conversation_id: current, on: on }));
    }

    var form = $("#reply-form");
    var box = $("#reply");
    if (form && box) {
      var error = $("#reply-error");
      box.addEventListener("input", function () {
        if (error) error.textContent = "";
        box.removeAttribute("aria-invalid");
        var now = Date.now();
        if (box.value && now - lastTypingSent > 3000) { sendTyping(true); lastTypingSent = now; }
        clearTimeout(typingOffTimer);
        typingOffTimer = setTimeout(function () { sendTyping(false); lastTypingSent = 0; }, 4000);
      });
      box.addEventListener("keydown", function (e) {
        if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); form.requestSubmit(); }
      });
      form.addEventListener("submit", function (e) {
        e.preventDefault();
        if (!box.value.trim()) { if (error) error.textContent = "Write a reply first."; box.setAttribute("aria-invalid", "true"); return; }
        var data = new FormData(form);
        var button = $("button[type=submit]", form);
        button.disabled = true;
        fetch(form.action, { method: "POST", body: data, credentials: "same-origin", headers: { "X-Requested-With": "fetch" } })
          .then(function (r) {
            return r.json().catch(function () { return {}; }).then(function (body) { return { ok: r.ok, status: r.status, body: body }; });
          })
          .then(function (res) {
            if (res.status === 401) { window.location.reload(); return; }
            if (!res.ok) {
              var msg = res.body && res.body.error && res.body.error.message;
              if (error) error.textContent = msg || "The reply could not be sent. Try again.";
              return;
            }
            box.value = "";
            // A fresh id for the next reply; a retry of this one would have reused it.
            $("input[name=client_message_id]", form).value = "console-" + Date.now().toString(36) + Math.random().toString(36).slice(2, 10);
            clearTimeout(typingOffTimer); sendTyping(false); lastTypingSent = 0;
            fetchMessages();
            refreshHeader();
          })
          .catch(function () { if (error) error.textContent = "You seem to be offline. Your reply was not sent."; })
          .then(function () { button.disabled = false; box.focus(); });
      });
      if (!$(".flash") && current) box.focus({ preventScroll: true });
    }
  }

  document.addEventListener("DOMContentLoaded", function () {
    setupCopy();
    setupReveal();
    setupPreview();
    setupInbox();
  });
})();
