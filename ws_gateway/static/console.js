// CareKnot Dispatch web console: a dispatcher's live view of one agency.
//
// Opened as /?token=TOKEN (a dispatcher token). Connects to /ws on the same host, keeps the
// last `seq` it received and the `epoch` it counts in and, on reconnect, sends
// {"type": "resume", "last_seq": N, "epoch": E} so nothing is missed; a `resync` frame (the
// server lost the stream and started a new epoch) starts the count again. Frames are applied
// idempotently (newest `ts` / `at` wins), because a resume may
// deliver older messages after newer ones. The map is drawn on a <canvas> (equirectangular
// projection, no tiles), so the page works offline.
"use strict";

(() => {
  const STALE_AFTER_S = 120;
  const LEEDS = { lat: 53.7997, lon: -1.5492 };
  const BACKOFF_FIRST_MS = 500;
  const BACKOFF_CAP_MS = 30000;
  const PING_EVERY_MS = 25000;
  const SILENCE_LIMIT_MS = 70000;
  const HISTORY = 1000; // on first connect, replay up to this many recent messages
  const LOG_MAX = 200;
  const RESOLVED_SHOWN = 20;
  const STATE_RANK = { escalated: 0, open: 1, offered: 2, assigned: 3, resolved: 4 };
  const COLOURS = {
    available: "#1f8a4c", busy: "#1f5fbf", stale: "#8a919c",
    open: "#d97706", offered: "#b7791f", assigned: "#1f5fbf", escalated: "#c62828",
    resolved: "#8a919c",
  };

  const caregivers = new Map(); // id -> {id, lat, lon, h3, ts, status}
  const incidents = new Map(); // id -> incident frame
  const names = new Map(); // caregiver id -> name (learnt from incident frames)
  let lastSeq = 0;
  let epoch = 0;
  let dirty = true; // redraw the map and counts
  let listDirty = true; // rebuild the incident list

  const el = (id) => document.getElementById(id);
  const nowS = () => Date.now() / 1000;

  // ------------------------------------------------------------------ state

  function caregiverStatus(c, now) {
    if (now - c.ts > STALE_AFTER_S || c.status === "stale") return "stale";
    return c.status === "busy" ? "busy" : "available";
  }

  function applyLocation(f) {
    if (typeof f.lat !== "number" || typeof f.lon !== "number") return;
    const known = caregivers.get(f.caregiver_id);
    if (known && known.ts > f.ts) return; // an older message replayed late
    if (known && known.status !== f.status) {
      log(`${who(f.caregiver_id)} is now ${f.status}`);
    }
    caregivers.set(f.caregiver_id, {
      id: f.caregiver_id, lat: f.lat, lon: f.lon, h3: f.h3, ts: f.ts, status: f.status,
    });
  }

  function applyIncident(f) {
    const known = incidents.get(f.incident_id);
    if (known && known.at > f.at) return;
    if (f.assignee_id && f.assignee_name) names.set(f.assignee_id, f.assignee_name);
    incidents.set(f.incident_id, f);
    if (!known || known.state !== f.state || known.assignee_id !== f.assignee_id) {
      log(describeIncident(f), f.state === "escalated" ? "escalated" : "");
      if (f.state === "escalated") el("announce").textContent = `Escalated: ${describeIncident(f)}`;
    }
    listDirty = true;
  }

  // Visit alerts (late, missed, early_departure, unscheduled_home): raised, then cleared when
  // their condition ends; one `alert_id` per condition, the newest `at` wins.
  const alerts = new Map(); // alert_id -> alert frame

  function describeAlert(f) {
    const what = f.kind.replace(/_/g, " ");
    return `${what} at ${f.patient_id} (${who(f.caregiver_id)}): ${f.state}`;
  }

  function applyAlert(f) {
    const known = alerts.get(f.alert_id);
    if (known && known.at > f.at) return;
    alerts.set(f.alert_id, f);
    if (known && known.state === f.state) return;
    log(describeAlert(f), f.state === "raised" ? "escalated" : "");
    if (f.state === "raised") el("announce").textContent = `Visit alert: ${describeAlert(f)}`;
  }

  // A family's page (or a caregiver's) gets visit_status frames: the latest state of each visit.
  const visits = new Map(); // visit_id -> latest visit_status frame
  const VISIT_WORDS = {
    scheduled: "is scheduled", en_route: "is on the way", arrived: "has arrived",
    in_visit: "is with them", left: "has left", missed: "missed the visit",
  };

  function describeVisit(f) {
    const eta = typeof f.eta_s === "number" ? ` (about ${Math.max(1, Math.round(f.eta_s / 60))} min away)` : "";
    return `${who(f.caregiver_id)} ${VISIT_WORDS[f.state] || f.state} · ${f.patient_id}${eta}`;
  }

  function applyVisitStatus(f) {
    const known = visits.get(f.visit_id);
    if (known && known.at > f.at) return;
    visits.set(f.visit_id, f);
    if (known && known.state === f.state && known.eta_s === f.eta_s) return;
    log(describeVisit(f), f.state === "missed" ? "escalated" : "");
    renderVisits();
  }

  function renderVisits() {
    const list = el("visits");
    list.replaceChildren(...[...visits.values()].sort((a, b) => b.at - a.at).map((f) => {
      const item = document.createElement("li");
      item.className = `visit ${f.state}`;
      item.textContent = describeVisit(f);
      return item;
    }));
    el("no-visits").hidden = visits.size > 0;
  }

  function onFrame(frame) {
    if (frame.type === "resync") {
      epoch = frame.epoch;
      lastSeq = 0;
      log("the server lost its recent messages: taking them again");
      return;
    }
    if (typeof frame.seq === "number" && frame.seq > lastSeq) lastSeq = frame.seq;
    if (frame.type === "location") applyLocation(frame);
    else if (frame.type === "incident") applyIncident(frame);
    else if (frame.type === "alert") applyAlert(frame);
    else if (frame.type === "visit_status") applyVisitStatus(frame);
    else return; // control frames (hello, ack, error, pong) and types this page does not know
    dirty = true;
  }

  // ------------------------------------------------------------------ connection

  function connect(token) {
    let attempt = 0;
    let socket = null;
    let pinger = 0;
    let lastHeard = 0;

    const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws?token=${
      encodeURIComponent(token)}`;

    function open() {
      setConnection("connecting", attempt ? "Reconnecting…" : "Connecting…");
      socket = new WebSocket(url);
      socket.addEventListener("open", () => {
        attempt = 0;
        lastHeard = Date.now();
        setConnection("live", "Live");
        log("connected");
        pinger = setInterval(keepAlive, PING_EVERY_MS);
      });
      socket.addEventListener("message", (event) => {
        lastHeard = Date.now();
        let frame;
        try {
          frame = JSON.parse(event.data);
        } catch {
          return;
        }
        if (!frame || typeof frame !== "object") return;
        if (frame.type === "hello") onHello(frame);
        else if (frame.type === "error") log(`server: ${frame.reason || "error"} ${frame.detail || ""}`);
        onFrame(frame);
      });
      socket.addEventListener("close", (event) => {
        clearInterval(pinger);
        const delay = backoff(attempt++);
        const why = event.reason ? ` (${event.reason})` : "";
        setConnection("down", `Disconnected${why}; retrying in ${Math.ceil(delay / 1000)} s`);
        log(`disconnected${why}`);
        setTimeout(open, delay);
      });
    }

    function onHello(hello) {
      if (hello.subject) el("agency").textContent = `${hello.role || ""} ${hello.subject}`.trim();
      const seqNow = typeof hello.seq_now === "number" ? hello.seq_now : 0;
      const helloEpoch = typeof hello.epoch === "number" ? hello.epoch : 0;
      // the server's stream started again: take what it has
      if (seqNow < lastSeq || (epoch && helloEpoch && helloEpoch !== epoch)) lastSeq = 0;
      epoch = helloEpoch || epoch;
      const from = lastSeq > 0 ? lastSeq : Math.max(0, seqNow - HISTORY);
      if (from < seqNow) socket.send(JSON.stringify({ type: "resume", last_seq: from, epoch }));
    }

    function keepAlive() {
      if (Date.now() - lastHeard > SILENCE_LIMIT_MS) {
        socket.close(4000, "silent"); // a dead connection: reconnect
        return;
      }
      if (socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify({ type: "ping" }));
    }

    open();
  }

  function backoff(attempt) {
    const ceiling = Math.min(BACKOFF_CAP_MS, BACKOFF_FIRST_MS * 2 ** attempt);
    return ceiling / 2 + Math.random() * (ceiling / 2);
  }

  function setConnection(state, text) {
    const node = el("connection");
    node.dataset.state = state;
    node.textContent = text;
  }

  // ------------------------------------------------------------------ side panel

  function who(caregiverId) {
    return names.get(caregiverId) || caregiverId;
  }

  function eta(seconds) {
    if (typeof seconds !== "number") return "";
    return seconds < 90 ? `${Math.round(seconds)} s` : `${Math.round(seconds / 60)} min`;
  }

  function describeIncident(f) {
    let text = `${f.kind} at ${f.patient_id}: ${f.state}`;
    if (f.assignee_id) text += ` — ${f.assignee_name || f.assignee_id}`;
    if (f.eta_s != null && f.state === "assigned") text += `, ETA ${eta(f.eta_s)}`;
    return text;
  }

  function clock(epochS) {
    return new Date(epochS * 1000).toLocaleTimeString("en-GB", { hour12: false });
  }

  function log(text, cls = "") {
    const item = document.createElement("li");
    if (cls) item.className = cls;
    const time = document.createElement("time");
    const now = nowS();
    time.dateTime = new Date(now * 1000).toISOString();
    time.textContent = clock(now);
    item.append(time, text);
    const list = el("log");
    list.prepend(item);
    while (list.children.length > LOG_MAX) list.lastElementChild.remove();
  }

  function sortedIncidents() {
    const all = [...incidents.values()].sort(
      (a, b) => STATE_RANK[a.state] - STATE_RANK[b.state] || b.at - a.at,
    );
    const active = all.filter((i) => i.state !== "resolved");
    return active.concat(all.filter((i) => i.state === "resolved").slice(0, RESOLVED_SHOWN));
  }

  function renderIncidents() {
    const list = el("incidents");
    const items = sortedIncidents().map((f) => {
      const item = document.createElement("li");
      item.className = `incident ${f.state}`;
      const head = document.createElement("div");
      head.className = "head";
      const kind = document.createElement("span");
      kind.className = "kind";
      kind.textContent = `${f.kind.replace(/_/g, " ")} · ${f.patient_id}`;
      const state = document.createElement("span");
      state.className = "state";
      state.textContent = f.state;
      head.append(kind, state);
      const detail = document.createElement("div");
      detail.className = "detail";
      const parts = [`updated ${clock(f.at)}`];
      if (f.assignee_id) parts.push(`caregiver ${f.assignee_name || f.assignee_id}`);
      if (f.eta_s != null && f.state !== "resolved") parts.push(`ETA ${eta(f.eta_s)}`);
      detail.textContent = parts.join(" · ");
      item.append(head, detail);
      item.setAttribute("aria-label", describeIncident(f));
      return item;
    });
    list.replaceChildren(...items);
    el("no-incidents").hidden = items.length > 0;
  }

  function counts(now) {
    const c = { caregivers: caregivers.size, available: 0, busy: 0, stale: 0 };
    for (const s of Object.keys(STATE_RANK)) c[s] = 0;
    for (const cg of caregivers.values()) c[caregiverStatus(cg, now)] += 1;
    for (const i of incidents.values()) if (i.state in c) c[i.state] += 1;
    return c;
  }

  function renderCounts(c) {
    for (const [key, value] of Object.entries(c)) {
      const node = el(`count-${key}`);
      if (node) node.textContent = String(value);
    }
  }

  // ------------------------------------------------------------------ map

  const canvas = el("map");
  const ctx = canvas.getContext("2d");
  let view = null; // {lat0, lon0, kx, scale, cx, cy}
  let fitted = null; // bounds the view was last fitted to

  function dataBounds() {
    const pts = [...caregivers.values()];
    for (const i of incidents.values()) {
      if (typeof i.lat === "number" && typeof i.lon === "number") pts.push(i);
    }
    if (!pts.length) {
      return { minLat: LEEDS.lat - 0.07, maxLat: LEEDS.lat + 0.07,
        minLon: LEEDS.lon - 0.12, maxLon: LEEDS.lon + 0.12 };
    }
    const b = { minLat: 90, maxLat: -90, minLon: 180, maxLon: -180 };
    for (const p of pts) {
      b.minLat = Math.min(b.minLat, p.lat); b.maxLat = Math.max(b.maxLat, p.lat);
      b.minLon = Math.min(b.minLon, p.lon); b.maxLon = Math.max(b.maxLon, p.lon);
    }
    return b;
  }

  // Grow the fitted bounds when data leaves them; shrink only when asked ("Fit").
  function bounds(refit) {
    const b = dataBounds();
    if (refit || !fitted || fitted.empty !== (caregivers.size === 0)) {
      fitted = { ...b, empty: caregivers.size === 0 };
    } else {
      fitted.minLat = Math.min(fitted.minLat, b.minLat); fitted.maxLat = Math.max(fitted.maxLat, b.maxLat);
      fitted.minLon = Math.min(fitted.minLon, b.minLon); fitted.maxLon = Math.max(fitted.maxLon, b.maxLon);
    }
    return fitted;
  }

  function makeView(b, width, height) {
    const lat0 = (b.minLat + b.maxLat) / 2;
    const lon0 = (b.minLon + b.maxLon) / 2;
    const kx = Math.cos((lat0 * Math.PI) / 180);
    const spanX = Math.max((b.maxLon - b.minLon) * kx, 0.01);
    const spanY = Math.max(b.maxLat - b.minLat, 0.01);
    const pad = 36;
    const scale = Math.min((width - 2 * pad) / spanX, (height - 2 * pad) / spanY);
    return { lat0, lon0, kx, scale, cx: width / 2, cy: height / 2, width, height };
  }

  function project(lat, lon) {
    return [view.cx + (lon - view.lon0) * view.kx * view.scale, view.cy - (lat - view.lat0) * view.scale];
  }

  function unproject(x, y) {
    return [view.lat0 - (y - view.cy) / view.scale, view.lon0 + (x - view.cx) / (view.kx * view.scale)];
  }

  function niceStep(span, lines) {
    const raw = span / lines;
    const p = 10 ** Math.floor(Math.log10(raw));
    return [1, 2, 5, 10].map((m) => m * p).find((s) => s >= raw);
  }

  function drawGrid() {
    const [north, west] = unproject(0, 0);
    const [south, east] = unproject(view.width, view.height);
    const step = niceStep(Math.max(north - south, (east - west) * view.kx), 8);
    const digits = Math.max(0, -Math.floor(Math.log10(step)));
    ctx.strokeStyle = "#e6e9ee";
    ctx.fillStyle = "#9aa1ad";
    ctx.lineWidth = 1;
    ctx.font = "11px system-ui, sans-serif";
    for (let lat = Math.ceil(south / step) * step; lat <= north; lat += step) {
      const [, y] = project(lat, west);
      line(0, y, view.width, y);
      ctx.fillText(`${lat.toFixed(digits)}°`, 4, y - 3);
    }
    const lonStep = niceStep(east - west, 8);
    const lonDigits = Math.max(0, -Math.floor(Math.log10(lonStep)));
    for (let lon = Math.ceil(west / lonStep) * lonStep; lon <= east; lon += lonStep) {
      const [x] = project(north, lon);
      line(x, 0, x, view.height);
      ctx.fillText(`${lon.toFixed(lonDigits)}°`, x + 3, view.height - 4);
    }
  }

  function line(x1, y1, x2, y2) {
    ctx.beginPath();
    ctx.moveTo(Math.round(x1) + 0.5, Math.round(y1) + 0.5);
    ctx.lineTo(Math.round(x2) + 0.5, Math.round(y2) + 0.5);
    ctx.stroke();
  }

  function niceBelow(x) {
    const p = 10 ** Math.floor(Math.log10(x));
    return [5, 2, 1].map((m) => m * p).find((s) => s <= x);
  }

  function drawScaleBar() {
    const metresPerPx = 111320 / view.scale;
    const metres = niceBelow((view.width / 5) * metresPerPx);
    const px = metres / metresPerPx;
    const x = view.width - px - 16;
    const y = view.height - 22;
    ctx.strokeStyle = "#5d6675";
    ctx.lineWidth = 2;
    line(x, y, x + px, y);
    line(x, y - 4, x, y + 4);
    line(x + px, y - 4, x + px, y + 4);
    ctx.fillStyle = "#5d6675";
    ctx.fillText(metres >= 1000 ? `${metres / 1000} km` : `${metres} m`, x, y - 7);
  }

  function drawLandmark() {
    const [x, y] = project(LEEDS.lat, LEEDS.lon);
    ctx.strokeStyle = "#b8bec8";
    ctx.lineWidth = 1;
    line(x - 6, y, x + 6, y);
    line(x, y - 6, x, y + 6);
    ctx.fillStyle = "#9aa1ad";
    ctx.fillText("Leeds centre", x + 8, y - 6);
  }

  function drawIncidents(now) {
    for (const i of incidents.values()) {
      if (i.state === "resolved") continue;
      let at = null;
      if (typeof i.lat === "number" && typeof i.lon === "number") at = [i.lat, i.lon];
      else if (i.assignee_id && caregivers.has(i.assignee_id)) {
        const c = caregivers.get(i.assignee_id);
        at = [c.lat, c.lon];
      }
      if (!at) continue;
      const [x, y] = project(at[0], at[1]);
      const pulse = i.state === "escalated" ? 2 * Math.sin(now * 4) : 0;
      ctx.strokeStyle = COLOURS[i.state] || COLOURS.open;
      ctx.lineWidth = 3;
      ctx.beginPath();
      ctx.arc(x, y, 11 + pulse, 0, 2 * Math.PI);
      ctx.stroke();
    }
  }

  function drawCaregivers(now) {
    for (const c of caregivers.values()) {
      const [x, y] = project(c.lat, c.lon);
      ctx.fillStyle = COLOURS[caregiverStatus(c, now)];
      ctx.strokeStyle = "#ffffff";
      ctx.lineWidth = 1.5;
      ctx.beginPath();
      ctx.arc(x, y, 5.5, 0, 2 * Math.PI);
      ctx.fill();
      ctx.stroke();
    }
  }

  function resize() {
    const ratio = window.devicePixelRatio || 1;
    const { width, height } = canvas.getBoundingClientRect();
    canvas.width = Math.max(1, Math.round(width * ratio));
    canvas.height = Math.max(1, Math.round(height * ratio));
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    dirty = true;
  }

  function drawMap(now, refit) {
    const { width, height } = canvas.getBoundingClientRect();
    view = makeView(bounds(refit), width, height);
    ctx.clearRect(0, 0, width, height);
    ctx.fillStyle = "#fbfcfd";
    ctx.fillRect(0, 0, width, height);
    drawGrid();
    drawLandmark();
    drawIncidents(now);
    drawCaregivers(now);
    drawScaleBar();
  }

  function describeMap(c) {
    return `Map of ${c.caregivers} caregivers (${c.available} available, ${c.busy} busy, ` +
      `${c.stale} stale) and ${c.escalated} escalated, ${c.open + c.offered} unassigned incidents`;
  }

  // ------------------------------------------------------------------ hover

  function nearestCaregiver(x, y) {
    let best = null;
    let bestD = 12 * 12;
    for (const c of caregivers.values()) {
      const [cx, cy] = project(c.lat, c.lon);
      const d = (cx - x) ** 2 + (cy - y) ** 2;
      if (d < bestD) { best = c; bestD = d; }
    }
    return best;
  }

  function onHover(event) {
    const tip = el("tooltip");
    if (!view) return;
    const rect = canvas.getBoundingClientRect();
    const x = event.clientX - rect.left;
    const y = event.clientY - rect.top;
    const c = nearestCaregiver(x, y);
    if (!c) { tip.hidden = true; return; }
    const age = Math.max(0, Math.round(nowS() - c.ts));
    tip.textContent = `${who(c.id)}\n${caregiverStatus(c, nowS())} · fix ${age} s ago`;
    tip.style.left = `${x + 12}px`;
    tip.style.top = `${y + 12}px`;
    tip.hidden = false;
  }

  // ------------------------------------------------------------------ main loop

  let lastTick = 0;
  let refitRequested = true;

  function frame() {
    const now = nowS();
    const tick = now - lastTick >= 1; // staleness changes with time alone
    const pulsing = [...incidents.values()].some((i) => i.state === "escalated");
    if (dirty || tick || pulsing) {
      drawMap(now, refitRequested);
      refitRequested = false;
    }
    if (dirty || tick) {
      const c = counts(now);
      renderCounts(c);
      canvas.setAttribute("aria-label", describeMap(c));
      lastTick = now;
    }
    if (listDirty) {
      renderIncidents();
      listDirty = false;
    }
    dirty = false;
    requestAnimationFrame(frame);
  }

  function start() {
    const token = new URLSearchParams(location.search).get("token");
    new ResizeObserver(resize).observe(canvas);
    resize();
    canvas.addEventListener("mousemove", onHover);
    canvas.addEventListener("mouseleave", () => { el("tooltip").hidden = true; });
    el("fit").addEventListener("click", () => { refitRequested = true; dirty = true; });
    requestAnimationFrame(frame);
    if (!token) {
      setConnection("down", "No token: open this page as /?token=…");
      log("no token in the page URL");
      return;
    }
    connect(token);
  }

  start();
})();
