// Server push over the /ws WebSocket: reconnects with exponential backoff (with
// jitter, so that a restarted server is not hit by every tab at once) and keeps
// the connection alive with pings. After every (re)connect the server says
// "hello"; pages re-fetch their lists then, so nothing missed while offline stays
// missing.

const PING_MS = 25000;
const MAX_BACKOFF_MS = 30000;

export function connectPush(onMessage, onStatus = () => {}) {
  let socket = null;
  let attempt = 0;
  let pingTimer = null;
  let retryTimer = null;
  let closed = false;

  const url = () => {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    return `${scheme}//${location.host}/ws`;
  };

  const scheduleReconnect = () => {
    if (closed) return;
    const base = Math.min(MAX_BACKOFF_MS, 500 * 2 ** attempt);
    const delay = base / 2 + Math.random() * (base / 2);
    attempt += 1;
    retryTimer = setTimeout(open, delay);
  };

  function open() {
    retryTimer = null;
    onStatus("connecting");
    try {
      socket = new WebSocket(url());
    } catch {
      scheduleReconnect();
      return;
    }
    socket.addEventListener("open", () => {
      attempt = 0;
      onStatus("online");
      pingTimer = setInterval(() => {
        if (socket && socket.readyState === WebSocket.OPEN) {
          socket.send(JSON.stringify({ type: "ping" }));
        }
      }, PING_MS);
    });
    socket.addEventListener("message", (event) => {
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        return;
      }
      if (message && message.type !== "pong") onMessage(message);
    });
    socket.addEventListener("close", () => {
      clearInterval(pingTimer);
      pingTimer = null;
      socket = null;
      if (!closed) {
        onStatus("offline");
        scheduleReconnect();
      }
    });
  }

  // Reconnect at once when the machine wakes up or the network comes back.
  const nudge = () => {
    if (!closed && socket === null && retryTimer !== null) {
      clearTimeout(retryTimer);
      attempt = 0;
      open();
    }
  };
  window.addEventListener("online", nudge);
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") nudge();
  });

  open();
  return {
    close() {
      closed = true;
      clearTimeout(retryTimer);
      clearInterval(pingTimer);
      if (socket) socket.close();
    },
  };
}
