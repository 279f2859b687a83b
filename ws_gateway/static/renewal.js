// CareKnot pages' token, kept good: a page is opened with a short-lived token (in its address's
// fragment) and may stay open all day. A minute before the token expires the page asks the HTTP
// API for a fresh one of the same person (POST /v1/tokens/renew, the token as its bearer), and
// hands it to the page (`renewed`), which sends it to its open WebSocket as an `auth` frame
// (answered auth_ok) and uses it for its API calls and its next reconnect. The API renews no
// session beyond its most since the first sign-in, nor a token revoked or expired: then
// `over` is told and renewing stops, and the page is signed out when its token lapses. A
// renewal that finds no answer is tried again while the token is still good.
"use strict";

window.careknotToken = (() => {
  const RENEW_BEFORE_S = 60;
  const RETRY_MS = 15000;
  const LONGEST_WAIT_MS = 2 ** 31 - 1; // setTimeout's most

  // The token's claims, read, not verified (the API and the gateway verify it).
  function claims(token) {
    try {
      const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      return JSON.parse(atob(part)) || {};
    } catch {
      return {};
    }
  }

  // Keep `token` good through the API at `apiBase`; `renewed(token, exp)` each time.
  function keep(token, apiBase, { renewed, over }) {
    let current = token;
    let exp = Number(claims(token).exp) || 0;
    let timer = 0;

    function after(ms) {
      clearTimeout(timer);
      timer = setTimeout(renew, Math.min(Math.max(0, ms), LONGEST_WAIT_MS));
    }

    function again() {
      if (exp > Date.now() / 1000) after(RETRY_MS);
    }

    async function renew() {
      let answer;
      try {
        answer = await fetch(`${apiBase}/v1/tokens/renew`, {
          method: "POST", headers: { Authorization: `Bearer ${current}` }, cache: "no-store",
        });
      } catch {
        again();
        return;
      }
      if (answer.status === 401 || answer.status === 403) {
        const body = await answer.json().catch(() => ({}));
        over(String(body.reason || answer.status));
        return;
      }
      if (!answer.ok) {
        again();
        return;
      }
      const body = await answer.json();
      current = body.token;
      exp = Number(body.exp);
      renewed(current, exp);
      after((exp - RENEW_BEFORE_S) * 1000 - Date.now());
    }

    if (exp) after((exp - RENEW_BEFORE_S) * 1000 - Date.now());
  }

  return { claims, keep };
})();
