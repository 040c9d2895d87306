/* Backchannel web-view helper: loaded by pages the widget opens in its sheet.
 *
 *   Backchannel.close({result: "card ending 1111"})  // closes the sheet; result is optional
 *   Backchannel.setTitle("Card details")
 *
 * Messages go to the window that opened the page (the widget's host page, or the page
 * that opened this one in a new tab when framing was refused). The widget accepts them only
 * from the frame it opened, at that frame's origin. On Backchannel's hosted forms this script
 * also validates and submits the form without reloading, so typed values never round-trip.
 */
(function () {
  "use strict";
  if (window.Backchannel && window.Backchannel.__webview) return;

  var RESULT_MAX = 200;
  var STATUSES = { closed: true, submitted: true };
  var closed = false;

  function target() {
    if (window.parent && window.parent !== window) return window.parent;
    return window.opener || null;
  }

  function targetOrigin() {
    // The framing page's origin when the browser tells us; the message carries nothing the
    // page did not choose to reveal, so "*" is the fallback (e.g. a tab opened as fallback).
    try {
      var ancestors = window.location.ancestorOrigins;
      if (ancestors && ancestors.length && ancestors[0] !== "null") return ancestors[0];
    } catch (e) { /* not supported */ }
    return "*";
  }

  function post(message) {
    var to = target();
    if (!to) return false;
    try {
      to.postMessage(message, targetOrigin());
      return true;
    } catch (e) {
      return false;
    }
  }

  function close(options) {
    options = options || {};
    if (closed) return;
    closed = true;
    var message = { backchannel: "webview.close", status: STATUSES[options.status] ? options.status : "closed" };
    if (options.result !== undefined && options.result !== null) {
      message.result = String(options.result).slice(0, RESULT_MAX);
    }
    post(message);
    if (window.parent === window && window.opener) {
      // Opened in a new tab: give the customer their chat back.
      setTimeout(function () { window.close(); }, 50);
    }
  }

  function setTitle(title) {
    var text = String(title == null ? "" : title).slice(0, 80);
    document.title = text;
    post({ backchannel: "webview.title", title: text });
  }

  window.Backchannel = { close: close, setTitle: setTitle, __webview: true };

  // --- Backchannel's own hosted pages ----------------------------------------------------

  function onReady(fn) {
    if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", fn);
    else fn();
  }

  function showError(form, name, message) {
    var box = form.querySelector('[data-bc-error-for="' + name + '"]');
    var input = form.elements.namedItem(name);
    if (box) {
      box.textContent = message || "";
      box.hidden = !message;
    }
    if (input && input.setAttribute) {
      if (message) input.setAttribute("aria-invalid", "true");
      else input.removeAttribute("aria-invalid");
      var field = input.closest && input.closest(".bc-field");
      if (field) field.classList.toggle("bc-invalid", !!message);
    }
  }

  function showFormError(form, message) {
    var box = form.querySelector("[data-bc-form-error]");
    if (!box) return;
    box.textContent = message || "";
    box.hidden = !message;
  }

  function clearErrors(form) {
    showFormError(form, "");
    Array.prototype.forEach.call(form.querySelectorAll("[data-bc-error-for]"), function (box) {
      showError(form, box.getAttribute("data-bc-error-for"), "");
    });
  }

  function checkFields(form) {
    var first = null;
    Array.prototype.forEach.call(form.elements, function (el) {
      if (!el.name || !el.willValidate) return;
      var message = el.checkValidity() ? "" : el.validity.valueMissing ? "This field is required."
        : (el.validity.patternMismatch && el.getAttribute("data-bc-pattern-message")) || el.validationMessage;
      showError(form, el.name, message);
      if (message && !first) first = el;
    });
    if (first) first.focus();
    return !first;
  }

  function enhance(form) {
    form.noValidate = true; // our messages, next to each field, instead of browser bubbles
    var button = form.querySelector('button[type="submit"]');
    var busy = false;
    // An error goes away as soon as the customer edits its field.
    form.addEventListener("input", function (event) {
      if (event.target && event.target.name) showError(form, event.target.name, "");
    });
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      if (busy) return;
      clearErrors(form);
      if (!checkFields(form)) return;
      busy = true;
      if (button) button.disabled = true;
      var body = new URLSearchParams(new FormData(form));
      fetch(window.location.href, {
        method: "POST",
        body: body,
        credentials: "omit",
        headers: { Accept: "application/json" },
      })
        .then(function (response) {
          return response.json().then(
            function (data) { return { status: response.status, data: data || {} }; },
            function () { return { status: response.status, data: {} }; }
          );
        })
        .then(function (answer) {
          if (answer.status >= 200 && answer.status < 300) {
            form.hidden = true;
            close({ status: "submitted" });
            return;
          }
          if (answer.status === 422 && answer.data.errors) {
            var errors = answer.data.errors;
            var focus = null;
            Object.keys(errors).forEach(function (name) {
              if (name === "_form") showFormError(form, errors[name]);
              else {
                showError(form, name, errors[name]);
                if (!focus) focus = form.elements.namedItem(name);
              }
            });
            if (focus && focus.focus) focus.focus();
            return;
          }
          showFormError(form, answer.data.error || "We couldn't submit the form just now. Please try again.");
        })
        .catch(function () {
          showFormError(form, "We couldn't reach the server. Check your connection and try again.");
        })
        .then(function () {
          busy = false;
          if (button) button.disabled = false;
        });
    });
  }

  // Escape closes the widget's sheet from inside the page, as it does from the widget.
  document.addEventListener("keydown", function (e) {
    if (e.key === "Escape" && !e.defaultPrevented && !closed && window.parent !== window) {
      post({ backchannel: "webview.escape" });
    }
  });

  onReady(function () {
    var body = document.body;
    if (!body) return;
    // In the widget's sheet the sheet's header already shows the title.
    if (window.parent !== window) body.classList.add("bc-in-sheet");
    var title = body.getAttribute("data-bc-title");
    if (title) setTitle(title);
    // The widget's theme colour on the submit button (set here: the page allows no inline style).
    var accent = body.getAttribute("data-bc-accent");
    if (accent && /^#[0-9a-f]{6}$/i.test(accent)) {
      body.style.setProperty("--bc-accent", accent);
      body.style.setProperty("--bc-accent-text", body.getAttribute("data-bc-accent-text") === "#111827" ? "#111827" : "#ffffff");
    }
    var form = document.querySelector("form[data-bc-form]");
    if (form) enhance(form);
    var closeWith = body.getAttribute("data-bc-close");
    if (closeWith) close({ status: closeWith });
  });
})();
