// CareKnot pages' token, kept good: a page is opened with a short-lived token (in its address's
// fragment) and may stay open all day. When about half the token's life is left the page asks
// the HTTP API for a fresh one of the same person (POST /v1/tokens/renew, the token as its
// bearer), and hands it to the page (`renewed`), which sends it to its open WebSocket as an
// `auth` frame (answered auth_ok) and uses it for its API calls and its next reconnect. Half
// the life, not a set time before expiry: a browser slows a hidden tab's timers, so the page
// also looks again when the tab is shown (`visibilitychange`) and renews if it is due. It never
// asks again sooner than RETRY_MS after it last asked.
//
// The API renews no session beyond its most since the first sign-in: a fresh token that
// expires at the session's end (its answer's `exp` >= `session_ends_at`) is the last, and the
// page is told (`ending(at)`: the session ends then, sign in again) and stops renewing. A
// refusal (401 or 403: revoked, expired, or the session over) tells `over` and stops renewing
// too; the page is signed out when its token lapses. A renewal that finds no answer is tried
// again while the token is still good.
"use strict";

window.careknotToken = (() => {
  const RETRY_MS = 10000; // also the least wait between two renewals
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

  // Keep `token` good through the API at `apiBase`: `renewed(token, exp)` each time,
  // `ending(at)` once the last renewal the session allows was made, `over(reason)` on a refusal.
  function keep(token, apiBase, { renewed, over, ending = () => {} }) {
    let current = token;
    let exp = Number(claims(token).exp) || 0;
    let timer = 0;
    let dueAt = Infinity; // when the next renewal is due (ms)
    let askedAt = 0; // when a renewal was last asked for (ms)
    let asking = false;
    let stopped = false;

    function after(ms) {
      clearTimeout(timer);
      if (stopped) return;
      const wait = Math.min(Math.max(RETRY_MS, ms), LONGEST_WAIT_MS);
      dueAt = Date.now() + wait;
      timer = setTimeout(renew, wait);
    }

    function halfway() { // half of what is left of the token's life
      after((exp * 1000 - Date.now()) / 2);
    }

    function again() {
      if (exp > Date.now() / 1000) after(RETRY_MS);
    }

    function stop() {
      stopped = true;
      clearTimeout(timer);
      dueAt = Infinity;
    }

    async function renew() {
      if (stopped || asking || Date.now() - askedAt < RETRY_MS) return;
      asking = true;
      askedAt = Date.now();
      let answer;
      try {
        answer = await fetch(`${apiBase}/v1/tokens/renew`, {
          method: "POST", headers: { Authorization: `Bearer ${current}` }, cache: "no-store",
        });
      } catch {
        asking = false;
        again();
        return;
      }
      asking = false;
      if (answer.status === 401 || answer.status === 403) {
        const body = await answer.json().catch(() => ({}));
        stop();
        over(String(body.reason || answer.status));
        return;
      }
      if (!answer.ok) {
        again();
        return;
      }
      const body = await answer.json().catch(() => null);
      if (!body || typeof body.token !== "string" || !Number(body.exp)) {
        again();
        return;
      }
      current = body.token;
      exp = Number(body.exp);
      renewed(current, exp);
      const ends = Number(body.session_ends_at);
      if (ends && exp >= ends) {
        stop();
        ending(ends);
        return;
      }
      halfway();
    }

    // A hidden tab's timers may have fired late or not at all: when it is shown, renew if due.
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "visible" && !stopped && Date.now() >= dueAt) renew();
    });

    if (exp) halfway();
  }

  return { claims, keep };
})();
