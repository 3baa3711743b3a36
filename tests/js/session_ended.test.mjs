// The page's reaction to its session ending (web/static/js/ui.js): a list
// refused with 401 and the live-updates socket closed for it (push.js) may both
// say so at once. The page goes to the login page once: a second navigation
// aborted the first (a fresh-clone CI run, tests/e2e/test_session_browser.py).

import assert from "node:assert/strict";
import { mock, test } from "node:test";

mock.timers.enable({ apis: ["setInterval", "setTimeout"] }); // the header's clock
globalThis.document = {
  getElementById: () => null,
  documentElement: { lang: "zh-CN" },
  addEventListener() {},
};
globalThis.window = { addEventListener() {} };
const assigned = [];
globalThis.location = { pathname: "/clinic", assign: (url) => assigned.push(url) };

const { handleAuthLoss, sessionEnded } = await import("../../web/static/js/ui.js");
const { ApiError } = await import("../../web/static/js/api.js");

test("the page goes to the login page once, however many say the session ended", () => {
  assert.equal(handleAuthLoss(new ApiError(400, "invalid")), false); // not the session
  assert.deepEqual(assigned, []);
  assert.equal(handleAuthLoss(new ApiError(401, "unauthenticated")), true); // a list refused
  sessionEnded(); // the socket closed for it
  assert.equal(handleAuthLoss(new ApiError(401, "unauthenticated")), true); // another list
  assert.deepEqual(assigned, ["/login?next=%2Fclinic"]);
});
