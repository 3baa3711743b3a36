// The call's signaling client, on the tab's reconnecting socket (socket.js),
// mirroring signaling/call/messages.py (client messages) and
// signaling/call/outbound.py (server messages, one dataclass per type);
// tests/web/test_protocol_js.py checks that both sides name the same types.
//
// Client messages: join {consultation_id, tab_id, resume_after?}, leave,
// offer {to, sdp}, answer {to, sdp}, candidate {to, candidate, sdp_mid,
// sdp_mline_index}, chat {text, ref}, media_state {audio, video}, end,
// rec_offer {sdp}, rec_stop (recording.js; rec_candidate exists but is not
// used: the leg gathers before it offers), doc_open {document_id, page},
// doc_show {document_id, page} (records.js), ping (socket.js).
//
// Server messages: hello (every connect: we join then) and pong are handled
// here and in socket.js. Every other one is handed to onMessage: joined,
// peer_joined, peer_left, peer_state, offer, answer, candidate, media_state,
// chat (another's line, not yet stored), chat_failed, event, doc_show,
// rec_answer, recording, state, error, plus the dashboards' push
// (consultation.changed), which the call page ignores. The call page handles
// them in one table, HANDLERS in call-state.js.
//
// Each tab keeps its tab_id in sessionStorage, so that a reconnect (or a reload)
// resumes the same place in the call instead of counting as a second window; the
// last timeline event id seen is sent as resume_after, and the server replays
// what was missed in `joined.events`.
//
// A chat line is never lost to an outage: it keeps its ref until the stored
// `event` with that ref comes back (or the server says it could not be stored),
// and after every join the lines still unconfirmed are sent again; the server
// takes each ref once.

import { CALL_STATES, FATAL_CODES } from "./call-state.js";
import { ReconnectingSocket } from "./socket.js";

const TAB_KEY = "tc-call-tab";

function randomHex(bytes) {
  const buffer = new Uint8Array(bytes);
  crypto.getRandomValues(buffer);
  return Array.from(buffer, (b) => b.toString(16).padStart(2, "0")).join("");
}

function tabId() {
  let id = null;
  try {
    id = sessionStorage.getItem(TAB_KEY);
  } catch {
    id = null;
  }
  if (!id) {
    id = randomHex(12);
    try {
      sessionStorage.setItem(TAB_KEY, id);
    } catch {
      // Private mode without storage: the id lives as long as the page.
    }
  }
  return id;
}

export class CallSignaling {
  // onMessage(message) gets the server messages listed above;
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
    this.connects = 0; // joins so far (the browser tests wait on it)
    this.socket = new ReconnectingSocket({
      onMessage: (message) => this.receive(message),
      onStatus: (status) => {
        // "online" (hello) is not "joined" yet: that comes with `joined`.
        if (status === "online") return;
        this.joined = false;
        this.onStatus(status);
      },
      onDrop: (event) => {
        this.joined = false;
        if (event.code === 1008) {
          // The server closed it because the session ended (logout elsewhere,
          // expiry): stop (status "closed"), then say why.
          this.socket.stop();
          this.onMessage({ type: "error", code: "unauthenticated", message: "session ended" });
        }
      },
    });
  }

  start() {
    this.socket.start();
  }

  receive(message) {
    switch (message.type) {
      case "hello":
        // Every (re)connect starts with hello: (re)join the call.
        this.join();
        return;
      case "joined":
        this.joined = true;
        this.connects += 1;
        this.peerId = message.peer_id;
        for (const e of message.events || []) this.seen(e);
        this.onStatus("joined");
        this.onMessage(message);
        this.resendChat();
        return;
      case "event":
        this.seen(message.event);
        break;
      case "error":
        if (!this.joined && FATAL_CODES.has(message.code)) this.close();
        if (message.code === "chat_not_stored") this.unconfirmed.delete(message.ref);
        break;
      case "state":
        if (!CALL_STATES.has(message.state)) this.close();
        break;
      default:
        break;
    }
    this.onMessage(message);
  }

  // Ask to join (again: after the identity check the server asked for).
  join() {
    this.socket.send({
      type: "join",
      consultation_id: this.consultationId,
      tab_id: this.tabId,
      // 0 on the first join: the page shows the chat history from the start.
      resume_after: this.lastEventId ?? 0,
    });
  }

  seen(event) {
    if (event && Number.isInteger(event.id)) {
      this.lastEventId = Math.max(this.lastEventId ?? 0, event.id);
    }
    if (event && event.kind === "chat" && event.actor_id === this.peerId && event.data) {
      this.unconfirmed.delete(event.data.ref);
    }
  }

  // Send a call message now; false when not joined (the caller decides what then).
  send(message) {
    if (!this.joined) return false;
    return this.socket.send(message);
  }

  // Send a chat line (again, with the ref it had, after a failure); returns
  // {ref, sent}: sent is false while the call is not joined (it goes on the next join).
  chat(text, ref = randomHex(9)) {
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
    this.socket.stop(finalMessage);
    this.joined = false;
  }
}
