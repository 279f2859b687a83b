// CareKnot family page: a relative's day, live, readable on a phone.
//
// Opened as /family#token=TOKEN (a family token, in the fragment, which the browser never sends
// to the server). The token's `patients` claim names the relatives she may follow; the page
// follows one at a time (the WebSocket's ?patient=, the first by default, a choice when there
// are several). It hears what the gateway sends a patient's family: `visit_status` (scheduled,
// on the way with an ETA, arrived, with her, left, missed), `incident` (what happened, who was
// sent, how it ended) and `dose` frames. On connecting it takes the day's history again
// (resume from a little before the stream's end), then follows live; a reconnect resumes from
// the last `seq` it had. From the HTTP API (/config.json's api_url, with the same token) it reads
// her medication day: each dose of today's schedule and what became of it, the frames' news on
// top; a relative with no schedule has no medication card at all. The token is renewed through
// the API before it expires (renewal.js) and the fresh one sent to the open connection.
"use strict";

(() => {
  const HISTORY = 500;
  const BACKOFF_FIRST_MS = 500;
  const BACKOFF_CAP_MS = 30000;
  const PING_EVERY_MS = 25000;

  const VISIT_WORDS = {
    scheduled: "Scheduled", en_route: "On the way", arrived: "Arrived", in_visit: "With her now",
    left: "Visit done", missed: "Missed",
  };
  const INCIDENT_WORDS = {
    open: "Raised", offered: "Finding a caregiver", escalated: "The care team is on it",
    assigned: "Caregiver on the way", resolved: "Resolved",
  };
  const KIND_WORDS = { fall: "A fall", sos: "The help button was pressed" };
  const DOSE_WORDS = {
    pending: "to come", overdue: "overdue", taken: "taken", late: "taken late", missed: "missed",
    administered: "given by her caregiver", refused: "refused", unavailable: "not available",
    double_attempt: "second dose tried",
  };
  const DOSE_PROBLEMS = new Set(["overdue", "missed", "double_attempt"]);
  const DOSE_GOOD = new Set(["taken", "late", "administered"]);

  const DOSES_EVERY_MS = 300000;
  const el = (id) => document.getElementById(id);
  const visits = new Map(); // visit_id -> latest visit_status frame
  const incidents = new Map(); // incident_id -> latest incident frame
  const doses = new Map(); // dose_key -> latest dose frame
  const names = new Map(); // caregiver id -> name (incident frames carry it)
  let lastSeq = 0;
  let epoch = 0;
  let socket = null;
  let token = "";
  let patient = null;
  // Her medication day as the API gave it: null until it answered (or with no API), else
  // {patient, rows} (no rows: she has no schedule).
  let dayDoses = null;
  const api = { base: "", agency: "" };

  const hhmm = (epochS) =>
    new Date(epochS * 1000).toLocaleTimeString("en-GB", { hour: "2-digit", minute: "2-digit" });
  const who = (id) => names.get(id) || "Your caregiver";
  const minutes = (s) => Math.max(1, Math.round(s / 60));

  function startOfToday() {
    const d = new Date();
    d.setHours(0, 0, 0, 0);
    return d.getTime() / 1000;
  }

  // The token's claims, read by renewal.js (not verified: the server checks it).
  const claimsOf = (t) => (window.careknotToken ? window.careknotToken.claims(t) : {});

  // Which of two frames about one thing is the later news: the stream's order (`seq`), since a
  // frame's `at` is when its event happened (a visit's `arrived` carries the time of the fix
  // that checked her in, which may be before the `en_route` told a moment earlier), and a
  // resume may deliver older frames after newer ones.
  function newer(known, f) {
    if (!known) return true;
    if (typeof known.seq === "number" && typeof f.seq === "number") return known.seq < f.seq;
    return known.at <= f.at;
  }

  function onFrame(f) {
    if (f.type === "resync") {
      epoch = f.epoch;
      lastSeq = 0;
      visits.clear();
      incidents.clear();
      doses.clear();
      render();
      return;
    }
    if (typeof f.seq === "number" && f.seq > lastSeq) lastSeq = f.seq;
    if (f.type === "visit_status" && newer(visits.get(f.visit_id), f)) {
      if (f.caregiver_name) names.set(f.caregiver_id, f.caregiver_name);
      visits.set(f.visit_id, f);
    } else if (f.type === "incident" && newer(incidents.get(f.incident_id), f)) {
      if (f.assignee_id && f.assignee_name) names.set(f.assignee_id, f.assignee_name);
      incidents.set(f.incident_id, f);
    } else if (f.type === "dose" && newer(doses.get(f.dose_key), f)) doses.set(f.dose_key, f);
    else return;
    render();
  }

  // ------------------------------------------------------------------ what she reads

  function visitLine(f) {
    if (f.state === "en_route") {
      return typeof f.eta_s === "number"
        ? `${who(f.caregiver_id)} is on the way, about ${minutes(f.eta_s)} min away`
        : `${who(f.caregiver_id)} is on the way`;
    }
    if (f.state === "arrived") return `${who(f.caregiver_id)} arrived at ${hhmm(f.at)}`;
    if (f.state === "in_visit") return `${who(f.caregiver_id)} is with her now`;
    if (f.state === "left") return `${who(f.caregiver_id)} left at ${hhmm(f.at)}`;
    if (f.state === "missed") {
      return names.has(f.caregiver_id) ? `${who(f.caregiver_id)}'s visit was missed` : "The visit was missed";
    }
    return `${who(f.caregiver_id)} is coming later today`;
  }

  function incidentLine(f) {
    const what = KIND_WORDS[f.kind] || String(f.kind).replace(/_/g, " ");
    if (f.state === "assigned") {
      const eta = typeof f.eta_s === "number" ? `, about ${minutes(f.eta_s)} min away` : "";
      return `${what}: ${who(f.assignee_id)} is on the way${eta}`;
    }
    if (f.state === "resolved") return `${what}: resolved${f.assignee_id ? ` by ${who(f.assignee_id)}` : ""}`;
    return `${what}: ${INCIDENT_WORDS[f.state] || f.state}`;
  }

  function item(cls, text, status, when, data) {
    const li = document.createElement("li");
    li.className = cls;
    Object.assign(li.dataset, data);
    const main = document.createElement("span");
    main.className = "who";
    main.textContent = text;
    const badge = document.createElement("span");
    badge.className = "status";
    badge.textContent = status;
    const time = document.createElement("span");
    time.className = "when";
    time.textContent = when;
    li.append(main, badge, time);
    return li;
  }

  function render() {
    const since = startOfToday();
    const day = [...visits.values()].filter((f) => f.at >= since).sort((a, b) => a.at - b.at);
    el("visits").replaceChildren(...day.map((f) => item(
      `visit ${f.state}`, visitLine(f), VISIT_WORDS[f.state] || f.state, `updated ${hhmm(f.at)}`,
      { visitId: f.visit_id, state: f.state },
    )));
    el("no-visits").hidden = day.length > 0;

    const happened = [...incidents.values()]
      .filter((f) => f.at >= since || f.state !== "resolved").sort((a, b) => b.at - a.at);
    el("incidents").replaceChildren(...happened.map((f) => item(
      `incident ${f.state}`, incidentLine(f), INCIDENT_WORDS[f.state] || f.state,
      `updated ${hhmm(f.at)}`, { incidentId: f.incident_id, state: f.state },
    )));
    el("no-incidents").hidden = happened.length > 0;

    const taken = todaysDoses(since);
    el("doses").replaceChildren(...taken.map((f) => item(
      `dose ${DOSE_PROBLEMS.has(f.outcome) ? "problem" : DOSE_GOOD.has(f.outcome) ? "good" : ""}`,
      `${f.name}${f.critical ? " (important)" : ""}, due ${hhmm(f.due_at)}`,
      DOSE_WORDS[f.outcome] || f.outcome, "", { doseKey: f.dose_key, outcome: f.outcome },
    )));
    el("no-doses").hidden = taken.length > 0;
    const card = el("doses-card");
    card.dataset.schedule = !dayDoses ? "unknown" : dayDoses.rows.length ? "some" : "none";
    card.hidden = card.dataset.schedule === "none" && taken.length === 0;

    el("now").textContent = headline(day, happened);
  }

  // Today's doses: the API's day (each scheduled dose, pending until something became of it),
  // a frame's news about one newer than the read; then doses only frames told of.
  function todaysDoses(since) {
    const rows = dayDoses && dayDoses.patient === patient ? dayDoses.rows : [];
    const listed = new Set(rows.map((d) => d.dose_key));
    const merged = rows.map((d) => {
      const f = doses.get(d.dose_key);
      return f && (d.outcome === "pending" || f.at >= (d.at || 0)) ? { ...d, ...f } : d;
    });
    const told = [...doses.values()].filter((f) => !listed.has(f.dose_key) && f.due_at >= since);
    return [...merged, ...told].sort((a, b) => a.due_at - b.due_at);
  }

  // One sentence first: help on the way, then a caregiver coming or there, then the last news.
  function headline(day, happened) {
    const open = happened.find((f) => f.state !== "resolved");
    if (open) return incidentLine(open);
    const current = [...day].reverse().find((f) => ["en_route", "arrived", "in_visit"].includes(f.state));
    if (current) return visitLine(current);
    const last = day[day.length - 1];
    return last ? visitLine(last) : "No visit news yet today.";
  }

  // ------------------------------------------------------------------ connection

  function setConnection(state, text) {
    el("connection").dataset.state = state;
    el("connection").textContent = text;
  }

  function connect() {
    let attempt = 0;
    let pinger = 0;
    const base = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
    const url = patient ? `${base}?patient=${encodeURIComponent(patient)}` : base;

    function open() {
      setConnection("connecting", attempt ? "Reconnecting…" : "Connecting…");
      const ws = new WebSocket(url);
      socket = ws;
      ws.addEventListener("open", () => {
        ws.send(JSON.stringify({ type: "auth", token }));
        attempt = 0;
        setConnection("live", "Live");
        pinger = setInterval(() => ws.send(JSON.stringify({ type: "ping" })), PING_EVERY_MS);
      });
      ws.addEventListener("message", (event) => {
        let f;
        try {
          f = JSON.parse(event.data);
        } catch {
          return;
        }
        if (!f || typeof f !== "object") return;
        if (f.type === "auth_ok") {
          el("connection").dataset.authExp = String(f.exp);
          return;
        }
        if (f.type === "hello") {
          const seqNow = typeof f.seq_now === "number" ? f.seq_now : 0;
          if (seqNow < lastSeq || (epoch && f.epoch && f.epoch !== epoch)) lastSeq = 0;
          epoch = f.epoch || epoch;
          const from = lastSeq > 0 ? lastSeq : Math.max(0, seqNow - HISTORY);
          if (from < seqNow) ws.send(JSON.stringify({ type: "resume", last_seq: from, epoch }));
          return;
        }
        onFrame(f);
      });
      ws.addEventListener("close", (event) => {
        clearInterval(pinger);
        if (socket !== ws) return; // replaced: another relative chosen
        if (event.code === 4401) {
          setConnection("down", "Signed out: open a new link");
          return;
        }
        const ceiling = Math.min(BACKOFF_CAP_MS, BACKOFF_FIRST_MS * 2 ** attempt++);
        setConnection("down", "Disconnected; retrying…");
        setTimeout(open, ceiling / 2 + Math.random() * (ceiling / 2));
      });
    }

    open();
  }

  // ------------------------------------------------------------------ the HTTP API

  function localDay() { // YYYY-MM-DD, this device's: her family is where she is
    const d = new Date();
    return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, "0")}-${String(d.getDate()).padStart(2, "0")}`;
  }

  async function readDoses() {
    if (!api.base || !patient) return;
    const asked = patient;
    const path = `/v1/agencies/${encodeURIComponent(api.agency)}/patients/` +
      `${encodeURIComponent(asked)}/medication/day?day=${localDay()}`;
    const answer = await fetch(`${api.base}${path}`, {
      headers: { Authorization: `Bearer ${token}`, Accept: "application/json" }, cache: "no-store",
    });
    if (!answer.ok) return; // the frames alone, as without the API
    const rows = await answer.json();
    if (asked === patient) dayDoses = { patient: asked, rows };
    render();
  }

  async function startApi() {
    const settings = await fetch("/config.json").then((r) => (r.ok ? r.json() : null)).catch(() => null);
    api.agency = String(claimsOf(token).agency || "");
    if (!settings || !settings.api_url || !api.agency) return;
    api.base = String(settings.api_url).replace(/\/+$/, "");
    if (window.careknotToken) {
      window.careknotToken.keep(token, api.base, {
        renewed(fresh, exp) {
          token = fresh;
          if (socket && socket.readyState === WebSocket.OPEN) {
            socket.send(JSON.stringify({ type: "auth", token: fresh }));
          }
          el("connection").dataset.tokenExp = String(exp);
        },
        over() {}, // signed out when the token lapses, as before
        ending(at) { // the session's last token: it ends then
          el("connection").dataset.sessionEnds = String(at);
          const note = el("session-note");
          note.textContent = `Signed in until ${hhmm(at)}: open a new link then`;
          note.hidden = false;
        },
      });
    }
    await readDoses().catch(() => {});
    setInterval(() => readDoses().catch(() => {}), DOSES_EVERY_MS);
  }

  function start() {
    const params = new URLSearchParams(location.hash.slice(1));
    token = params.get("token");
    if (token) history.replaceState(null, "", location.pathname + location.search); // off-screen
    if (!token) {
      setConnection("down", "No token: open this page as /family#token=…");
      return;
    }
    const { patients: named } = claimsOf(token);
    const patients = Array.isArray(named) ? named : [];
    patient = params.get("patient") || patients[0] || null;
    el("patient-name").textContent = patient || "your relative";
    if (patients.length > 1) {
      const select = el("patient-select");
      select.replaceChildren(...patients.map((p) => new Option(p, p, false, p === patient)));
      el("patient-choice").hidden = false;
      select.addEventListener("change", () => {
        patient = select.value;
        el("patient-name").textContent = patient;
        visits.clear();
        incidents.clear();
        doses.clear();
        lastSeq = 0;
        epoch = 0;
        render();
        const old = socket;
        connect();
        if (old) old.close(1000, "another relative");
        readDoses().catch(() => {});
      });
    }
    render();
    connect();
    startApi().catch(() => {});
  }

  start();
})();
