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

  // --- <form data-confirm="Question?">: destructive actions ask first ----------------------
  function setupConfirm() {
    $all("form[data-confirm]").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        if (!window.confirm(form.getAttribute("data-confirm"))) event.preventDefault();
      });
    });
    // <input type=checkbox data-confirm-on="Question?">: turning it on asks first, on submit.
    $all("input[data-confirm-on]").forEach(function (box) {
      if (!box.form) return;
      box.form.addEventListener("submit", function (event) {
        if (box.checked && !window.confirm(box.getAttribute("data-confirm-on"))) event.preventDefault();
      });
    });
  }

  // --- webhook events: "All events" or the ticked ones, one clear choice ------------------
  function setupEventsChoice() {
    $all("[data-events-choice]").forEach(function (box) {
      var all = $("input[name=events_mode][value=all]", box);
      var some = $("input[name=events_mode][value=some]", box);
      var singles = $all("input[name=events]", box);
      all.addEventListener("change", function () {
        if (all.checked) singles.forEach(function (c) { c.checked = false; });
      });
      singles.forEach(function (c) {
        c.addEventListener("change", function () { if (c.checked) some.checked = true; });
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

    // Opening a conversation shows its newest message, and keeps showing it while images,
    // videos and new messages arrive, until the agent scrolls up to read (then nothing moves).
    var pinned = true;
    function scrollToEnd() { if (transcript) { transcript.scrollTop = transcript.scrollHeight; pinned = true; } }
    if (transcript) {
      transcript.addEventListener("scroll", function () {
        pinned = transcript.scrollHeight - transcript.scrollTop - transcript.clientHeight < 80;
      }, { passive: true });
      var follow = function () { if (pinned) transcript.scrollTop = transcript.scrollHeight; };
      // load and loadedmetadata do not bubble: listen in the capture phase.
      transcript.addEventListener("load", follow, true);
      transcript.addEventListener("loadedmetadata", follow, true);
      transcript.addEventListener("error", follow, true);
      if (window.ResizeObserver) new ResizeObserver(follow).observe(transcript);
      window.addEventListener("load", follow);
    }
    scrollToEnd();

    function get(url) {
      return fetch(url, { credentials: "same-origin", headers: { "X-Requested-With": "fetch" } }).then(function (r) {
        if (r.status === 401 || r.redirected && r.url.indexOf("/console/login") >= 0) { window.location.reload(); throw new Error("logged out"); }
        if (!r.ok) throw new Error("HTTP " + r.status);
        return r.text();
      });
    }

    var q = inbox.getAttribute("data-q") || "";
    var list = $("#conversation-list");
    var searchForm = $(".inbox-search");
    // The list's view, search and filters, as the search form holds them.
    function listParams() {
      var params = new URLSearchParams();
      params.set("view", view);
      if (searchForm) new FormData(searchForm).forEach(function (v, k) { if (k !== "view" && v) params.set(k, v); });
      return params;
    }

    var loadingMore = false; // a "Load more" in flight: a refresh waits for it, then keeps its rows
    var refreshAfterMore = false;
    var refreshing = false;

    function refreshList(delay) {
      clearTimeout(listTimer);
      if (loadingMore) { refreshAfterMore = true; return; }
      listTimer = setTimeout(function () {
        // A "Load more" that began meanwhile goes first (its rows would be dropped otherwise).
        if (loadingMore) { refreshAfterMore = true; return; }
        // As many rows as the list shows ("Load more" included), for the current search.
        var count = $all(".conv-list > li", list).length;
        var params = listParams();
        if (count > 50) params.set("count", count);
        if (current) params.set("current", current);
        var url = "/console/inbox/list?" + params.toString();
        var gen = ++listGen;
        // Only the newest answer counts: an older, slower one must not overwrite it.
        refreshing = true;
        get(url).then(function (html) { if (gen === listGen) list.innerHTML = html; }).catch(function () {})
          .then(function () { if (gen === listGen) refreshing = false; });
      }, delay === undefined ? 150 : delay);
    }

    // "Load more": the next page of the list, appended (without script the form opens it alone).
    list.addEventListener("submit", function (e) {
      var form = e.target;
      if (!form.hasAttribute || !form.hasAttribute("data-load-more")) return;
      e.preventDefault();
      var button = $("button", form);
      button.disabled = true;
      var params = new URLSearchParams(new FormData(form));
      if (current) params.set("current", current);
      var gen = ++listGen; // a refresh in flight would drop these rows: it is run again after
      loadingMore = true;
      if (refreshing) { refreshing = false; refreshAfterMore = true; }
      get("/console/inbox/list?" + params.toString()).then(function (html) {
        if (gen !== listGen) return;
        var box = document.createElement("div");
        box.innerHTML = html;
        var ul = $(".conv-list", list);
        var added = $all(".conv-list > li", box);
        added.forEach(function (li) { ul.appendChild(li); });
        var next = $("form[data-load-more]", box);
        if (next) form.replaceWith(next); else form.remove();
        var first = added.length ? $("a", added[0]) : null;
        if (first) first.focus(); // keyboard users go on where the new rows start
      }).catch(function () { button.disabled = false; }).then(function () {
        loadingMore = false;
        if (refreshAfterMore) { refreshAfterMore = false; refreshList(0); }
      });
    });

    // "Search conversations": results as one types (Enter submits the form without script).
    var searchBox = $("#inbox-search");
    if (searchBox) {
      var changed = function (delay) {
        q = searchBox.value.trim();
        var url = new URL(window.location.href);
        var params = listParams();
        ["q", "handled_by", "assignee", "tag"].forEach(function (k) {
          if (params.get(k)) url.searchParams.set(k, params.get(k)); else url.searchParams.delete(k);
        });
        window.history.replaceState(null, "", url.toString());
        $all(".tabs .tab").forEach(function (tab) {
          var here = !q && tab.getAttribute("href") === "/console/inbox" + (view !== "open" ? "?view=" + view : "");
          if (here) tab.setAttribute("aria-current", "page"); else tab.removeAttribute("aria-current");
        });
        refreshList(delay);
      };
      searchBox.addEventListener("input", function () { changed(250); });
      $all("[data-filter]", searchForm).forEach(function (el) {
        el.addEventListener(el.tagName === "SELECT" ? "change" : "input", function () { changed(el.tagName === "SELECT" ? 0 : 300); });
      });
      var apply = $("#filter-apply");
      if (apply) apply.hidden = true; // the filters apply as they change
      searchForm.addEventListener("submit", function (e) { e.preventDefault(); changed(0); });
    }

    // Fetch everything after the last seq we show: the store is the truth, so nothing is
    // missed or shown twice however events arrive (or do not, while reconnecting).
    function fetchMessages() {
      if (!current || !transcript) return;
      if (fetchingMessages) { refetchAgain = true; return; }
      var nearEnd = pinned || transcript.scrollHeight - transcript.scrollTop - transcript.clientHeight < 120;
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

    // A web view opening or closing annotates a message already shown, and an assignment,
    // hand-over or resolve adds a line between messages: re-render them all, then catch up
    // on anything newer than this answer (the store is the truth).
    var reloadGen = 0;
    function reloadTranscript() {
      if (!current || !transcript) return;
      var gen = ++reloadGen;
      var wasPinned = pinned;
      get("/console/inbox/" + encodeURIComponent(current) + "/messages?after=0").then(function (html) {
        if (gen !== reloadGen) return;
        var box = document.createElement("div");
        box.innerHTML = html;
        var items = $all("[data-seq], [data-line]", box);
        if (!items.length) return;
        var top = transcript.scrollTop;
        $all("[data-seq], [data-line]", transcript).forEach(function (el) { el.remove(); });
        items.forEach(function (el) { transcript.appendChild(el); });
        var seqs = $all("[data-seq]", transcript);
        if (seqs.length) lastSeq = parseInt(seqs[seqs.length - 1].getAttribute("data-seq"), 10);
        if (wasPinned) scrollToEnd(); else transcript.scrollTop = top;
        fetchMessages();
      }).catch(function () {});
    }

    // The header re-rendered; focus stays on the same control (by id or label) where it is
    // still there ("Resolve" becomes "Reopen": focus goes to it).
    function focusKey(el) { return el.id || el.textContent.trim(); }
    function refreshHeader(keep) {
      if (!current) return Promise.resolve();
      var gen = ++headerGen;
      return get("/console/inbox/" + encodeURIComponent(current) + "/header?view=" + encodeURIComponent(view)).then(function (html) {
        if (gen !== headerGen) return;
        var header = $("#conversation-header");
        var active = document.activeElement;
        var focused = !!keep || (active && header.contains(active));
        var key = keep || (focused ? focusKey(active) : null);
        header.innerHTML = html;
        if (focused) {
          var same = key && ($("#" + key, header) || $all("button", header).filter(function (b) { return b.textContent.trim() === key; })[0]);
          var swap = { "Resolve": "Reopen", "Reopen": "Resolve", "Assign to me": "Assign" };
          if (!same && swap[key]) same = $all("button", header).filter(function (b) { return b.textContent.trim() === swap[key]; })[0];
          var target = same || $("button, select", header);
          if (target) target.focus();
        }
      }).catch(function () {});
    }

    // Assign, Assign to me, Return to bot, Resolve, Reopen: in place, no reload, so the
    // draft reply stays. "Resolve and next" opens the next conversation the server names.
    var notice = $("#thread-notice");
    var noticeTimer = null;
    function placeNotice() { // just under the header (whose height changes with its buttons), over the transcript
      var head = $("#conversation-header");
      if (notice && head) notice.style.top = head.offsetHeight + "px";
    }
    function say(text, bad) {
      if (!notice) return;
      clearTimeout(noticeTimer);
      notice.textContent = text || "";
      notice.classList.toggle("is-error", !!bad);
      placeNotice();
      noticeTimer = setTimeout(function () { notice.textContent = ""; }, 5000);
    }
    var header = $("#conversation-header");
    if (header) {
      header.addEventListener("submit", function (e) {
        var form = e.target;
        e.preventDefault();
        // Where focus goes back to once the header is redrawn (the button is disabled meanwhile).
        var keep = e.submitter ? focusKey(e.submitter) : (header.contains(document.activeElement) ? focusKey(document.activeElement) : null);
        var data = new FormData(form);
        if (e.submitter && e.submitter.name) data.append(e.submitter.name, e.submitter.value);
        var buttons = $all("button", form);
        buttons.forEach(function (b) { b.disabled = true; });
        fetch(form.action, { method: "POST", body: data, credentials: "same-origin", headers: { "X-Requested-With": "fetch" } })
          .then(function (r) {
            if (r.status === 401) { window.location.reload(); return null; }
            return r.json().catch(function () { return { notice: "That did not work. Try again.", ok: false }; });
          })
          .then(function (body) {
            if (!body) return;
            if (body.next) { window.location.assign(body.next); return; }
            say(body.notice, body.ok === false);
            return refreshHeader(keep).then(function () { placeNotice(); refreshList(0); reloadTranscript(); });
          })
          .catch(function () { say("You seem to be offline. Nothing was changed.", true); })
          .then(function () { buttons.forEach(function (b) { if (b.isConnected) b.disabled = false; }); });
      });
      // "Resolve ▾": Escape or a click elsewhere closes its menu.
      document.addEventListener("keydown", function (e) {
        var open = e.key === "Escape" && $(".more-actions[open]", header);
        if (open) { open.open = false; $("summary", open).focus(); }
      });
      document.addEventListener("click", function (e) {
        $all(".more-actions[open]", header).forEach(function (d) { if (!d.contains(e.target)) d.open = false; });
      });
      // Assign on pick: choosing someone from the open list assigns at once. Arrow keys on
      // the closed list only move the choice (Chromium fires "change" for each); "Assign" then.
      var keyed = false;
      header.addEventListener("keydown", function (e) {
        // Keys that open the list (Space, Enter, Alt+arrow) lead to a pick; the others only move.
        if (e.target.id === "assignee") keyed = !e.altKey && (/^(Arrow|Home|End|Page)/.test(e.key) || (e.key.length === 1 && e.key !== " "));
      });
      header.addEventListener("mousedown", function (e) { if (e.target.id === "assignee") keyed = false; });
      header.addEventListener("change", function (e) {
        if (e.target.id !== "assignee") return;
        if (keyed) { keyed = false; return; }
        e.target.form.requestSubmit();
      });
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

    var announce = setupNotifications(current);

    function onEvent(ev) {
      if (ev.type === "resync" || ev.type === "hello") { refreshList(); fetchMessages(); refreshHeader(); return; }
      refreshList();
      if (ev.type === "message.created" && ev.actor && ev.actor.type === "user" && me && ev.assignee_id === me) {
        announce(ev.conversation_id); // a customer writes in a conversation assigned to me
      } else if (ev.type === "conversation.handover" && ev.to === "human" && !ev.assignee_id) {
        announce(ev.conversation_id); // handed to humans, and waiting
      }
      if (ev.conversation_id !== current) return;
      if (ev.type === "message.created") {
        if (ev.actor && ev.actor.type === "user") showTyping({ type: "user" }, false);
        if (ev.seq > lastSeq) fetchMessages();
      } else if (ev.type === "conversation.typing") {
        showTyping(ev.actor, ev.on);
      } else if (ev.type.indexOf("conversation.") === 0 && ev.type !== "conversation.read") {
        refreshHeader();
        reloadTranscript(); // the line it adds ("Assigned to …", "Resolved")
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
      var files = setupAttachments(form, box, error);
      var canned = setupCanned(form, box);
      box.required = false; // a reply may be files alone; the submit handler says what is missing
      // The draft reply survives leaving the conversation and coming back (this tab only).
      var draftKey = "bc-draft:" + current;
      var saveDraft = function () {
        try { if (box.value) window.sessionStorage.setItem(draftKey, box.value); else window.sessionStorage.removeItem(draftKey); } catch (err) { /* private mode */ }
      };
      try { if (!box.value) box.value = window.sessionStorage.getItem(draftKey) || ""; } catch (err) { /* private mode */ }
      box.addEventListener("input", saveDraft);
      box.addEventListener("input", function () {
        if (error) error.textContent = "";
        box.removeAttribute("aria-invalid");
        var now = Date.now();
        if (box.value && now - lastTypingSent > 3000) { sendTyping(true); lastTypingSent = now; }
        clearTimeout(typingOffTimer);
        typingOffTimer = setTimeout(function () { sendTyping(false); lastTypingSent = 0; }, 4000);
      });
      box.addEventListener("keydown", function (e) {
        if (canned.keydown(e)) return; // the "/" listbox took the key
        if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); form.requestSubmit(); }
      });
      form.addEventListener("submit", function (e) {
        e.preventDefault();
        // "Add note" submits the same box as a private note (the team's alone).
        var asNote = !!(e.submitter && e.submitter.name === "as" && e.submitter.value === "note");
        var problem = files.problem();
        if (problem) { if (error) error.textContent = problem; return; }
        if (!box.value.trim() && !files.ids().length) { if (error) error.textContent = asNote ? "Write a note first." : "Write a reply first."; box.setAttribute("aria-invalid", "true"); return; }
        var data = new FormData(form);
        if (asNote) data.append("as", "note");
        files.ids().forEach(function (id) { data.append("file_id", id); });
        var buttons = $all("button[type=submit]", form);
        buttons.forEach(function (b) { b.disabled = true; });
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
            saveDraft();
            files.clear();
            // A fresh id for the next reply; a retry of this one would have reused it.
            $("input[name=client_message_id]", form).value = "console-" + Date.now().toString(36) + Math.random().toString(36).slice(2, 10);
            clearTimeout(typingOffTimer); sendTyping(false); lastTypingSent = 0;
            fetchMessages();
            refreshHeader();
          })
          .catch(function () { if (error) error.textContent = "You seem to be offline. Your reply was not sent."; })
          .then(function () { buttons.forEach(function (b) { b.disabled = false; }); box.focus(); });
      });
      // Not on touch screens: focusing would pop the keyboard up over the conversation.
      var touch = window.matchMedia && window.matchMedia("(pointer: coarse)").matches;
      if (!$(".flash") && current && !touch) box.focus({ preventScroll: true });
    }
  }

  // --- Inbox: the customer panel's drawer (below 1360 px) ----------------------------------
  // Without script "Customer details" is a link to the panel (CSS shows it as :target).
  function setupCustomerPanel() {
    var panel = $("#customer-panel");
    if (!panel) return;
    var opener = null;
    function open(from) {
      opener = from || null;
      panel.classList.add("is-open");
      $all("#customer-toggle").forEach(function (t) { t.setAttribute("aria-expanded", "true"); });
      $("#customer-panel-title").focus();
    }
    function close() {
      if (!panel.classList.contains("is-open") && window.location.hash !== "#customer-panel") return false;
      panel.classList.remove("is-open");
      if (window.location.hash === "#customer-panel") history.replaceState(null, "", window.location.pathname + window.location.search);
      $all("#customer-toggle").forEach(function (t) { t.setAttribute("aria-expanded", "false"); });
      var back = opener && opener.isConnected ? opener : $("#customer-toggle");
      if (back) back.focus();
      return true;
    }
    document.addEventListener("click", function (e) {
      var toggle = e.target.closest && e.target.closest("#customer-toggle");
      if (toggle) { e.preventDefault(); if (panel.classList.contains("is-open")) close(); else open(toggle); return; }
      if (e.target.closest && e.target.closest("#customer-close")) { e.preventDefault(); close(); }
    });
    panel.addEventListener("keydown", function (e) { if (e.key === "Escape" && close()) e.stopPropagation(); });
    $all("#customer-toggle").forEach(function (t) { t.setAttribute("aria-expanded", "false"); });
    return { open: open, close: close };
  }

  // --- Inbox: keyboard shortcuts and the command menu (Ctrl/⌘ K) ---------------------------
  // Single keys never act while the focus is in a field (typing stays typing), nor with
  // Ctrl, Alt or ⌘ held (the browser's own shortcuts stay the browser's).
  function typingIn(el) {
    if (!el) return false;
    var tag = el.tagName;
    return tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT" || el.isContentEditable;
  }

  function setupShortcuts(panel) {
    var inbox = $("#inbox");
    if (!inbox) return;
    var help = $("#shortcuts-dialog");
    var menu = $("#command-menu");
    var helpButton = $("#shortcuts-open");
    if (!help || !menu || typeof help.showModal !== "function") return;
    if (helpButton) helpButton.hidden = false;

    function rows() { return $all("#conversation-list a.conv"); }
    function step(by) {
      var list = rows();
      if (!list.length) return;
      var at = list.findIndex(function (a) { return a.classList.contains("is-current"); });
      var next = at < 0 ? list[by > 0 ? 0 : list.length - 1] : list[at + by];
      if (next) window.location.assign(next.href);
    }
    function headerButton(text) {
      return $all("#conversation-header button").filter(function (b) { return b.textContent.trim() === text; })[0];
    }
    function resolve(andNext) {
      var button = andNext ? $("#conversation-header button[name=then][value=next]") : headerButton("Resolve");
      if (button) button.form.requestSubmit(button);
    }
    function focusReply() { var box = $("#reply"); if (box) box.focus(); }
    function focusAssignee() {
      var select = $("#assignee");
      if (!select) return;
      select.focus();
    }
    function focusSearch() { var box = $("#inbox-search"); if (box) { box.focus(); box.select(); } }
    function openHelp() { if (!help.open) { closeMenu(); help.showModal(); } }

    $all("[data-close-dialog]", help).forEach(function (b) { b.addEventListener("click", function () { help.close(); }); });
    if (helpButton) helpButton.addEventListener("click", openHelp);
    var returnTo = null;
    help.addEventListener("close", function () { if (returnTo && returnTo.isConnected) returnTo.focus(); });

    // The command menu: a combobox over a listbox of what can be done here.
    var input = $("#command-input", menu);
    var list = $("#command-list", menu);
    var commands = [], shown = [], active = 0;
    function commandList() {
      var out = [];
      var add = function (label, run, hint) { out.push({ label: label, run: run, hint: hint || "" }); };
      if ($("#reply")) add("Reply", focusReply, "r");
      if (headerButton("Assign to me")) add("Assign to me", function () { headerButton("Assign to me").click(); });
      var select = $("#assignee");
      if (select) {
        $all("option", select).forEach(function (o) {
          if (o.selected) return;
          var name = o.textContent.trim();
          add(o.value ? "Assign to " + name : "Unassign", function () { select.value = o.value; select.form.requestSubmit(); });
        });
      }
      if (headerButton("Resolve")) { add("Resolve", function () { resolve(false); }, "e"); add("Resolve and next", function () { resolve(true); }, "Shift e"); }
      if (headerButton("Reopen")) add("Reopen", function () { headerButton("Reopen").click(); });
      if (headerButton("Return to bot")) add("Return to bot", function () { headerButton("Return to bot").click(); });
      if ($("#customer-toggle") && panel && getComputedStyle($("#customer-toggle")).display !== "none") add("Customer details", function () { panel.open(); });
      add("Next conversation", function () { step(1); }, "j");
      add("Previous conversation", function () { step(-1); }, "k");
      add("Search conversations", focusSearch, "/");
      $all(".tabs .tab").forEach(function (tab) { add("Show " + tab.textContent.trim() + " conversations", function () { window.location.assign(tab.href); }); });
      rows().forEach(function (a) {
        var name = $(".conv-name", a);
        if (name && !a.classList.contains("is-current")) add("Open " + name.textContent.trim(), function () { window.location.assign(a.href); });
      });
      add("Keyboard shortcuts", function () { setTimeout(openHelp, 0); }, "?");
      return out;
    }
    function highlight(i) {
      active = i;
      $all("[role=option]", list).forEach(function (li, n) { li.setAttribute("aria-selected", n === i ? "true" : "false"); });
      var li = list.children[i];
      if (li) { input.setAttribute("aria-activedescendant", li.id); li.scrollIntoView({ block: "nearest" }); } else input.removeAttribute("aria-activedescendant");
    }
    function filter() {
      var words = input.value.toLowerCase().split(/\s+/).filter(Boolean);
      shown = commands.filter(function (c) {
        var label = c.label.toLowerCase();
        return words.every(function (w) { return label.indexOf(w) >= 0; });
      });
      list.textContent = "";
      shown.forEach(function (c, i) {
        var li = document.createElement("li");
        li.id = "command-" + i;
        li.setAttribute("role", "option");
        li.textContent = c.label;
        if (c.hint) {
          var k = document.createElement("kbd");
          k.textContent = c.hint;
          k.setAttribute("aria-hidden", "true");
          li.appendChild(k);
        }
        li.addEventListener("mousedown", function (e) { e.preventDefault(); run(i); });
        list.appendChild(li);
      });
      if (!shown.length) {
        var none = document.createElement("li");
        none.className = "command-none";
        none.setAttribute("role", "option");
        none.setAttribute("aria-disabled", "true");
        none.id = "command-none";
        none.textContent = "No command matches";
        list.appendChild(none);
      }
      highlight(shown.length ? 0 : -1);
    }
    function run(i) {
      var c = shown[i];
      if (!c) return;
      returnTo = null;
      menu.close();
      c.run();
    }
    function openMenu() {
      if (menu.open) return;
      if (help.open) help.close();
      returnTo = document.activeElement;
      commands = commandList();
      input.value = "";
      filter();
      menu.showModal();
      input.focus();
    }
    function closeMenu() { if (menu.open) menu.close(); }
    menu.addEventListener("close", function () { if (returnTo && returnTo.isConnected) returnTo.focus(); returnTo = null; });
    menu.addEventListener("click", function (e) { if (e.target === menu) menu.close(); }); // the backdrop
    input.addEventListener("input", filter);
    input.addEventListener("keydown", function (e) {
      if (e.key === "ArrowDown" && shown.length) { e.preventDefault(); highlight((active + 1) % shown.length); }
      else if (e.key === "ArrowUp" && shown.length) { e.preventDefault(); highlight((active - 1 + shown.length) % shown.length); }
      else if (e.key === "Home" && shown.length && e.ctrlKey) { e.preventDefault(); highlight(0); }
      else if (e.key === "Enter") { e.preventDefault(); run(active); }
    });

    document.addEventListener("keydown", function (e) {
      if ((e.ctrlKey || e.metaKey) && !e.altKey && (e.key === "k" || e.key === "K")) {
        e.preventDefault();
        if (menu.open) menu.close(); else openMenu();
        return;
      }
      if (e.defaultPrevented || e.ctrlKey || e.metaKey || e.altKey || e.isComposing) return;
      if (help.open || menu.open) return;
      var el = document.activeElement;
      if (e.key === "Escape" && typingIn(el) && (el.id === "reply" || el.id === "inbox-search" || el.id === "assignee")) {
        // Out of the box, so the single keys work; a second Escape does nothing more.
        if (!$("#canned-list") || $("#canned-list").hidden) el.blur();
        return;
      }
      if (typingIn(el)) return;
      var actions = {
        j: function () { step(1); },
        k: function () { step(-1); },
        r: focusReply,
        e: function () { resolve(false); },
        E: function () { resolve(true); },
        a: focusAssignee,
        "/": focusSearch,
        "?": function () { returnTo = document.activeElement; openHelp(); },
      };
      var act = actions[e.key];
      if (!act) return;
      e.preventDefault();
      act();
    });
  }

  // --- Inbox reply box: "/" opens a listbox of canned responses -------------------------
  // The Reply box is a combobox while it is open: arrows move, Enter or Tab chooses, Escape
  // closes; choosing replaces the "/word" with the response's text.
  function setupCanned(form, box) {
    var responses = null;
    var list = document.createElement("ul");
    list.id = "canned-list";
    list.className = "canned-list";
    list.setAttribute("role", "listbox");
    list.setAttribute("aria-label", "Canned responses");
    list.hidden = true;
    form.appendChild(list);
    box.setAttribute("aria-controls", "canned-list");
    // aria-autocomplete and aria-activedescendant suit the Reply textbox; aria-expanded does
    // not (axe: a textbox may not carry it) and the textbox must stay a textbox named "Reply".
    box.setAttribute("aria-autocomplete", "list");
    var matches = [], active = 0, token = null;

    function load() {
      if (responses) return Promise.resolve(responses);
      return fetch("/console/canned-responses.json", { credentials: "same-origin", headers: { "X-Requested-With": "fetch" } })
        .then(function (r) { return r.ok ? r.json() : []; })
        .then(function (data) { responses = data; return data; })
        .catch(function () { return []; });
    }
    function close() {
      list.hidden = true; list.textContent = ""; matches = []; token = null;
      box.removeAttribute("aria-activedescendant");
    }
    function highlight(i) {
      active = i;
      $all("[role=option]", list).forEach(function (li, n) { li.setAttribute("aria-selected", n === i ? "true" : "false"); });
      var current = list.children[i];
      if (current) { box.setAttribute("aria-activedescendant", current.id); current.scrollIntoView({ block: "nearest" }); }
    }
    function choose(i) {
      var c = matches[i];
      if (!c || !token) return;
      var before = box.value.slice(0, token.start), after = box.value.slice(token.end);
      box.value = before + c.text + after;
      var caret = before.length + c.text.length;
      box.setSelectionRange(caret, caret);
      close();
      box.focus();
      box.dispatchEvent(new Event("input", { bubbles: true }));
    }
    function update() {
      var upto = box.value.slice(0, box.selectionStart);
      var m = /(^|\s)\/([a-z0-9_-]*)$/i.exec(upto);
      if (!m) { close(); return; }
      var word = m[2].toLowerCase();
      var start = upto.length - word.length - 1;
      load().then(function (all) {
        var found = all.filter(function (c) { return c.shortcut.indexOf(word) === 0; })
          .concat(all.filter(function (c) { return word && c.shortcut.indexOf(word) > 0; }));
        if (!found.length) { close(); return; }
        matches = found.slice(0, 20);
        token = { start: start, end: box.selectionStart };
        list.textContent = "";
        matches.forEach(function (c, i) {
          var li = document.createElement("li");
          li.id = "canned-option-" + i;
          li.setAttribute("role", "option");
          li.setAttribute("aria-label", "/" + c.shortcut);
          var key = document.createElement("span"); key.className = "canned-key"; key.textContent = "/" + c.shortcut;
          var text = document.createElement("span"); text.className = "canned-preview"; text.textContent = c.text;
          li.appendChild(key); li.appendChild(text);
          li.addEventListener("mousedown", function (e) { e.preventDefault(); choose(i); });
          list.appendChild(li);
        });
        list.hidden = false;
        highlight(0);
      });
    }
    box.addEventListener("input", update);
    box.addEventListener("blur", function () { setTimeout(close, 100); });
    return {
      keydown: function (e) {
        if (list.hidden || !matches.length) return false;
        if (e.key === "ArrowDown") { e.preventDefault(); highlight((active + 1) % matches.length); return true; }
        if (e.key === "ArrowUp") { e.preventDefault(); highlight((active - 1 + matches.length) % matches.length); return true; }
        if ((e.key === "Enter" && !e.shiftKey) || e.key === "Tab") { e.preventDefault(); choose(active); return true; }
        if (e.key === "Escape") { e.preventDefault(); close(); return true; }
        return false;
      },
    };
  }

  // --- Inbox reply box: "Attach a file" ---------------------------------------------------
  // Each file uploads at once (with progress) to the conversation's upload route; the reply
  // then carries the uploaded files' ids. Drop a file on the reply box or paste one, too.
  function formatSize(bytes) { // binary units, as the widget shows them
    var n = Number(bytes);
    if (!isFinite(n) || n < 0) return "";
    if (n < 1024) return n + " B";
    var units = ["KB", "MB", "GB"], i = -1;
    do { n /= 1024; i += 1; } while (n >= 1024 && i < units.length - 1);
    return (n < 10 ? n.toFixed(1) : Math.round(n)) + " " + units[i];
  }

  function setupAttachments(form, box, error) {
    var input = $("#reply-file");
    var list = $("#reply-files");
    var button = $("#attach-file");
    var live = $("#reply-upload-status");
    var items = [];
    var none = { ids: function () { return []; }, problem: function () { return ""; }, clear: function () {} };
    if (!input || !list || !button || !window.FormData) return none;
    var url = input.getAttribute("data-upload");
    var csrf = $("input[name=csrf_token]", form).value;
    button.hidden = false;

    function announce(text) { if (live) { live.textContent = ""; setTimeout(function () { live.textContent = text; }, 30); } }
    function make(tag, cls, text) { var n = document.createElement(tag); if (cls) n.className = cls; if (text) n.textContent = text; return n; }

    function upload(item) {
      item.state = "uploading";
      item.node.setAttribute("data-state", "uploading");
      item.retry.hidden = true;
      item.bar.hidden = false;
      item.bar.value = 0;
      item.info.textContent = "Uploading… 0%";
      announce("Uploading " + item.name + ".");
      var xhr = new XMLHttpRequest();
      item.xhr = xhr;
      xhr.open("POST", url);
      xhr.setRequestHeader("X-CSRF-Token", csrf);
      xhr.setRequestHeader("X-Requested-With", "fetch");
      xhr.upload.onprogress = function (e) {
        if (!e.lengthComputable) return;
        var pct = Math.min(99, Math.floor(e.loaded / e.total * 100));
        item.bar.value = pct;
        item.info.textContent = "Uploading… " + pct + "%";
      };
      var finish = function (ok, body, reason, final) {
        item.xhr = null;
        if (items.indexOf(item) < 0) return;
        item.bar.hidden = true;
        if (ok) {
          item.state = "ready"; item.file = body;
          item.info.textContent = formatSize(body.size) + " · ready to send";
          announce(item.name + " is ready to send.");
        } else {
          item.state = "failed"; item.retry.hidden = !!final; // too large or empty: only Remove helps
          item.info.textContent = "Not uploaded: " + reason;
          announce(item.name + " was not uploaded: " + reason);
        }
        item.node.setAttribute("data-state", item.state);
      };
      xhr.onload = function () {
        if (xhr.status === 401) { window.location.reload(); return; }
        var body = null;
        try { body = JSON.parse(xhr.responseText); } catch (e) { body = null; }
        if (xhr.status === 201 && body && body.id) { finish(true, body); return; }
        var err = (body && body.error) || {};
        var reason = err.message || "The upload failed (" + xhr.status + ").";
        if (xhr.status === 413) {
          var limit = err.details && err.details.max_bytes;
          reason = "The file is too large" + (limit ? " (the limit is " + formatSize(limit) + ")." : ".");
        }
        finish(false, null, reason, xhr.status === 413 || xhr.status === 422);
      };
      xhr.onerror = function () { finish(false, null, "You seem to be offline."); };
      var data = new FormData();
      data.append("file", item.blob, item.name);
      xhr.send(data);
    }

    function add(blob) {
      var name = blob.name || "file";
      var item = { blob: blob, name: name, state: "uploading", file: null, xhr: null };
      item.node = make("li", "reply-file");
      var icon = document.querySelector("#attach-file svg").cloneNode(true);
      icon.querySelector("use").setAttribute("href", "/static/console-icons.svg#file");
      var body = make("span", "reply-file-body");
      var title = make("span", "reply-file-name", name);
      title.title = name;
      item.info = make("span", "reply-file-info small muted");
      item.bar = make("progress");
      item.bar.max = 100;
      item.bar.setAttribute("aria-label", "Uploading " + name);
      body.appendChild(title); body.appendChild(item.info); body.appendChild(item.bar);
      item.retry = make("button", "btn btn-sm", "Retry");
      item.retry.type = "button";
      item.retry.setAttribute("aria-label", "Retry " + name);
      item.retry.addEventListener("click", function () { upload(item); item.remove.focus(); });
      item.remove = make("button", "btn btn-sm btn-icon");
      item.remove.type = "button";
      item.remove.setAttribute("aria-label", "Remove " + name);
      item.remove.title = "Remove";
      var x = icon.cloneNode(true);
      x.querySelector("use").setAttribute("href", "/static/console-icons.svg#x");
      item.remove.appendChild(x);
      item.remove.addEventListener("click", function () {
        var i = items.indexOf(item);
        if (item.xhr) item.xhr.abort();
        items.splice(i, 1);
        item.node.remove();
        list.hidden = !items.length;
        announce(name + " removed.");
        var next = items[i] || items[i - 1];
        if (next) next.remove.focus(); else box.focus();
      });
      item.node.appendChild(icon); item.node.appendChild(body); item.node.appendChild(item.retry); item.node.appendChild(item.remove);
      items.push(item);
      list.appendChild(item.node);
      list.hidden = false;
      if (error) error.textContent = "";
      upload(item);
    }

    function addAll(fileList) { Array.prototype.slice.call(fileList || []).forEach(add); }

    button.addEventListener("click", function () { input.click(); });
    input.addEventListener("change", function () { addAll(input.files); input.value = ""; });
    box.addEventListener("paste", function (e) {
      var data = e.clipboardData;
      if (!data || !data.files || !data.files.length) return;
      addAll(data.files);
      if (Array.prototype.indexOf.call(data.types || [], "text/plain") < 0) e.preventDefault();
    });
    form.addEventListener("dragover", function (e) {
      if (!e.dataTransfer || Array.prototype.indexOf.call(e.dataTransfer.types || [], "Files") < 0) return;
      e.preventDefault();
      form.classList.add("is-dropping");
    });
    form.addEventListener("dragleave", function (e) { if (!form.contains(e.relatedTarget)) form.classList.remove("is-dropping"); });
    form.addEventListener("drop", function (e) {
      if (!e.dataTransfer || !e.dataTransfer.files.length) return;
      e.preventDefault();
      form.classList.remove("is-dropping");
      addAll(e.dataTransfer.files);
    });

    return {
      ids: function () { return items.filter(function (i) { return i.state === "ready"; }).map(function (i) { return i.file.id; }); },
      problem: function () {
        if (items.some(function (i) { return i.state === "uploading"; })) return "Wait for the upload to finish, then send.";
        if (items.some(function (i) { return i.state === "failed"; })) return "A file was not uploaded: retry it or remove it.";
        return "";
      },
      clear: function () { items = []; list.textContent = ""; list.hidden = true; },
    };
  }

  // --- notifications (SPEC §11) -----------------------------------------------------------
  // A conversation handed to humans that nobody has yet, and a customer's message in a
  // conversation assigned to me: a desktop notification (title: the customer's name; body: the
  // text) and a short sound, unless that conversation is open in a visible tab. The tab's title
  // counts the conversations waiting for me: "(N) Inbox". The count lives in sessionStorage, so
  // it survives moving between pages, and a conversation leaves it when it is opened.
  var PENDING_KEY = "bc-console-pending";
  var audio = null;

  function pendingSet() {
    try { return JSON.parse(window.sessionStorage.getItem(PENDING_KEY) || "[]"); } catch (e) { return []; }
  }
  function savePending(list) {
    try { window.sessionStorage.setItem(PENDING_KEY, JSON.stringify(list)); } catch (e) { /* private mode */ }
    showCount(list.length);
  }
  var baseTitle = document.title;
  function showCount(n) { document.title = n > 0 ? "(" + n + ") Inbox · Backchannel" : baseTitle; }

  function beep() {
    try {
      var Ctx = window.AudioContext || window.webkitAudioContext;
      if (!Ctx) return;
      audio = audio || new Ctx();
      if (audio.state === "suspended") audio.resume();
      var osc = audio.createOscillator(), gain = audio.createGain();
      osc.type = "sine";
      osc.frequency.value = 880;
      gain.gain.setValueAtTime(0.0001, audio.currentTime);
      gain.gain.exponentialRampToValueAtTime(0.15, audio.currentTime + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, audio.currentTime + 0.25);
      osc.connect(gain); gain.connect(audio.destination);
      osc.start(); osc.stop(audio.currentTime + 0.3);
    } catch (e) { /* no sound, still the notification */ }
  }

  function setupNotifications(current) {
    var button = $("#enable-notifications");
    var state = $("#notify-state");
    var can = "Notification" in window;
    function show() {
      if (!button) return;
      var granted = can && Notification.permission === "granted";
      button.hidden = !can || granted || Notification.permission === "denied";
      if (state) { state.hidden = !granted; }
    }
    show();
    if (button) {
      button.addEventListener("click", function () {
        beep(); // a click lets the page make sound from now on
        Notification.requestPermission().then(show, show);
      });
    }
    // Opening a conversation (in a visible tab) is seeing it.
    function seen() {
      if (current && document.visibilityState === "visible") {
        savePending(pendingSet().filter(function (id) { return id !== current; }));
      }
    }
    document.addEventListener("visibilitychange", function () { seen(); showCount(pendingSet().length); });
    seen();
    showCount(pendingSet().length);

    return function announce(conversationId) {
      if (conversationId === current && document.visibilityState === "visible") return;
      var list = pendingSet();
      if (list.indexOf(conversationId) < 0) { list.push(conversationId); savePending(list); }
      beep();
      if (!can || Notification.permission !== "granted") return;
      fetch("/console/inbox/" + encodeURIComponent(conversationId) + "/notice.json", { credentials: "same-origin", headers: { "X-Requested-With": "fetch" } })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (info) {
          if (!info) return;
          var n = new Notification(info.customer, { body: info.text || "Waiting for a human", tag: "bc-" + conversationId });
          n.onclick = function () { window.focus(); window.location.href = "/console/inbox/" + encodeURIComponent(conversationId); };
        })
        .catch(function () {});
    };
  }

  // --- the header's "Available" toggle: flips in place (the form posts without script) -----
  function setupAvailability() {
    var form = $("#availability-form");
    if (!form) return;
    var button = $("#availability", form);
    var next = $("input[name=status]", form);
    form.addEventListener("submit", function (e) {
      e.preventDefault();
      button.disabled = true;
      fetch(form.action, { method: "POST", body: new FormData(form), credentials: "same-origin", headers: { "X-Requested-With": "fetch" } })
        .then(function (r) {
          if (r.status === 401) { window.location.reload(); return; }
          if (!r.ok) return;
          return r.json().then(function (body) {
            var on = body.status === "online";
            button.setAttribute("aria-pressed", on ? "true" : "false");
            next.value = on ? "away" : "online";
          });
        })
        .catch(function () {})
        .then(function () { button.disabled = false; });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    setupAvailability();
    setupCopy();
    setupConfirm();
    setupEventsChoice();
    setupReveal();
    setupPreview();
    setupInbox();
    setupShortcuts(setupCustomerPanel());
  });
})();
