// CareKnot Dispatch web console: a dispatcher's live view of one agency.
//
// Opened as /#token=TOKEN (a dispatcher token, in the fragment, which the browser never sends to
// the server: no log or proxy keeps it). Connects to /ws on the same host, sends the token in
// its first frame ({"type": "auth"}), keeps the
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

  // ------------------------------------------------------------------ alarms

  // Alarms a person must acknowledge: each `alarm` frame is the whole alarm as it stands (the
  // newest `at` wins). Active ones are listed first, unacknowledged before acknowledged, by
  // severity then by how long they have waited; cleared ones drop to "Recently cleared".
  // A dispatcher's acknowledge or clear is answered `ack` (with its command_id) at once and
  // its outcome comes later as a `command_result`, to every dispatcher of the agency.
  const alarms = new Map(); // alarm_id -> latest alarm frame
  const hands = new Map(); // alarm_id -> {command, state, commandId, reason, sentAt, endedAt}
  const alarmNodes = new Map(); // alarm_id -> its <li>, kept so focus survives re-rendering
  const SEVERITY_RANK = { critical: 0, major: 1, minor: 2, warning: 3 };
  const STATUS_RANK = { active_unack: 0, active_ack: 1, cleared_unack: 2, cleared_ack: 3 };
  const CLEARED_SHOWN = 10;
  const CLEARED_KEPT_S = 3600; // a cleared and acknowledged alarm is shown this long at most
  const ACK_WAIT_S = 15; // no `ack` this soon: the command may not have reached the server
  const RESULT_WAIT_S = 60; // acknowledged by the gateway but no outcome this soon
  const OUTCOME_SHOWN_S = 30;
  const KIND_WORDS = {
    incident_escalated: "incident escalated", device_offline: "device offline",
    low_battery: "low battery", flapping: "device keeps dropping off", tamper: "tamper",
    dispenser_jam: "dispenser jammed", low_supply: "medication running low",
    dose_missed: "dose missed", dose_overdue: "dose overdue",
    dose_double_attempt: "second dose tried (overdose risk)", low_spo2: "low SpO2",
    inactivity: "no movement (unusual for her)", not_up: "not up (unusual for her)",
    long_bathroom: "long in the bathroom", night_wandering: "front door at night",
    missed_meal: "missed meal",
  };
  // Alarms a caregiver can be sent to: their patient may be on the floor.
  const DISPATCHABLE = new Set(["inactivity", "not_up", "long_bathroom", "night_wandering"]);
  // Alarms of a home's routine: a dispatcher who knows better says "false alarm", and its
  // model learns from it.
  const isRoutine = (a) => String(a.source || "").startsWith("routine:");
  // `climbed` counts the rungs of its ladder taken; the first rung is the dispatchers.
  const RUNGS = ["dispatchers", "on-call manager", "external contacts"];
  const HAND_WORDS = {
    acknowledge: { pending: "Acknowledging…", done: "Acknowledged", verb: "Acknowledge" },
    clear: { pending: "Clearing…", done: "Cleared", verb: "Clear" },
    false_alarm: { pending: "Marking a false alarm…", done: "Marked a false alarm", verb: "False alarm:" },
    open_incident: { pending: "Sending a caregiver…", done: "Incident opened", verb: "Send a caregiver to" },
  };
  const REASON_WORDS = {
    unknown_alarm: "no such alarm", other_agency: "another agency's alarm",
    already_cleared: "already cleared", already_acknowledged: "already acknowledged",
    forbidden: "not allowed for this login", rate_limited: "too many commands, wait a moment",
    unavailable: "the server is busy, try again", offline: "not connected, try again",
    no_ack: "no answer from the server, try again",
    connection_lost: "connection lost before the server answered, try again",
    no_result: "no outcome yet, check the alarm",
    alarm_cleared: "the alarm cleared meanwhile", no_patient: "the alarm is about no patient",
  };
  let me = ""; // the dispatcher this page is logged in as (from `hello`)
  let alarmsDirty = true;
  let catchingUpTo = 0; // frames up to this seq are history being replayed, not news

  const kindWords = (kind) => KIND_WORDS[kind] || String(kind).replace(/_/g, " ");
  const reasonWords = (reason) => REASON_WORDS[reason] || String(reason || "refused").replace(/_/g, " ");
  const isActive = (a) => a.status === "active_unack" || a.status === "active_ack";
  const isUnacked = (a) => a.status === "active_unack" || a.status === "cleared_unack";
  const person = (actor) => {
    const id = String(actor || "").replace(/^dispatcher:/, "");
    return id && id === me ? "you" : id;
  };

  function whereOf(a) {
    const parts = [];
    if (a.patient_id) parts.push(`patient ${a.patient_id}`);
    const [what, id] = String(a.source || "").split(/:(.*)/s);
    if ((what === "device" || what === "incident") && id) parts.push(`${what} ${id}`);
    return parts.join(" · ") || a.source || "";
  }

  function rungOf(a) {
    return RUNGS[Math.min(RUNGS.length - 1, Math.max(0, (a.climbed || 0) - 1))];
  }

  function ago(seconds) {
    const s = Math.max(0, Math.round(seconds));
    if (s < 60) return `${s} s ago`;
    if (s < 3600) return `${Math.floor(s / 60)} min ago`;
    return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min ago`;
  }

  function describeAlarm(a) {
    const count = a.count > 1 ? ` (×${a.count})` : "";
    return `${a.severity} ${kindWords(a.kind)}${count} · ${whereOf(a)}`;
  }

  function statusWords(a) {
    const by = a.acknowledged_by ? `, acknowledged by ${person(a.acknowledged_by)}` : "";
    if (a.status === "active_unack") return "not acknowledged";
    if (a.status === "active_ack") return `active${by}`;
    if (a.status === "cleared_unack") return "cleared, never acknowledged";
    return `cleared${by}`;
  }

  function applyAlarm(f, live) {
    const known = alarms.get(f.alarm_id);
    if (known && known.at > f.at) return; // an older message replayed late
    alarms.set(f.alarm_id, f);
    alarmsDirty = true;
    const changed = !known || known.status !== f.status || known.count !== f.count ||
      known.climbed !== f.climbed;
    if (!changed) return;
    const loud = f.status === "active_unack" && (f.severity === "critical" || f.severity === "major");
    let news = `alarm ${describeAlarm(f)}: ${statusWords(f)}`;
    if (f.status === "active_unack" && known && known.climbed !== f.climbed) {
      news += `, ${rungOf(f)} told`;
    }
    log(news, loud ? "escalated" : "");
    if (!live) return;
    const raisedNow = f.status === "active_unack" &&
      (!known || known.status !== "active_unack" || known.count !== f.count);
    if (raisedNow && f.severity === "critical") {
      el("alarm-alert").textContent = `Critical alarm: ${kindWords(f.kind)}, ${whereOf(f)}. ${f.detail || ""}`;
    } else if (raisedNow) {
      el("alarm-status").textContent = `New ${f.severity} alarm: ${kindWords(f.kind)}, ${whereOf(f)}`;
    }
  }

  // After a replay of history: one summary, rather than every alarm announced again.
  function caughtUp() {
    const waiting = [...alarms.values()].filter(
      (a) => a.status === "active_unack" && a.severity === "critical",
    ).length;
    if (waiting) {
      el("alarm-alert").textContent =
        `${waiting} critical alarm${waiting > 1 ? "s" : ""} not acknowledged`;
    }
  }

  function sortedAlarms() {
    const all = [...alarms.values()];
    const active = all.filter(isActive).sort(
      (a, b) => STATUS_RANK[a.status] - STATUS_RANK[b.status] ||
        (SEVERITY_RANK[a.severity] ?? 9) - (SEVERITY_RANK[b.severity] ?? 9) ||
        a.raised_at - b.raised_at,
    );
    const cleared = all.filter((a) => !isActive(a)).sort(
      (a, b) => STATUS_RANK[a.status] - STATUS_RANK[b.status] || b.at - a.at,
    );
    return { active, cleared: cleared.slice(0, CLEARED_SHOWN) };
  }

  // ---- a dispatcher's hand on an alarm

  let sendFrame = () => false; // set while connected

  function press(alarmId, command) {
    const hand = hands.get(alarmId);
    if (hand && (hand.state === "sent" || hand.state === "acked")) return; // one at a time
    const sent = sendFrame({ type: command, alarm_id: alarmId });
    hands.set(alarmId, sent
      ? { command, state: "sent", sentAt: nowS() }
      : { command, state: "failed", reason: "offline", endedAt: nowS() });
    if (!sent) tellOutcome(alarmId);
    alarmsDirty = true;
  }

  function onCommandAck(f) {
    const hand = hands.get(f.alarm_id);
    if (!hand || hand.state !== "sent" || hand.command !== f.command) return;
    hand.state = "acked";
    hand.commandId = f.command_id;
    alarmsDirty = true;
  }

  // The gateway refused a frame (before any `ack`): the oldest command still waiting is it,
  // since the gateway answers a connection's frames in order.
  function onGatewayError(f) {
    let oldest = null;
    for (const [id, hand] of hands) {
      if (hand.state === "sent" && (!oldest || hand.sentAt < hands.get(oldest).sentAt)) oldest = id;
    }
    if (!oldest) return;
    Object.assign(hands.get(oldest), { state: "failed", reason: f.reason, endedAt: nowS() });
    tellOutcome(oldest);
    alarmsDirty = true;
  }

  function applyCommandResult(f) {
    if (!f.alarm_id) {
      if (f.outcome === "refused") log(`${f.command} of ${f.incident_id}: refused (${reasonWords(f.reason)})`);
      return;
    }
    const hand = hands.get(f.alarm_id);
    const unanswered = hand && (hand.state === "sent" ||
      (hand.state === "failed" && (hand.reason === "no_ack" || hand.reason === "connection_lost")));
    const ours = Boolean(hand && hand.command === f.command && (hand.commandId
      ? hand.commandId === f.command_id
      : unanswered && f.dispatcher_id === me)); // its `ack` lost with a connection
    const alarm = alarms.get(f.alarm_id);
    const what = alarm ? describeAlarm(alarm) : f.alarm_id;
    const whom = ours || person(f.dispatcher_id) === "you" ? "your" : `${person(f.dispatcher_id)}'s`;
    const outcome = f.outcome === "done" ? "done" : `refused (${reasonWords(f.reason)})`;
    log(`${whom} ${f.command} of alarm ${what}: ${outcome}`, f.outcome === "done" ? "" : "escalated");
    if (!ours || hand.state === "done" || hand.state === "refused") return;
    Object.assign(hand, { state: f.outcome, reason: f.reason, endedAt: nowS() });
    tellOutcome(f.alarm_id);
    alarmsDirty = true;
  }

  function handText(hand) {
    const words = HAND_WORDS[hand.command];
    if (hand.state === "sent" || hand.state === "acked") return words.pending;
    if (hand.state === "done") return words.done;
    if (hand.state === "refused") return `${words.verb} refused: ${reasonWords(hand.reason)}`;
    return `${words.verb} not done: ${reasonWords(hand.reason)}`; // never reached the worker
  }

  function tellOutcome(alarmId) {
    const hand = hands.get(alarmId);
    const alarm = alarms.get(alarmId);
    el("alarm-status").textContent = `${handText(hand)}${alarm ? ` — ${describeAlarm(alarm)}` : ""}`;
  }

  // Commands that never got an answer, and outcomes shown long enough.
  function ageHands(now) {
    for (const [id, hand] of hands) {
      if (hand.state === "sent" && now - hand.sentAt > ACK_WAIT_S) {
        Object.assign(hand, { state: "failed", reason: "no_ack", endedAt: now });
        tellOutcome(id);
      } else if (hand.state === "acked" && now - hand.sentAt > RESULT_WAIT_S) {
        Object.assign(hand, { state: "failed", reason: "no_result", endedAt: now });
        tellOutcome(id);
      } else if (hand.endedAt && now - hand.endedAt > OUTCOME_SHOWN_S) {
        hands.delete(id);
      } else {
        continue;
      }
      alarmsDirty = true;
    }
  }

  function connectionLost() {
    for (const [id, hand] of hands) {
      if (hand.state !== "sent") continue; // acked ones: their outcome comes on the resume
      Object.assign(hand, { state: "failed", reason: "connection_lost", endedAt: nowS() });
      tellOutcome(id);
      alarmsDirty = true;
    }
  }

  function pruneAlarms(now) {
    const { cleared } = sortedAlarms();
    const shown = new Set(cleared.map((a) => a.alarm_id));
    for (const [id, a] of alarms) {
      if (isActive(a)) continue;
      const old = a.status === "cleared_ack" && now - a.at > CLEARED_KEPT_S;
      if (old || !shown.has(id)) {
        alarms.delete(id);
        alarmsDirty = true;
      }
    }
  }

  // ---- the list, keyed by alarm_id: nodes are updated in place so keyboard focus stays

  function alarmNode(id) {
    let item = alarmNodes.get(id);
    if (item) return item;
    item = document.createElement("li");
    item.tabIndex = -1;
    item.dataset.alarmId = id;
    item.innerHTML =
      '<div class="head"><span class="severity"></span><span class="kind"></span>' +
      '<span class="count"></span></div><div class="where"></div><div class="detail"></div>' +
      '<div class="meta"><time class="ago"></time><span class="status"></span>' +
      '<span class="rung"></span></div><div class="actions">' +
      '<button type="button" data-command="acknowledge">Acknowledge</button>' +
      '<button type="button" data-command="clear">Clear</button>' +
      '<button type="button" data-command="false_alarm">False alarm</button>' +
      '<button type="button" data-command="open_incident">Send a caregiver</button>' +
      '<span class="hand"></span></div>';
    for (const button of item.querySelectorAll("button")) {
      button.addEventListener("click", () => {
        if (button.getAttribute("aria-disabled") !== "true") press(id, button.dataset.command);
      });
    }
    alarmNodes.set(id, item);
    return item;
  }

  // Which of an alarm's buttons it shows, by command.
  const SHOWN = {
    acknowledge: isUnacked,
    clear: isActive,
    false_alarm: (a) => isActive(a) && isRoutine(a),
    open_incident: (a) => isActive(a) && Boolean(a.patient_id) && DISPATCHABLE.has(a.kind),
  };

  function fillAlarm(item, a, now) {
    const part = (cls) => item.querySelector(`.${cls}`);
    item.className = `alarm ${a.severity} ${a.status}`;
    part("severity").textContent = a.severity;
    part("kind").textContent = kindWords(a.kind);
    part("count").textContent = a.count > 1 ? `×${a.count}` : "";
    part("count").title = a.count > 1 ? `raised ${a.count} times` : "";
    part("where").textContent = whereOf(a);
    part("detail").textContent = a.detail || "";
    part("detail").hidden = !a.detail;
    const ago_ = part("ago");
    ago_.dateTime = new Date(a.raised_at * 1000).toISOString();
    ago_.dataset.at = String(a.raised_at);
    ago_.textContent = `raised ${ago(now - a.raised_at)}`;
    ago_.title = `raised at ${clock(a.raised_at)}`;
    let status = statusWords(a);
    if (a.assignee) status += `, assigned to ${person(a.assignee)}`;
    part("status").textContent = status;
    const rung = part("rung");
    rung.hidden = a.status !== "active_unack";
    rung.textContent = `reached: ${rungOf(a)}`;
    const hand = hands.get(a.alarm_id);
    const busy = Boolean(hand && (hand.state === "sent" || hand.state === "acked"));
    const label = describeAlarm(a);
    for (const button of item.querySelectorAll("button")) {
      const command = button.dataset.command;
      button.hidden = !SHOWN[command](a);
      button.setAttribute("aria-disabled", String(busy));
      button.setAttribute("aria-label", `${HAND_WORDS[command].verb} ${label}`);
    }
    const said = part("hand");
    said.textContent = hand ? handText(hand) : "";
    said.className = `hand ${hand ? hand.state : ""}`;
    part("actions").hidden = [...item.querySelectorAll("button")].every((b) => b.hidden) && !hand;
  }

  // Put `items` in `list` in order, moving only what is out of place.
  function place(list, items) {
    items.forEach((item, i) => {
      if (list.children[i] !== item) list.insertBefore(item, list.children[i] || null);
    });
    while (list.children.length > items.length) list.lastElementChild.remove();
  }

  function renderAlarms(now) {
    const focused = document.activeElement;
    const focusedItem = focused && focused.closest ? focused.closest("li.alarm") : null;
    const { active, cleared } = sortedAlarms();
    const fill = (a) => {
      const item = alarmNode(a.alarm_id);
      fillAlarm(item, a, now);
      return item;
    };
    place(el("alarms"), active.map(fill));
    place(el("alarms-cleared"), cleared.map(fill));
    const kept = new Set(active.concat(cleared).map((a) => a.alarm_id));
    for (const id of alarmNodes.keys()) if (!kept.has(id)) alarmNodes.delete(id);
    el("no-alarms").hidden = active.length > 0;
    el("alarms-cleared-box").hidden = cleared.length === 0;
    // a button pressed, then hidden (acknowledged) or moved (cleared): keep the keyboard there
    if (focusedItem && (!visible(focused) || document.activeElement !== focused)) {
      const next = focusedItem.isConnected &&
        [...focusedItem.querySelectorAll("button")].find(visible);
      const target = visible(focused) ? focused
        : next || (focusedItem.isConnected ? focusedItem : el("alarms-title"));
      target.focus();
    }
    const waiting = active.filter((a) => a.status === "active_unack").length;
    document.title = `${waiting ? `(${waiting}) ` : ""}CareKnot Dispatch — console`;
  }

  function visible(node) {
    return Boolean(node && node.isConnected && !node.closest("[hidden]"));
  }

  function tickAlarmAges(now) {
    for (const node of document.querySelectorAll(".alarm time.ago")) {
      node.textContent = `raised ${ago(now - Number(node.dataset.at))}`;
    }
  }

  // ------------------------------------------------------------------ doses

  // What became of each dose today: the newest `at` wins for a patient's dose_key.
  const doses = new Map(); // `${patient_id} ${dose_key}` -> latest dose frame
  const DOSE_SHOWN = 60;
  const DOSE_WORDS = {
    overdue: "overdue", taken: "taken", late: "taken late", missed: "missed",
    administered: "given by a caregiver", refused: "refused by the patient",
    unavailable: "not available", double_attempt: "second dose tried",
  };
  const DOSE_PROBLEMS = new Set(["overdue", "missed", "double_attempt"]);
  let dosesDirty = true;

  const hhmm = (epochS) =>
    new Date(epochS * 1000).toLocaleTimeString("en-GB", { hour: "2-digit", minute: "2-digit" });

  function describeDose(f) {
    const critical = f.critical ? " (critical medicine)" : "";
    return `dose ${f.name}${critical} for ${f.patient_id}, due ${hhmm(f.due_at)}: ${
      DOSE_WORDS[f.outcome] || f.outcome}`;
  }

  function applyDose(f) {
    const key = `${f.patient_id} ${f.dose_key}`;
    const known = doses.get(key);
    if (known && known.at > f.at) return;
    doses.set(key, f);
    if (known && known.outcome === f.outcome) return;
    log(describeDose(f), DOSE_PROBLEMS.has(f.outcome) ? "escalated" : "");
    dosesDirty = true;
  }

  function startOfToday() {
    const d = new Date();
    d.setHours(0, 0, 0, 0);
    return d.getTime() / 1000;
  }

  // Today's doses, and any earlier one still overdue.
  function todaysDoses() {
    const since = startOfToday();
    for (const [key, f] of doses) {
      if (f.due_at < since - 86400) doses.delete(key);
    }
    return [...doses.values()]
      .filter((f) => f.due_at >= since || f.outcome === "overdue")
      .sort((a, b) => b.due_at - a.due_at || a.patient_id.localeCompare(b.patient_id))
      .slice(0, DOSE_SHOWN);
  }

  function renderDoses() {
    const shown = todaysDoses();
    el("doses").replaceChildren(...shown.map((f) => {
      const item = document.createElement("li");
      item.className = `dose ${f.outcome}${DOSE_PROBLEMS.has(f.outcome) ? " problem" : ""}${
        f.critical ? " critical" : ""}`;
      const due = document.createElement("time");
      due.dateTime = new Date(f.due_at * 1000).toISOString();
      due.textContent = hhmm(f.due_at);
      const what = document.createElement("span");
      what.className = "what";
      what.textContent = `${f.patient_id} · ${f.name}${f.critical ? " (critical)" : ""}`;
      const outcome = document.createElement("span");
      outcome.className = "outcome";
      outcome.textContent = DOSE_WORDS[f.outcome] || f.outcome;
      item.append(due, what, outcome);
      return item;
    }));
    el("no-doses").hidden = shown.length > 0;
  }

  // ------------------------------------------------------------------ frames

  function onFrame(frame) {
    if (frame.type === "resync") {
      epoch = frame.epoch;
      lastSeq = 0;
      // what the page held of alarms and doses is no guide: the new stream sends them again
      alarms.clear();
      doses.clear();
      alarmsDirty = true;
      dosesDirty = true;
      catchingUpTo = typeof frame.seq_now === "number" ? frame.seq_now : 0;
      log("the server lost its recent messages: taking them again (alarms and doses reloaded)");
      return;
    }
    const live = !(typeof frame.seq === "number" && frame.seq <= catchingUpTo);
    if (typeof frame.seq === "number" && frame.seq > lastSeq) lastSeq = frame.seq;
    if (catchingUpTo && typeof frame.seq === "number" && frame.seq >= catchingUpTo) {
      catchingUpTo = 0;
      queueMicrotask(caughtUp); // once this frame is applied
    }
    if (frame.type === "location") applyLocation(frame);
    else if (frame.type === "incident") applyIncident(frame);
    else if (frame.type === "alert") applyAlert(frame);
    else if (frame.type === "visit_status") applyVisitStatus(frame);
    else if (frame.type === "alarm") applyAlarm(frame, live);
    else if (frame.type === "dose") applyDose(frame);
    else if (frame.type === "command_result") applyCommandResult(frame);
    else return; // control frames (hello, ack, error, pong) and types this page does not know
    dirty = true;
  }

  // ------------------------------------------------------------------ connection

  function connect(token) {
    let attempt = 0;
    let socket = null;
    let pinger = 0;
    let lastHeard = 0;

    const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;

    function open() {
      setConnection("connecting", attempt ? "Reconnecting…" : "Connecting…");
      socket = new WebSocket(url);
      socket.addEventListener("open", () => {
        socket.send(JSON.stringify({ type: "auth", token }));
        attempt = 0;
        lastHeard = Date.now();
        setConnection("live", "Live");
        log("connected");
        pinger = setInterval(keepAlive, PING_EVERY_MS);
        sendFrame = (message) => {
          if (socket.readyState !== WebSocket.OPEN) return false;
          socket.send(JSON.stringify(message));
          return true;
        };
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
        else if (frame.type === "ack" && frame.alarm_id) onCommandAck(frame);
        else if (frame.type === "error") {
          log(`server: ${frame.reason || "error"} ${frame.detail || ""}`);
          onGatewayError(frame);
        }
        onFrame(frame);
      });
      socket.addEventListener("close", (event) => {
        clearInterval(pinger);
        sendFrame = () => false;
        connectionLost();
        if (event.code === 4401) {
          // the token expired or was revoked: another try with it would fail the same way
          setConnection("down", `Signed out (${event.reason || "token refused"}): open a new link`);
          log("signed out: the token was refused");
          return;
        }
        const delay = backoff(attempt++);
        const why = event.reason ? ` (${event.reason})` : "";
        setConnection("down", `Disconnected${why}; retrying in ${Math.ceil(delay / 1000)} s`);
        log(`disconnected${why}`);
        setTimeout(open, delay);
      });
    }

    function onHello(hello) {
      if (hello.subject) el("agency").textContent = `${hello.role || ""} ${hello.subject}`.trim();
      me = hello.subject || me;
      const seqNow = typeof hello.seq_now === "number" ? hello.seq_now : 0;
      const helloEpoch = typeof hello.epoch === "number" ? hello.epoch : 0;
      // the server's stream started again: take what it has
      if (seqNow < lastSeq || (epoch && helloEpoch && helloEpoch !== epoch)) lastSeq = 0;
      epoch = helloEpoch || epoch;
      const from = lastSeq > 0 ? lastSeq : Math.max(0, seqNow - HISTORY);
      if (from < seqNow) {
        catchingUpTo = seqNow; // what comes up to here is history: shown, not announced
        socket.send(JSON.stringify({ type: "resume", last_seq: from, epoch }));
      }
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
    c.alarms = [...alarms.values()].filter(isActive).length;
    return c;
  }

  function renderCounts(c) {
    for (const [key, value] of Object.entries(c)) {
      const node = el(`count-${key}`);
      if (node) node.textContent = String(value);
    }
    const loud = [...alarms.values()].some(
      (a) => a.status === "active_unack" && a.severity === "critical",
    );
    el("count-alarms").parentElement.classList.toggle("loud", loud);
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
  let lastDoses = 0;
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
    if (tick) {
      ageHands(now);
      pruneAlarms(now);
    }
    if (alarmsDirty) {
      renderAlarms(now);
      alarmsDirty = false;
    } else if (tick) {
      tickAlarmAges(now);
    }
    if (dosesDirty || now - lastDoses >= 60) { // at midnight, yesterday's leave the list
      renderDoses();
      dosesDirty = false;
      lastDoses = now;
    }
    dirty = false;
    requestAnimationFrame(frame);
  }

  function start() {
    const token = new URLSearchParams(location.hash.slice(1)).get("token");
    if (token) history.replaceState(null, "", location.pathname + location.search); // off-screen
    new ResizeObserver(resize).observe(canvas);
    resize();
    canvas.addEventListener("mousemove", onHover);
    canvas.addEventListener("mouseleave", () => { el("tooltip").hidden = true; });
    el("fit").addEventListener("click", () => { refitRequested = true; dirty = true; });
    requestAnimationFrame(frame);
    if (!token) {
      setConnection("down", "No token: open this page as /#token=…");
      log("no token in the page's address");
      return;
    }
    connect(token);
  }

  start();
})();
