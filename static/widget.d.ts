// Types for the Backchannel chat widget's page API: https://HOST/widget.d.ts, served beside
// https://HOST/widget.js. Hand-written; docs/widget.md "Public API" is the reference.
//
//   /// <reference path="./widget.d.ts" />   (or copy it into your project)
//   Backchannel.on("unread", ({ count }) => setBadge(count));

export {};

declare global {
  /** The languages the widget speaks. */
  type BackchannelLocale = "en" | "de" | "fr" | "es" | "pt" | "ar";

  /** A customer as your page names them; `external_id` is your id for them. */
  interface BackchannelUser {
    external_id: string;
    name?: string;
    email?: string;
  }

  interface BackchannelIdentity {
    user: BackchannelUser;
    /** HS256 JWT: `sub` = external_id, `exp`; signed with the workspace's identity secret. */
    user_jwt?: string;
  }

  /** Read when the script loads; set it before the `<script>` tag. */
  interface BackchannelSettingsObject extends Partial<BackchannelIdentity> {
    /** The widget's language (a code like "de" or "de-AT"); else the workspace's, the browser's, English. */
    locale?: string;
  }

  /** A message as the REST API shows it (`GET /api/v1/conversations/{id}/messages`). */
  interface BackchannelMessage {
    id: string;
    conversation_id: string;
    seq: number;
    actor: { type: "user" | "bot" | "agent" | "system"; id?: string };
    message_parts: Array<Record<string, unknown>>;
    reply_parts: Array<Record<string, unknown>>;
    reply_to: { message_id: string; payload: string } | null;
    client_message_id: string | null;
    created_at: string;
  }

  interface BackchannelEvents {
    /** The widget is on the page and its API works (once; a later listener is called at once). */
    ready: Record<string, never>;
    open: Record<string, never>;
    close: Record<string, never>;
    /** Each message the widget receives and shows, history included, once per seq. */
    message: { message: BackchannelMessage };
    /** The unread count (the launcher's badge) changed. */
    unread: { count: number };
  }

  type BackchannelEventName = keyof BackchannelEvents;
  type BackchannelListener<K extends BackchannelEventName> = (event: BackchannelEvents[K]) => void;

  interface BackchannelApi {
    open(): void;
    close(): void;
    toggle(): void;
    /** Remove the widget, its socket, every listener and timer, and `window.Backchannel`. */
    destroy(): void;
    /** Switch to this identity (a signed-in customer): the widget reconnects as them. */
    identify(identity: BackchannelIdentity): void;
    /** Forget the visitor (sign-out): the next open starts a new anonymous visitor. */
    reset(): void;
    /** Show the widget in this language from now on (an unknown code is ignored). */
    setLocale(code: BackchannelLocale | string): void;
    on<K extends BackchannelEventName>(name: K, listener: BackchannelListener<K>): void;
    /** Without `listener`, removes every listener of `name`. */
    off<K extends BackchannelEventName>(name: K, listener?: BackchannelListener<K>): void;
  }

  /** Before the script has loaded: calls queued as `[name, ...args]` are replayed in order. */
  interface BackchannelStub {
    q: Array<[string, ...unknown[]]>;
  }

  interface Window {
    Backchannel?: BackchannelApi | BackchannelStub;
    BackchannelSettings?: BackchannelSettingsObject;
  }

  // eslint-disable-next-line no-var
  var Backchannel: BackchannelApi;
}
