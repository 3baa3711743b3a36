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
// - A socket closed because the session ended (SESSION_ENDED) is not reopened.
// - Messages are JSON objects with a string `type`; anything else is dropped.

export const PING_MS = 20000;
// The messages a call's set-up waits for: the join, the recording leg's offer,
// an answer or offer between pages, the answer to the server's relay.
export const SETUP_TYPES = new Set(["join", "rec_offer", "relay_answer", "offer", "answer"]);
// How long after one of them a ping follows, unless something else was sent.
export const FOLLOW_MS = [20, 80];
export const BACKOFF_BASE_MS = 400;
export const BACKOFF_MAX_MS = 10000;
// The server closes a socket with this code (policy violation) when its session
// ended (logout, expiry, revocation) or its account was deactivated: the socket
// stops for good. Reconnecting would be refused (the browser logs the 401), and
// kept on, with backoff, until the page went away.
export const SESSION_ENDED = 1008;

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
    this.sent = 0; // messages sent (the follow-up pings not counted)
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
      if (event.code === SESSION_ENDED) this.stop(); // no reconnect can cure it
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
  //
  // A set-up message is followed by a ping or two (FOLLOW_MS), unless the page
  // sends something else meanwhile. On a lossy uplink, a lost TCP segment with
  // nothing sent after it waits for the sender's retransmission timer: a
  // township clinic's recording offer reached the server 1.35-1.8 s after it
  // was sent in 4 of 16 calls at 10 % loss and 300 ms (tests/bench/township.py),
  // and the call came up in 2.9 s instead of 1.3. With a segment behind it, the
  // server's acknowledgement of that one shows the hole and the page's TCP sends
  // it again within about a round trip.
  send(message) {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return false;
    ws.send(JSON.stringify(message));
    this.sent += 1;
    if (SETUP_TYPES.has(message.type)) {
      const count = this.sent;
      for (const ms of FOLLOW_MS) {
        setTimeout(() => {
          const open = this.ws === ws && ws.readyState === WebSocket.OPEN;
          if (open && this.sent === count) ws.send(JSON.stringify({ type: "ping" }));
        }, ms);
      }
    }
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
