// The call page's chat: the timeline lines of call-state.js (chat and what
// happened in the call) and the form that writes a line. render(state) brings
// #chat-log in line with chatLines(state), one <li> per line, reusing each
// line's element; onSend(text) and onRetry(line) are the page's to do.
//
// An unstored line (data-pending) shows who wrote it and "sending" / "waiting"
// for ours, the time it came for another's; a failed one (data-failed) says it
// was not stored and, for ours, offers to send it again.

import { $, LOCALE, el, t } from "./ui.js";
import { chatLines, nameOf } from "./call-state.js";

const clock = new Intl.DateTimeFormat(LOCALE, { hour: "2-digit", minute: "2-digit" });
const PINNED_PX = 40;

// The name shown for a peer id, "you" for ourselves without a name.
export function displayName(state, peerId) {
  const name = nameOf(state, peerId);
  if (!name && peerId && peerId === state.myId) return t("call.you");
  return name;
}

function timeOf(iso) {
  const at = new Date(iso);
  return el("time", {
    datetime: iso,
    class: "chat-time",
    text: Number.isNaN(at.getTime()) ? "" : clock.format(at),
  });
}

function storedLine(line, state) {
  const name = line.actorName || displayName(state, line.from);
  if (line.kind !== "chat") {
    return el(
      "li",
      { class: "chat-line chat-system", dataset: { kind: line.kind, eventId: line.eventId } },
      timeOf(line.at),
      el("span", { text: t(`call.event.${line.kind}`, { name }) }),
    );
  }
  return el(
    "li",
    { class: "chat-line", dataset: { kind: "chat", eventId: line.eventId, mine: line.mine ? "true" : "false" } },
    el(
      "div",
      { class: "chat-who" },
      el("span", { class: "chat-name", text: line.mine ? t("call.you") : name }),
      timeOf(line.at),
    ),
    el("p", { class: "chat-text", text: line.text }),
  );
}

function unstoredLine(line, state) {
  return el(
    "li",
    {
      class: "chat-line",
      dataset: { kind: "chat", mine: line.mine ? "true" : "false", pending: "true", ref: line.ref, from: line.from || "" },
    },
    el(
      "div",
      { class: "chat-who" },
      el("span", { class: "chat-name", text: line.mine ? t("call.you") : displayName(state, line.from) }),
      // Another's line shows when it came; ours its progress (set in update).
      el("span", { class: "chat-time", text: line.mine ? "" : clock.format(new Date()) }),
    ),
    el("p", { class: "chat-text", text: line.text }),
  );
}

export class Chat {
  constructor({ onSend, onRetry }) {
    this.log = $("chat-log");
    this.form = $("chat-form");
    this.input = $("chat-text");
    this.onRetry = onRetry;
    this.items = new Map(); // line key -> {line, li}
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      const text = this.input.value.trim();
      if (!text || this.input.disabled) return;
      this.input.value = "";
      onSend(text);
    });
  }

  render(state) {
    const log = this.log;
    const pinned = log.scrollHeight - log.scrollTop - log.clientHeight < PINNED_PX;
    let ownAdded = false;
    const lines = chatLines(state);
    const keys = new Set(lines.map((l) => l.key));
    for (const [key, item] of this.items) {
      if (!keys.has(key)) {
        item.li.remove();
        this.items.delete(key);
      }
    }
    let before = log.firstElementChild;
    for (const line of lines) {
      let item = this.items.get(line.key);
      if (!item) {
        const li = line.eventId === undefined ? unstoredLine(line, state) : storedLine(line, state);
        item = { line: null, li };
        this.items.set(line.key, item);
        if (line.mine && line.eventId === undefined) ownAdded = true;
      }
      if (item.line !== line) {
        if (line.eventId === undefined) this.update(item.li, line);
        item.line = line;
      }
      if (item.li !== before) log.insertBefore(item.li, before);
      before = item.li.nextElementSibling;
    }
    if (pinned || ownAdded) log.scrollTop = log.scrollHeight;
    if (state.finished) {
      this.input.disabled = true;
      for (const button of this.form.querySelectorAll("button")) button.disabled = true;
    }
  }

  // An unstored line's status: failed (with a retry button for ours) or pending.
  update(li, line) {
    const status = li.querySelector(".chat-time");
    const retry = li.querySelector(".chat-retry");
    if (line.state === "failed") {
      li.dataset.failed = "true";
      status.textContent = t("call.chat.not_stored");
      if (line.retryable && !retry) {
        const button = el("button", {
          type: "button",
          class: "btn btn-small btn-primary-quiet chat-retry",
          text: t("call.chat.retry"),
        });
        button.addEventListener("click", () => this.onRetry(line.ref));
        li.querySelector(".chat-who").append(button);
      }
      return;
    }
    delete li.dataset.failed;
    if (retry) retry.remove();
    if (line.mine) status.textContent = line.sent ? t("call.chat.sending") : t("call.chat.pending");
  }
}
