// The one reconnecting WebSocket to /ws. A tab has a single socket, used for the
// dashboards' push (push.js) and, on the call page, for the call's signaling
// (signaling.js); both ride on this module and so share one retry policy.
//
// - Reconnects with exponential backoff and jitter (so that a restarted server is
//   not hit by every tab at once), and at once when the machine wakes up or the
//   network comes back (online / visibilitychange).
// - The server starts every connection with `hello`: that is when the backoff
//   starts again from the bottom (a connection that is refused or dropped before
//   hello keeps backing off).
// - Pings every PING_MS keep proxies from closing an idle socket; the `pong`s are
//   not handed on.
// - Messages are JSON objects with a string `type`; anything else is dropped.

export const PING_MS = 20000;
export const BACKOFF_BASE_MS = 400;
export const BACKOFF_MAX_MS = 10000;

// The wait before reconnect attempt number `attempt` (0, 1, ...): between half
// and all of min(max, base * 2^attempt).
export function backoffDelay(attempt, random = Math.random) {
  const base = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** attempt);
  return base / 2 + random() * (base / 2);
}

function socketUrl() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/ws`;
}

export class ReconnectingSocket {
  // onMessage(message) gets every message but pong; onStatus(status) gets
  // "connecting" | "online" (hello received) | "offline" (dropped, retrying) |
  // "closed" (stopped for good); onDrop(closeEvent) runs when a connection
  // closes, before the socket decides whether to retry (it may call stop()).
  constructor({ onMessage, onStatus = () => {}, onDrop = () => {} }) {
    this.onMessage = onMessage;
    this.onStatus = onStatus;
    this.onDrop = onDrop;
    this.ws = null;
    this.attempt = 0;
    this.retryTimer = null;
    this.pingTimer = null;
    this.stopped = false;
    const nudge = () => {
      if (!this.stopped && this.ws === null && this.retryTimer !== null) {
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
    return this;
  }

  open() {
    this.retryTimer = null;
    if (this.stopped) return;
    this.onStatus("connecting");
    let ws;
    try {
      ws = new WebSocket(socketUrl());
    } catch {
      this.scheduleReconnect();
      return;
    }
    this.ws = ws;
    ws.addEventListener("open", () => {
      if (this.ws !== ws) return;
      clearInterval(this.pingTimer);
      this.pingTimer = setInterval(() => this.send({ type: "ping" }), PING_MS);
    });
    ws.addEventListener("message", (event) => {
      if (this.ws !== ws) return; // a late message of a connection given up
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        return;
      }
      if (!message || typeof message.type !== "string" || message.type === "pong") return;
      if (message.type === "hello") {
        this.attempt = 0;
        this.onStatus("online");
      }
      this.onMessage(message);
    });
    ws.addEventListener("close", (event) => {
      if (this.ws !== ws) return;
      clearInterval(this.pingTimer);
      this.pingTimer = null;
      this.ws = null;
      this.onDrop(event);
      if (this.stopped) return; // stop() said "closed" already
      this.onStatus("offline");
      this.scheduleReconnect();
    });
  }

  scheduleReconnect() {
    if (this.stopped) return;
    const delay = backoffDelay(this.attempt);
    this.attempt += 1;
    this.retryTimer = setTimeout(() => this.open(), delay);
  }

  // Send one message now; false when there is no open connection.
  send(message) {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return false;
    ws.send(JSON.stringify(message));
    return true;
  }

  // Close for good (no more reconnects), after sending finalMessage if given.
  stop(finalMessage = null) {
    const wasStopped = this.stopped;
    this.stopped = true;
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    clearInterval(this.pingTimer);
    this.pingTimer = null;
    const ws = this.ws;
    if (ws) {
      if (finalMessage) this.send(finalMessage);
      this.ws = null;
      ws.close(1000);
    }
    if (!wasStopped) this.onStatus("closed");
  }
}
