// The page's socket (web/static/js/socket.js): a message the call's set-up
// waits for is followed by a ping or two, so that when it is lost on a lossy
// uplink the server's acknowledgement of what follows shows the hole within a
// round trip; other messages go alone. A socket the server closed because the
// session ended is not reopened. The WebSocket here is a stand-in that records
// what the page sends (the township benchmark runs the real one).

import assert from "node:assert/strict";
import { afterEach, beforeEach, mock, test } from "node:test";

class RecordedSocket {
  static OPEN = 1;
  static last = null;
  static made = 0;

  constructor(url) {
    this.url = url;
    this.readyState = 0;
    this.sent = [];
    this.listeners = {};
    RecordedSocket.last = this;
    RecordedSocket.made += 1;
  }

  addEventListener(type, listener) {
    (this.listeners[type] ||= []).push(listener);
  }

  send(data) {
    this.sent.push(JSON.parse(data).type);
  }

  close() {
    this.readyState = 3;
  }

  opened() {
    this.readyState = RecordedSocket.OPEN;
    for (const listener of this.listeners.open || []) listener({});
    return this;
  }

  // The server closes the connection with this code.
  closedBy(code) {
    this.readyState = 3;
    for (const listener of this.listeners.close || []) listener({ code });
  }
}

globalThis.WebSocket = RecordedSocket;
globalThis.window = { addEventListener() {} };
globalThis.document = { addEventListener() {}, visibilityState: "visible" };
globalThis.location = { protocol: "http:", host: "hospital.test" };

const { ReconnectingSocket, FOLLOW_MS, SETUP_TYPES, BACKOFF_MAX_MS, SESSION_ENDED } = await import(
  "../../web/static/js/socket.js"
);
const LAST = Math.max(...FOLLOW_MS);

function connected() {
  const socket = new ReconnectingSocket({ onMessage() {} }).start();
  return { socket, ws: RecordedSocket.last.opened() };
}

beforeEach(() => mock.timers.enable({ apis: ["setTimeout", "setInterval"] }));
afterEach(() => mock.timers.reset());

test("each set-up message is followed by its pings", () => {
  for (const type of SETUP_TYPES) {
    const { socket, ws } = connected();
    assert.equal(socket.send({ type }), true);
    assert.deepEqual(ws.sent, [type]);
    mock.timers.tick(LAST);
    assert.deepEqual(ws.sent, [type, ...FOLLOW_MS.map(() => "ping")], type);
  }
});

test("other messages go alone", () => {
  const { socket, ws } = connected();
  socket.send({ type: "chat", text: "血压 150/95", ref: "a" });
  socket.send({ type: "media_state", audio: true, video: true });
  mock.timers.tick(LAST);
  assert.deepEqual(ws.sent, ["chat", "media_state"]);
});

test("a message sent meanwhile stands in for the pings", () => {
  const { socket, ws } = connected();
  socket.send({ type: "rec_offer", sdp: "v=0" });
  mock.timers.tick(FOLLOW_MS[0] - 1);
  socket.send({ type: "media_state", audio: true, video: false });
  mock.timers.tick(LAST);
  assert.deepEqual(ws.sent, ["rec_offer", "media_state"]);
});

test("no ping goes on a socket that closed", () => {
  const { socket, ws } = connected();
  socket.send({ type: "join", consultation_id: "c1" });
  ws.close();
  mock.timers.tick(LAST);
  assert.deepEqual(ws.sent, ["join"]);
  socket.send({ type: "relay_answer", source: "p1", sdp: "v=0" });
  assert.deepEqual(ws.sent, ["join"]); // not open: nothing sent
});

test("a socket closed because the session ended is not reopened", () => {
  const statuses = [];
  const drops = [];
  const socket = new ReconnectingSocket({
    onMessage() {},
    onStatus: (status) => statuses.push(status),
    onDrop: (event) => drops.push(event.code),
  }).start();
  RecordedSocket.last.opened().closedBy(SESSION_ENDED);
  const made = RecordedSocket.made;
  mock.timers.tick(4 * BACKOFF_MAX_MS);
  assert.equal(RecordedSocket.made, made); // no new connection was tried
  assert.deepEqual(drops, [SESSION_ENDED]); // the page was told why
  assert.deepEqual(statuses, ["connecting", "closed"]);
  assert.equal(socket.send({ type: "ping" }), false);
});

test("a socket dropped for any other reason is reopened", () => {
  new ReconnectingSocket({ onMessage() {} }).start();
  RecordedSocket.last.opened().closedBy(1001); // going away: a server restart
  const made = RecordedSocket.made;
  mock.timers.tick(BACKOFF_MAX_MS);
  assert.equal(RecordedSocket.made, made + 1);
});
