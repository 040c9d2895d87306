// Slice, a pizza shop bot for Backchannel (docs/bots.md walks through it).
// Webhooks in (verified with the `standardwebhooks` package), REST API out (Node 18+ fetch).
//   BACKCHANNEL_API_URL=https://chat.example.com BACKCHANNEL_TOKEN=bch_… \
//   WEBHOOK_SECRET=whsec_… PUBLIC_URL=https://bot.example.com PORT=3000 node bot.js
"use strict";
const http = require("node:http");
const { Webhook } = require("standardwebhooks");

const API = process.env.BACKCHANNEL_API_URL.replace(/\/$/, "") + "/api/v1";
const TOKEN = process.env.BACKCHANNEL_TOKEN;
const PUBLIC_URL = (process.env.PUBLIC_URL || "http://localhost:3000").replace(/\/$/, "");
const PORT = Number(process.env.PORT || 3000);
const webhook = new Webhook(process.env.WEBHOOK_SECRET);

const MENU = [
  { label: "Order a pizza", payload: "ORDER" },
  { label: "Toppings", payload: "TOPPINGS" },
  { label: "Talk to a human", payload: "HUMAN" },
];
const orders = new Map(); // conversation id -> {pizza, size, street}

// [api]
// Every call to Backchannel: JSON in and out, the token as a bearer. A POST carries an
// Idempotency-Key, so retrying it after a timeout never does it twice.
async function api(method, path, body, idempotencyKey) {
  const headers = { Authorization: `Bearer ${TOKEN}`, "Content-Type": "application/json" };
  if (idempotencyKey) headers["Idempotency-Key"] = idempotencyKey;
  const r = await fetch(API + path, { method, headers, body: body && JSON.stringify(body) });
  if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${await r.text()}`);
  return r.status === 204 ? null : r.json();
}

// `key` makes the message idempotent: the same webhook handled twice posts it once.
function say(conversationId, key, messageParts, replyParts = []) {
  return api("POST", `/conversations/${conversationId}/messages`,
    { message_parts: messageParts, reply_parts: replyParts, client_message_id: key });
}

function typing(conversationId) {
  return api("POST", `/conversations/${conversationId}/typing`, { on: true });
}
// [/api]

// [events]
async function onEvent(id, event) {
  const data = event.data;
  if (event.type === "conversation.created") {
    // [greet]
    await typing(data.conversation.id);
    await say(data.conversation.id, `${id}:greet`,
      [{ text: { content: "Hi! I'm Slice. Hungry?" } }],
      [{ quick_replies: { options: MENU } }]);
    // [/greet]
  } else if (event.type === "message.created") {
    const { message, conversation } = data;
    // Answer only the customer, and only while the bot has the conversation.
    if (message.actor.type !== "user" || conversation.handled_by !== "bot") return;
    await typing(conversation.id);
    await onCustomerMessage(id, conversation.id, message);
  } else if (event.type === "webview.closed") {
    await onWebviewClosed(id, data);
  }
}
// [/events]

// [answers]
async function onCustomerMessage(id, conversationId, message) {
  // A quick reply, a drop-down choice or a carousel postback comes back as the customer's
  // message; its reply_to.payload is the payload you gave the option.
  const payload = message.reply_to ? message.reply_to.payload : "";
  if (payload === "ORDER") {
    await say(conversationId, `${id}:menu`, [{ carousel: { cards: [
      { title: "Margherita", subtitle: "Tomato, mozzarella, basil", image_url: `${PUBLIC_URL}/margherita.jpg`,
        buttons: [{ postback: { label: "Margherita", payload: "PIZZA:Margherita" } }] },
      { title: "Diavola", subtitle: "Spicy salami, chili", image_url: `${PUBLIC_URL}/diavola.jpg`,
        buttons: [{ postback: { label: "Diavola", payload: "PIZZA:Diavola" } }] },
    ] } }]);
  } else if (payload.startsWith("PIZZA:")) {
    orders.set(conversationId, { pizza: payload.slice(6) });
    await say(conversationId, `${id}:size`, [{ text: { content: "Which size?" } }],
      [{ dropdown: { placeholder: "Choose a size", options: [
        { label: "Small (26 cm)", payload: "SIZE:small" }, { label: "Large (32 cm)", payload: "SIZE:large" },
      ] } }]);
  } else if (payload.startsWith("SIZE:")) {
    Object.assign(orders.get(conversationId) || {}, { size: payload.slice(5) });
    await askForAddress(id, conversationId);
  } else if (payload === "TOPPINGS") {
    await say(conversationId, `${id}:toppings`, [{ web_view: {
      id: "toppings", label: "Pick toppings", url: `${PUBLIC_URL}/toppings`, height: "tall" } }]);
  } else if (payload === "HUMAN") {
    await handOver(id, conversationId);
  } else {
    await say(conversationId, `${id}:help`, [{ text: { content: "I can help with these:" } }],
      [{ quick_replies: { options: MENU } }]);
  }
}
// [/answers]

// [form]
// A hosted form: Backchannel serves it and relays what the customer typed straight to
// callback_url (signed like a webhook), storing none of it. The callback's origin must be
// one of your webhook endpoints'.
function askForAddress(id, conversationId) {
  return say(conversationId, `${id}:address`, [{ web_view: { id: "address", label: "Delivery address",
    height: "compact", form: {
      title: "Where should we deliver?", submit_label: "Order",
      callback_url: `${PUBLIC_URL}/forms/address`,
      fields: [
        { name: "street", label: "Street and number", type: "text", required: true, max_length: 100 },
        { name: "postcode", label: "Postcode", type: "text", required: true,
          pattern: "[0-9]{5}", pattern_message: "Five digits, e.g. 10115." },
      ] } } }]);
}

// The callback: 2xx closes the form ("submitted"); 422 {"errors": {field: message}} shows
// the messages in the form, and the customer can correct them.
function addressCallback(event) {
  const { conversation_id: conversationId, values } = event.data;
  if (!values.postcode.startsWith("1")) {
    return [422, { errors: { postcode: "Sorry, we only deliver to postcodes starting with 1." } }];
  }
  Object.assign(orders.get(conversationId) || {}, { street: values.street });
  return [200, { ok: true }];
}
// [/form]

// [closed]
async function onWebviewClosed(id, data) {
  const conversationId = data.conversation_id;
  if (data.webview_id === "address" && data.status === "submitted") {
    const order = orders.get(conversationId) || {};
    await say(conversationId, `${id}:placed`, [{ text: { content:
      `Order placed: a ${order.size || ""} ${order.pizza || "pizza"} to ${order.street}. About 30 minutes!` } }]);
  } else if (data.webview_id === "toppings" && data.result) {
    await say(conversationId, `${id}:topping`, [{ text: { content: `Noted: ${data.result}.` } }],
      [{ quick_replies: { options: MENU } }]);
  } else {
    await say(conversationId, `${id}:later`, [{ text: { content: "No problem. Anything else?" } }],
      [{ quick_replies: { options: MENU } }]);
  }
}
// [/closed]

// [handover]
async function handOver(id, conversationId) {
  await say(conversationId, `${id}:handover`, [{ text: { content: "Let me get a colleague for you." } }]);
  await api("POST", `/conversations/${conversationId}/handover`, { to: "human", reason: "customer asked" });
}
// [/handover]

// [toppings]
// An external web view: your own page, opened in the widget with ?bc_ctx=<token>. Check the
// token with Backchannel (it names the conversation), then close the sheet with a result.
async function toppingsPage(url) {
  const context = await api("POST", "/webview-contexts/verify", { token: url.searchParams.get("bc_ctx") });
  return `<!doctype html><meta charset="utf-8"><title>Toppings</title>
<script src="${API.replace(/\/api\/v1$/, "")}/static/webview.js"></script>
<p>Toppings for conversation ${context.conversation_id.replace(/[^\w]/g, "")}</p>
<button onclick="Backchannel.close({result: 'extra cheese'})">Extra cheese</button>
<button onclick="Backchannel.close({result: 'olives'})">Olives</button>`;
}
// [/toppings]

// [server]
const seen = new Set(); // webhook-ids handled: a retried delivery is acknowledged, not redone

const server = http.createServer(async (req, res) => {
  const url = new URL(req.url, PUBLIC_URL);
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  const body = Buffer.concat(chunks).toString("utf8"); // verify the raw body, before parsing
  const reply = (status, json) => {
    res.writeHead(status, { "Content-Type": "application/json" }).end(JSON.stringify(json));
  };
  if (req.method === "POST" && (url.pathname === "/webhooks" || url.pathname === "/forms/address")) {
    let event;
    try {
      event = webhook.verify(body, req.headers);
    } catch (err) {
      return reply(400, { error: "bad signature" });
    }
    if (url.pathname === "/forms/address") return reply(...addressCallback(event));
    const id = req.headers["webhook-id"];
    reply(200, { ok: true }); // answer at once (within 15 s); work after
    if (seen.has(id)) return;
    seen.add(id);
    onEvent(id, event).catch((err) => { seen.delete(id); console.error(`${event.type}: ${err.message}`); });
  } else if (req.method === "GET" && url.pathname === "/toppings") {
    let page;
    try {
      page = await toppingsPage(url);
    } catch (err) {
      return reply(403, { error: "not a web view of ours" });
    }
    res.writeHead(200, { "Content-Type": "text/html; charset=utf-8" }).end(page);
  } else if (url.pathname === "/health") {
    reply(200, { ok: true });
  } else {
    reply(404, { error: "not found" });
  }
});
server.listen(PORT, () => console.log(`Slice listens on ${PORT}`));
// [/server]
