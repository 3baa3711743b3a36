// The call's signaling client over /ws, mirroring signaling/messages.py.
//
// Client messages: join {consultation_id, tab_id, resume_after?}, leave,
// offer {to, sdp}, answer {to, sdp}, candidate {to, candidate, sdp_mid,
// sdp_mline_index}, chat {text, ref}, media_state {audio, video}, end, ping.
// Server messages (handed to onMessage): joined, peer_joined, peer_left,
// peer_state, offer, answer, candidate, media_state, chat (another's line, not
// yet stored), chat_failed, event, state, error, plus the dashboards' pushes
// (consultation.changed), which the call page ignores.
//
// The socket reconnects by itself with exponential backoff and jitter. Each tab
// keeps its tab_id in sessionStorage, so that a reconnect (or a reload) resumes
// the same place in the call instead of counting as a second window; the last
// timeline event id seen is sent as resume_after, and the server replays what
// was missed in `joined.events`.
//
// A chat line is never lost to an outage: it keeps its ref until the stored
// `event` with that ref comes back (or the server says it could not be stored),
// and after every join the lines still unconfirmed are sent again; the server
// takes each ref once.

const PING_MS = 20000;
const MAX_BACKOFF_MS = 10000;
const TAB_KEY = "tc-call-tab";

// Join errors that no reconnect can cure: stop and tell the user.
export const FATAL_CODES = new Set([
  "not_participant",
  "not_joinable",
  "consent_required",
  "already_in_call",
  "call_full",
  "not_found",
  "unauthenticated",
]);

function newRef() {
  const bytes = new Uint8Array(9);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function tabId() {
  let id = null;
  try {
    id = sessionStorage.getItem(TAB_KEY);
  } catch {
    id = null;
  }
  if (!id) {
    const bytes = new Uint8Array(12);
    crypto.getRandomValues(bytes);
    id = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
    try {
      sessionStorage.setItem(TAB_KEY, id);
    } catch {
      // Private mode without storage: the id lives as long as the page.
    }
  }
  return id;
}

export class CallSignaling {
  // onMessage(message) gets every server message but pong and hello;
  // onStatus(status) gets "connecting" | "joined" | "offline" | "closed".
  constructor({ consultationId, onMessage, onStatus = () => {} }) {
    this.consultationId = consultationId;
    this.onMessage = onMessage;
    this.onStatus = onStatus;
    this.tabId = tabId();
    this.lastEventId = null;
    this.unconfirmed = new Map(); // chat ref -> text, until stored or refused
    this.peerId = null;
    this.joined = false;
    this.closed = false;
    this.connects = 0;
    this.socket = null;
    this.attempt = 0;
    this.retryTimer = null;
    this.pingTimer = null;
    const nudge = () => {
      if (!this.closed && this.socket === null && this.retryTimer !== null) {
        clearTimeout(this.retryTimer);
        this.attempt = 0;
        this.open();
      }
    };
    window.addEventListener("online", nudge);
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "visible") nudge();
    });
  }

  start() {
    this.open();
  }

  url() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    return `${scheme}//${location.host}/ws`;
  }

  open() {
    this.retryTimer = null;
    this.joined = false;
    this.onStatus("connecting");
    let socket;
    try {
      socket = new WebSocket(this.url());
    } catch {
      this.scheduleReconnect();
      return;
    }
    this.socket = socket;
    socket.addEventListener("message", (event) => this.receive(socket, event));
    socket.addEventListener("close", (event) => {
      if (this.socket !== socket) return;
      clearInterval(this.pingTimer);
      this.pingTimer = null;
      this.socket = null;
      this.joined = false;
      if (event.code === 1008) {
        // The server closed it because the session ended (logout elsewhere, expiry).
        this.closed = true;
        this.onMessage({ type: "error", code: "unauthenticated", message: "session ended" });
      }
      if (this.closed) {
        this.onStatus("closed");
      } else {
        this.onStatus("offline");
        this.scheduleReconnect();
      }
    });
  }

  scheduleReconnect() {
    if (this.closed) return;
    const base = Math.min(MAX_BACKOFF_MS, 400 * 2 ** this.attempt);
    const delay = base / 2 + Math.random() * (base / 2);
    this.attempt += 1;
    this.retryTimer = setTimeout(() => this.open(), delay);
  }

  receive(socket, event) {
    let message;
    try {
      message = JSON.parse(event.data);
    } catch {
      return;
    }
    if (!message || typeof message.type !== "string") return;
    switch (message.type) {
      case "hello":
        // Every (re)connect starts with hello: (re)join the call.
        this.raw(socket, {
          type: "join",
          consultation_id: this.consultationId,
          tab_id: this.tabId,
          // 0 on the first join: the page shows the chat history from the start.
          resume_after: this.lastEventId ?? 0,
        });
        return;
      case "pong":
        return;
      case "joined":
        this.joined = true;
        this.attempt = 0;
        this.connects += 1;
        this.peerId = message.peer_id;
        for (const e of message.events || []) this.seen(e);
        clearInterval(this.pingTimer);
        this.pingTimer = setInterval(() => this.raw(socket, { type: "ping" }), PING_MS);
        this.onStatus("joined");
        this.onMessage(message);
        this.resendChat();
        return;
      case "event":
        this.seen(message.event);
        break;
      case "error":
        if (!this.joined && FATAL_CODES.has(message.code)) {
          this.close();
        }
        if (message.code === "chat_not_stored") this.unconfirmed.delete(message.ref);
        break;
      case "state":
        if (message.state !== "accepted" && message.state !== "live") this.close();
        break;
      default:
        break;
    }
    this.onMessage(message);
  }

  seen(event) {
    if (event && Number.isInteger(event.id)) {
      this.lastEventId = Math.max(this.lastEventId ?? 0, event.id);
    }
    if (event && event.kind === "chat" && event.actor_id === this.peerId && event.data) {
      this.unconfirmed.delete(event.data.ref);
    }
  }

  raw(socket, message) {
    if (!socket || socket.readyState !== WebSocket.OPEN) return false;
    socket.send(JSON.stringify(message));
    return true;
  }

  // Send a call message now; false when not joined (the caller decides what then).
  send(message) {
    if (!this.joined) return false;
    return this.raw(this.socket, message);
  }

  // Send a chat line (again, with the ref it had, after a failure); returns
  // {ref, sent}: sent is false while the call is not joined (it goes on the next join).
  chat(text, ref = newRef()) {
    this.unconfirmed.set(ref, text);
    return { ref, sent: this.send({ type: "chat", text, ref }) };
  }

  resendChat() {
    for (const [ref, text] of this.unconfirmed) {
      if (!this.send({ type: "chat", text, ref })) return;
    }
  }

  // Leave (or end) the call for good: no more reconnects.
  close(finalMessage = null) {
    this.closed = true;
    clearTimeout(this.retryTimer);
    clearInterval(this.pingTimer);
    const socket = this.socket;
    if (socket) {
      if (finalMessage) this.raw(socket, finalMessage);
      this.socket = null;
      socket.close(1000);
    }
    this.joined = false;
    this.onStatus("closed");
  }
}
