// The page a consultation report's QR code opens: asks the audited API whether
// the SHA-256 printed on the paper is the one of the signed texts kept for the
// consultation, and shows those texts (signer, time, SHA-256) to compare.

import { get } from "./api.js";
import { $, PAGE, el, formatDateTime, handleAuthLoss, t } from "./ui.js";

const cid = PAGE.consultation_id;
const printed = (PAGE.sha256 || "").trim().toLowerCase();
const box = $("verify");

function show(status, message) {
  box.dataset.status = status;
  $("verify-verdict").textContent = message;
}

function signedItem(o) {
  const body = o.body || {};
  const text = Object.values(body).filter((v) => typeof v === "string" && v);
  const name = o.author ? o.author.display_name : "";
  return el(
    "article",
    { class: `signed signed-${o.kind}`, dataset: { opinionId: o.id, kind: o.kind } },
    el("h3", { text: t(`verify.kind.${o.kind}`) }),
    ...text.map((v) => el("p", { class: "cons-text", text: v })),
    el(
      "p",
      { class: "signed-meta" },
      el("span", { text: t("verify.signed_by", { name, time: formatDateTime(o.signed_at) }) }),
      el("code", { class: "mono", dataset: { sha256: o.sha256 }, text: o.sha256 }),
    ),
  );
}

async function check() {
  $("verify-printed").textContent = printed;
  if (!printed) {
    show("missing", t("verify.missing"));
    return;
  }
  show("checking", t("verify.checking"));
  try {
    const { verification } = await get(
      `/api/consultations/${encodeURIComponent(cid)}/report/verify?sha256=${encodeURIComponent(printed)}`,
    );
    show(verification.status, t(`verify.${verification.status}`));
    $("verify-current").textContent = verification.current_sha256;
    $("verify-signed").replaceChildren(...verification.opinions.map(signedItem));
  } catch (err) {
    if (handleAuthLoss(err)) return;
    if (err.status === 404) show("not_found", t("verify.not_found"));
    else if (err.code === "not_signed") show("not_signed", t("verify.not_signed"));
    else show("mismatch", t("verify.mismatch"));
  }
}

check();
