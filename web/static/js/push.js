// Server push for the dashboards and the consultation page, over the tab's one
// reconnecting socket (socket.js: backoff, pings, reconnect on wake-up).
//
// After every (re)connect the server says "hello"; pages re-fetch their lists
// then, so nothing missed while offline stays missing. Pushes that matter to a
// page ("consultation.changed", signaling/call/hub.py) make it re-fetch as well.

import { ReconnectingSocket, SESSION_ENDED } from "./socket.js";
import { leavingPage, sessionEnded, setPushStatus } from "./ui.js";

const RELOAD_DEBOUNCE_MS = 100;

// onMessage gets every message but pong (hello included); onStatus gets
// "connecting" | "online" | "offline" | "closed". When the server closes the
// socket because the session ended, the page goes to the login page (as after
// a refused request), unless the user is signing out on this page. A page
// that loads its lists before it connects may be signed out meanwhile (the
// header's button works at once): then it does not connect.
export function connectPush(onMessage, onStatus = () => {}) {
  if (leavingPage()) return { close: () => {} };
  const onDrop = (event) => {
    if (event.code === SESSION_ENDED) sessionEnded();
  };
  const socket = new ReconnectingSocket({ onMessage, onStatus, onDrop }).start();
  return { close: () => socket.stop() };
}

// Keep a page current: call reload() after every (re)connect and every pushed
// message that relevant(message) accepts. A burst of pushes (accept, then
// assign...) causes one reload. The header's live-updates dot follows the socket.
export function reloadOnPush(reload, relevant = (m) => m.type === "consultation.changed") {
  let timer = null;
  const schedule = () => {
    clearTimeout(timer);
    timer = setTimeout(reload, RELOAD_DEBOUNCE_MS);
  };
  return connectPush((message) => {
    if (message.type === "hello" || relevant(message)) schedule();
  }, setPushStatus);
}
